import { afterAll, describe, expect, it } from 'vitest';
import { decodeBundle } from '../attestation/bundle.ts';
import { encodeRequest } from '../protocol/bhttp.ts';
import { decodeKeyConfigs, encapsulateRequest, type KeyConfig } from '../protocol/ohttp.ts';
import { simVendors, simWorkerPolicy } from '../test/stack/harness.ts';
import { createEnclave, type Enclave } from './app.ts';
import { memoryLogger } from './log.ts';
import { bhttpRequest } from './ohttp/messages.ts';
import { simProvider } from './tee/sim.ts';

/** The enclave app driven with app.request(): endpoints, sim marking, key rotation. */
describe('enclave app', () => {
  let e: Enclave;
  afterAll(async () => {
    await e?.close();
  });
  const post = async (cfg: KeyConfig) => {
    const { encapsulated } = await encapsulateRequest(cfg, encodeRequest(bhttpRequest('GET', '/v1/models', [], new Uint8Array())));
    return e.app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
  };

  it('serves the attested key configs, the boot bundle (CBOR and JSON), health and metrics, all marked sim', async () => {
    const { amd } = await simVendors();
    const { log, lines } = memoryLogger('enclave');
    e = await createEnclave({ tee: simProvider({ amd }), log, workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 } });
    const keys = new Uint8Array(await (await e.app.request('/.well-known/ohttp-gateway')).arrayBuffer());
    const boot = await e.app.request('/v1/attestation');
    expect(boot.headers.get('gm-tee')).toBe('sim');
    expect(decodeBundle(new Uint8Array(await boot.arrayBuffer())).keys.ohttp).toEqual(keys);
    const json = (await (await e.app.request('/v1/attestation', { headers: { accept: 'application/json' } })).json()) as { platform: string };
    expect(json.platform).toBe('sim-sev-snp');
    expect((await e.app.request('/v1/attestation?nonce=00')).status).toBe(400);
    expect(await (await e.app.request('/healthz')).json()).toEqual({ ok: true, sim: true, workers: 0 });
    expect(await (await e.app.request('/metrics')).text()).toContain('gm_requests_total{route="healthz",status="200"} 1');
    expect(lines.every((l) => JSON.parse(l).sim === true)).toBe(true);
  });

  it('rotates OHTTP keys: the new config is attested and served, the previous one accepted for one period, then retired', async () => {
    const first = decodeKeyConfigs(e.keyConfigs)[0]!;
    expect((await post(first)).status).toBe(200);
    await e.rotateKeys();
    const second = decodeKeyConfigs(e.keyConfigs)[0]!;
    expect(second.keyId).not.toBe(first.keyId);
    expect(decodeBundle(new Uint8Array(await (await e.app.request('/v1/attestation')).arrayBuffer())).keys.ohttp).toEqual(e.keyConfigs);
    expect((await post(first)).status).toBe(200); // grace period
    expect((await post(second)).status).toBe(200);
    await e.rotateKeys();
    const retired = await post(first);
    expect(retired.status).toBe(400);
    expect(((await retired.json()) as { code: string }).code).toBe('OHTTP_KEY_CONFIG');
    // The retired key's encapsulated keys are forgotten (its id may be drawn again): only the second key's one remains.
    expect(await (await e.app.request('/metrics')).text()).toMatch(/^gm_replay_cache_entries\{window="key"\} 1$/m);
  });
});
