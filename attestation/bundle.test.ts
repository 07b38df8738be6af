import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Encoder } from 'cbor-x';
import { bundleFromJson, bundleToJson, decodeBundle, encodeBundle, type EvidenceBundle } from './bundle.ts';
import { isGmError } from './errors.ts';

const b = (n: number, fill = 1) => new Uint8Array(n).fill(fill);
const sample: EvidenceBundle = {
  v: 1,
  platform: 'sim-sev-snp',
  evidence: b(1184, 7),
  certs: [b(10, 1), b(11, 2)],
  collateral: { crls: [b(5, 3)] },
  gpu: [{ arch: 'HOPPER', evidence: b(100, 4), certs: [b(9, 5)], ccMode: 'on' }],
  keys: { ohttp: b(41, 6), receipt: b(32, 8) },
  nonce: b(32, 0),
  issuedAt: 1_790_000_000_000,
};
const raw = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true } as ConstructorParameters<typeof Encoder>[0]);
const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return 'NO_ERROR';
};

describe('evidence bundle codec', () => {
  it('round-trips CBOR and JSON views', () => {
    const bytes = encodeBundle(sample);
    expect(decodeBundle(bytes)).toEqual(sample);
    expect(bundleFromJson(JSON.parse(JSON.stringify(bundleToJson(sample))))).toEqual(sample);
  });

  it("carries an enclave's settings strictly: round-trips, refuses unknown fields, wrong types and a worker bundle with settings", () => {
    const settings = { allowSimWorkers: false, workerPolicy: b(32, 7), openAccess: true, ledger: 'file' as const };
    const withSettings: EvidenceBundle = { ...sample, settings };
    expect(decodeBundle(encodeBundle(withSettings))).toEqual(withSettings);
    expect(bundleFromJson(JSON.parse(JSON.stringify(bundleToJson(withSettings))))).toEqual(withSettings);
    const bad = (s: Record<string, unknown>) => code(() => decodeBundle(new Uint8Array(raw.encode({ ...sample, settings: s }))));
    expect(bad({ ...settings, extra: 1 })).toBe('BUNDLE_MALFORMED');
    expect(bad({ ...settings, allowSimWorkers: 0 })).toBe('BUNDLE_MALFORMED');
    expect(bad({ ...settings, workerPolicy: b(31) })).toBe('BUNDLE_MALFORMED');
    expect(bad({ ...settings, ledger: 'disk' })).toBe('BUNDLE_MALFORMED');
    const { receipt: _r, ...k } = sample.keys;
    expect(code(() => encodeBundle({ ...withSettings, keys: { ...k, signing: b(32) } }))).toBe('BUNDLE_MALFORMED');
  });

  it('is deterministic whatever the key order of the input object', () => {
    const shuffled = { issuedAt: sample.issuedAt, nonce: sample.nonce, keys: { receipt: sample.keys.receipt!, ohttp: sample.keys.ohttp }, gpu: sample.gpu, collateral: sample.collateral, certs: sample.certs, evidence: sample.evidence, platform: sample.platform, v: 1 } as EvidenceBundle;
    expect(encodeBundle(shuffled)).toEqual(encodeBundle(sample));
  });

  it('rejects a non-deterministic encoding of the same content', () => {
    const o = { ...sample, keys: { ...sample.keys } } as Record<string, unknown>;
    // keys in insertion (non-canonical) order: "v" must come first in canonical order, so put it last
    const { v, ...rest } = o;
    expect(code(() => decodeBundle(new Uint8Array(raw.encode({ ...rest, v }))))).toBe('BUNDLE_MALFORMED');
  });

  it('rejects unknown versions, unknown and missing fields, wrong types and sizes', () => {
    const j = bundleToJson(sample);
    expect(code(() => bundleFromJson({ ...j, v: 2 }))).toBe('BUNDLE_VERSION');
    expect(code(() => bundleFromJson({ ...j, extra: 1 }))).toBe('BUNDLE_MALFORMED');
    expect(code(() => bundleFromJson({ ...j, platform: 'sgx' }))).toBe('BUNDLE_MALFORMED');
    const { nonce: _n, ...noNonce } = j;
    expect(code(() => bundleFromJson(noNonce))).toBe('BUNDLE_MALFORMED');
    expect(code(() => bundleFromJson({ ...j, nonce: 'AAAA' }))).toBe('BUNDLE_MALFORMED');
    expect(code(() => bundleFromJson({ ...j, collateral: { crls: [], tcb: 'AA==' } }))).toBe('BUNDLE_MALFORMED');
    expect(code(() => bundleFromJson({ ...j, keys: { ohttp: 'AA==' } }))).toBe('BUNDLE_MALFORMED');
    expect(code(() => bundleFromJson({ ...j, keys: { ohttp: 'AA==', receipt: 'AA==', signing: 'AA==' } }))).toBe('BUNDLE_MALFORMED');
    expect(code(() => bundleFromJson({ ...j, gpu: [] }))).toBe('BUNDLE_MALFORMED');
    expect(code(() => bundleFromJson({ ...j, issuedAt: 1.5 }))).toBe('BUNDLE_MALFORMED');
    expect(code(() => decodeBundle(new Uint8Array([0xff, 0x00])))).toBe('BUNDLE_MALFORMED');
  });

  it('rejects trailing bytes', () => {
    const bytes = encodeBundle(sample);
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    expect(code(() => decodeBundle(longer))).toBe('BUNDLE_MALFORMED');
  });

  it('property: random byte flips never decode to a different valid bundle silently', () => {
    const bytes = encodeBundle(sample);
    fc.assert(
      fc.property(fc.nat(bytes.length - 1), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const m = bytes.slice();
        m[i] = m[i]! ^ x;
        let out: EvidenceBundle | undefined;
        try {
          out = decodeBundle(m);
        } catch (e) {
          return isGmError(e);
        }
        // a flip inside a byte string decodes to a bundle that differs from the original
        return JSON.stringify(bundleToJson(out)) !== JSON.stringify(bundleToJson(sample));
      }),
      { numRuns: 300 },
    );
  });
});
