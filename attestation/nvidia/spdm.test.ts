import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { concat, fromBase64, fromHex, hex } from '../bytes.ts';
import { isGmError } from '../errors.ts';
import { hasVectors, vectorText } from '../../test/vectors.ts';
import { NONCE_SIZE, REQUEST_SIZE, SIGNATURE_SIZE, formatVbiosVersion, parseGpuAttestationReport, parseOpaqueData } from './spdm.ts';
import { buildSimGpuReport, createNvidiaSimSigner } from './sim.ts';

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return undefined;
};

/** trustee's rendering of opaque fields (deps/verifier/src/nvidia, version that produced the claims file). */
const TRUSTEE_STRING = new Set(['DRIVER_VERSION', 'CHIP_SKU', 'CHIP_SKU_MOD', 'PROJECT', 'PROJECT_SKU', 'NVDEC0_STATUS', 'PROTECTED_PCIE_STATUS']);

describe.skipIf(!hasVectors)('SPDM parser on the real GH100 report', () => {
  const raw = fromHex(vectorText('nvidia/nvtrust/hopperAttestationReport.txt').replace(/\s/g, ''));
  const r = parseGpuAttestationReport(raw);

  it('locates every part from the lengths', () => {
    expect(r.request.nonce).toEqual(fromHex('931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb'));
    expect(r.response.numberOfBlocks).toBe(64);
    expect(r.response.blocks).toHaveLength(64);
    expect(r.response.measurementRecordLength).toBe(64 * 55);
    expect(r.response.signature).toHaveLength(SIGNATURE_SIZE);
    expect(r.signedBytes.length + SIGNATURE_SIZE).toBe(raw.length);
    expect(r.response.opaque.driverVersion).toBe('550.90.07');
    expect(r.response.opaque.vbiosVersion).toBe('96.00.9f.00.01');
    expect(r.response.opaque.nvdec0Status).toBe('disabled');
  });

  it("parsed claims equal trustee's expected claims file", () => {
    const want = JSON.parse(vectorText('nvidia/trustee/hopperAttestationReport-claims.txt')) as {
      arch: string; config: Record<string, unknown>; measurements: Record<string, string>;
    };
    const measurements = Object.fromEntries(r.response.blocks.map((b) => [String(b.index), hex(b.value)]));
    expect(measurements).toEqual(want.measurements);
    const config: Record<string, unknown> = {};
    for (const f of r.response.opaque.fields) {
      const key = f.name.toLowerCase().replace('msrscnt', 'measurement_count').replace('cprinfo', 'cpr_info');
      if (f.name === 'VBIOS_VERSION') config[key] = formatVbiosVersion(f.data);
      else if (f.name === 'MSRSCNT') config[key] = Object.fromEntries(r.response.opaque.measurementCount!.map((c, i) => [String(i + 1), c]));
      else if (TRUSTEE_STRING.has(f.name)) config[key] = String.fromCharCode(...f.data).replace(/\0+$/, '');
      else config[key] = hex(f.data);
    }
    expect(config).toEqual(want.config);
    // `uuid` in the claims file is a constant of trustee's test harness, not a field of the evidence.
  });

  it('all 8 H100 reports of gpu_evidence.json parse and answer the documented nonce', () => {
    const ev = JSON.parse(vectorText('nvidia/nvtrust/gpu_evidence.json')) as { evidence: string }[];
    expect(ev).toHaveLength(8);
    for (const g of ev) expect(hex(parseGpuAttestationReport(fromBase64(g.evidence)).request.nonce)).toBe('4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e');
  });

  it('rejects a missing or extra byte at the end, and bad lengths', () => {
    expect(code(() => parseGpuAttestationReport(raw.subarray(0, raw.length - 1)))).toBe('NVIDIA_SPDM_TRUNCATED');
    expect(code(() => parseGpuAttestationReport(concat(raw, Uint8Array.of(0))))).toBe('NVIDIA_SPDM_TRAILING_BYTES');
    const longer = raw.slice();
    longer[REQUEST_SIZE + 5] = longer[REQUEST_SIZE + 5]! + 1; // MeasurementRecordLength + 1
    expect(code(() => parseGpuAttestationReport(longer))).toMatch(/^NVIDIA_SPDM_/);
    const ver = raw.slice();
    ver[0] = 0x12; // 1.2 signs VCA ‖ request ‖ response with a prefixed hash: not this layout
    expect(code(() => parseGpuAttestationReport(ver))).toBe('NVIDIA_SPDM_VERSION');
    expect(code(() => parseGpuAttestationReport(raw.subarray(0, 10)))).toBe('NVIDIA_SPDM_TRUNCATED');
    const p1 = raw.slice();
    p1[REQUEST_SIZE + 2] = 1; // response Param1 is reserved when all measurements were requested
    expect(code(() => parseGpuAttestationReport(p1))).toBe('NVIDIA_SPDM_INVALID');
    const nosig = raw.slice();
    nosig[2] = 0; // request without the signature bit: this layout does not apply
    expect(code(() => parseGpuAttestationReport(nosig))).toBe('NVIDIA_SPDM_INVALID');
  });
});

