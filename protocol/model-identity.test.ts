import { describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { expectCode, testIdentity } from '../test/market-fixtures.ts';
import { encodeDeterministic } from './market-cbor.ts';
import { decodeManifest, encodeManifest, identityToCbor, normalizeIdentity, parameterMask, PARAMETERS } from './model-identity.ts';

describe('model manifest (protocol/model-identity.ts)', () => {
  it('round-trips, sorted by model id, whatever order it was given in', () => {
    const a = testIdentity('fp8');
    const b = testIdentity('bf16', { contextLength: 4096 });
    const bytes = encodeManifest([{ model: 'zeta', identity: a }, { model: 'alpha', identity: b }]);
    expect(hex(encodeManifest([{ model: 'alpha', identity: b }, { model: 'zeta', identity: a }]))).toBe(hex(bytes));
    const m = decodeManifest(bytes);
    expect([...m.keys()]).toEqual(['alpha', 'zeta']);
    expect(m.get('zeta')).toEqual(a);
  });

  it('refuses duplicates, unsorted entries, unknown parameters, bad digests and unknown fields', async () => {
    const a = identityToCbor(testIdentity('fp8'));
    await expectCode(() => encodeManifest([{ model: 'm', identity: testIdentity('fp8') }, { model: 'm', identity: testIdentity('bf16') }]), 'MODEL_IDENTITY_MALFORMED');
    await expectCode(() => decodeManifest(encodeDeterministic({ v: 1, models: [{ model: 'b', identity: a }, { model: 'a', identity: a }] })), 'MODEL_IDENTITY_MALFORMED');
    await expectCode(() => decodeManifest(encodeDeterministic({ v: 1, models: [{ model: 'a', identity: { ...a, parameters: ['teleport'] } }] })), 'MODEL_IDENTITY_MALFORMED');
    await expectCode(() => decodeManifest(encodeDeterministic({ v: 1, models: [{ model: 'a', identity: { ...a, parameters: ['tools', 'seed'] } }] })), 'MODEL_IDENTITY_MALFORMED');
    await expectCode(() => decodeManifest(encodeDeterministic({ v: 1, models: [{ model: 'a', identity: { ...a, weightsDigest: new Uint8Array(31) } }] })), 'MODEL_IDENTITY_MALFORMED');
    await expectCode(() => decodeManifest(encodeDeterministic({ v: 1, models: [{ model: 'a', identity: { ...a, extra: 1 } }] })), 'MODEL_IDENTITY_MALFORMED');
    await expectCode(() => decodeManifest(encodeDeterministic({ v: 2, models: [{ model: 'a', identity: a }] })), 'MODEL_IDENTITY_MALFORMED');
    await expectCode(() => decodeManifest(new Uint8Array([0xa0, 0x00])), 'MODEL_IDENTITY_MALFORMED');
  });

  it('normalizes parameters and maps them to distinct bits', () => {
    expect(normalizeIdentity(testIdentity('fp8', { parameters: ['tools', 'seed', 'tools'] })).parameters).toEqual(['seed', 'tools']);
    expect(new Set(PARAMETERS.map((p) => parameterMask([p]))).size).toBe(PARAMETERS.length);
    expect(parameterMask(['nonsense'])).toBe(0);
  });
});