describe('opaque data', () => {
  const item = (id: number, d: Uint8Array) => concat(Uint8Array.of(id & 0xff, id >> 8, d.length & 0xff, d.length >> 8), d);
  it('rejects duplicates, truncated headers and bad fixed-size fields', () => {
    expect(code(() => parseOpaqueData(concat(item(3, Uint8Array.of(0x35)), item(3, Uint8Array.of(0x35)))))).toBe('NVIDIA_OPAQUE_INVALID');
    expect(code(() => parseOpaqueData(concat(item(3, Uint8Array.of(0x35)), Uint8Array.of(1, 0))))).toBe('NVIDIA_SPDM_TRUNCATED');
    expect(code(() => parseOpaqueData(item(20, new Uint8Array(47))))).toBe('NVIDIA_OPAQUE_INVALID');
    expect(code(() => parseOpaqueData(item(11, Uint8Array.of(0))))).toBe('NVIDIA_OPAQUE_INVALID');
    expect(code(() => parseOpaqueData(item(12, new Uint8Array(5))))).toBe('NVIDIA_OPAQUE_INVALID');
  });
  it('keeps unknown ids by number and decodes the feature flag', () => {
    const o = parseOpaqueData(concat(item(99, Uint8Array.of(1)), item(36, Uint8Array.of(2))));
    expect(o.fields[0]!.name).toBe('UNKNOWN_99');
    expect(o.featureFlag).toBe('PPCIE');
  });
});

describe('SPDM parser properties', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  const signerP = createNvidiaSimSigner({ now });

  it('round-trips sim reports of any block count, nonce and driver version', async () => {
    const signer = await signerP;
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: 80 }), fc.uint8Array({ minLength: NONCE_SIZE, maxLength: NONCE_SIZE }), fc.stringMatching(/^[0-9]{3}\.[0-9]{1,3}(\.[0-9]{2})?$/),
      async (blockCount, nonce, driverVersion) => {
        const r = parseGpuAttestationReport(await buildSimGpuReport(signer, { blockCount, nonce, driverVersion }));
        expect(r.response.blocks.map((b) => b.index)).toEqual(Array.from({ length: blockCount }, (_, i) => i + 1));
        expect(r.request.nonce).toEqual(nonce);
        expect(r.response.opaque.driverVersion).toBe(driverVersion);
      }), { numRuns: 25 });
  });

  it('never accepts a truncation or an extension of a valid report, and never crashes on garbage', async () => {
    const raw = await buildSimGpuReport(await signerP, { blockCount: 4 });
    fc.assert(fc.property(fc.integer({ min: 0, max: raw.length - 1 }), (n) => {
      expect(code(() => parseGpuAttestationReport(raw.subarray(0, n)))).toMatch(/^NVIDIA_/);
    }), { numRuns: 200 });
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 16 }), (extra) => {
      expect(code(() => parseGpuAttestationReport(concat(raw, extra)))).toMatch(/^NVIDIA_/);
    }), { numRuns: 100 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (junk) => {
      const c = code(() => parseGpuAttestationReport(concat(raw.subarray(0, REQUEST_SIZE), junk)));
      // Random bytes parse only if every length happens to line up exactly; otherwise a stable NVIDIA_ code.
      if (c !== undefined) expect(c).toMatch(/^NVIDIA_(SPDM|OPAQUE)_/);
    }), { numRuns: 300 });
  });

  it('a flipped length byte never yields a report with different parts silently', async () => {
    const raw = await buildSimGpuReport(await signerP, { blockCount: 3 });
    const good = parseGpuAttestationReport(raw);
    fc.assert(fc.property(fc.integer({ min: 0, max: raw.length - 1 }), fc.integer({ min: 1, max: 255 }), (pos, x) => {
      const m = raw.slice();
      m[pos] = m[pos]! ^ x;
      let r;
      try {
        r = parseGpuAttestationReport(m);
      } catch (e) {
        expect(isGmError(e)).toBe(true);
        return;
      }
      // If it still parses, the layout is unchanged and the change is inside signed content or the signature.
      expect(r.response.blocks.length).toBe(good.response.blocks.length);
      expect(r.response.signature.length).toBe(SIGNATURE_SIZE);
      expect(r.signedBytes.length).toBe(good.signedBytes.length);
    }), { numRuns: 300 });
  });
});
