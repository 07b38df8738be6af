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

  it('rejects a missing or non-zero extra byte at the end, and bad lengths; zero padding is counted, never signed', () => {
    expect(code(() => parseGpuAttestationReport(raw.subarray(0, raw.length - 1)))).toBe('NVIDIA_SPDM_TRUNCATED');
    expect(code(() => parseGpuAttestationReport(concat(raw, Uint8Array.of(1))))).toBe('NVIDIA_SPDM_TRAILING_BYTES');
    expect(code(() => parseGpuAttestationReport(concat(raw, Uint8Array.of(0, 0, 7))))).toBe('NVIDIA_SPDM_TRAILING_BYTES');
    const padded = parseGpuAttestationReport(concat(raw, new Uint8Array(3)));
    expect(padded.padding).toBe(3);
    expect(hex(padded.signedBytes)).toBe(hex(r.signedBytes));
    expect(hex(padded.response.signature)).toBe(hex(r.response.signature));
    expect(padded.raw.length).toBe(raw.length);
    expect(r.padding).toBe(0);
    expect(r.response.opaque.format).toEqual({ versioned: false });
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

describe('versioned opaque data (NVDAOD), built from the specification\'s layout', () => {
  // Header: "NVDAOD", profile u16 = 0, version major, minor, patch, padding; entries: type u16, value type u16, size u16, value.
  const header = (major = 2, minor = 0, patch = 0, pad = 0, profile = 0) =>
    concat(new TextEncoder().encode('NVDAOD'), Uint8Array.of(profile & 0xff, profile >> 8, major, minor, patch, pad));
  const entry = (id: number, valueType: number, d: Uint8Array) =>
    concat(Uint8Array.of(id & 0xff, id >> 8, valueType & 0xff, valueType >> 8, d.length & 0xff, d.length >> 8), d);
  const text = (t: string) => new TextEncoder().encode(t);

  it('reads the header version and each entry with its value type; field decoding is as in the legacy layout', () => {
    const o = parseOpaqueData(concat(header(2, 1, 3), entry(3, 0x86, text('620.12\0')), entry(11, 0x82, Uint8Array.of(0xaa)), entry(37, 0x87, Uint8Array.of(0, 0)), entry(6, 0x86, Uint8Array.of(0, 0xd9, 0, 0x96, 0x0f, 0, 0, 0))));
    expect(o.format).toEqual({ versioned: true, major: 2, minor: 1, patch: 3 });
    expect(o.driverVersion).toBe('620.12');
    expect(o.nvdec0Status).toBe('enabled');
    expect(o.vbiosVersion).toBe('96.00.d9.00.0f');
    expect(o.fields.map((f) => [f.id, f.valueType])).toEqual([[3, 0x86], [11, 0x82], [37, 0x87], [6, 0x86]]);
    expect(o.fields[2]!.name).toBe('UNKNOWN_37');
    expect(parseOpaqueData(header()).fields).toEqual([]);
  });

  it('is as strict as the legacy layout: header fields, lengths, duplicates, unknown majors', () => {
    const e = entry(3, 0x86, text('620.12'));
    expect(code(() => parseOpaqueData(concat(header(2, 0, 0, 0, 1), e)))).toBe('NVIDIA_OPAQUE_INVALID'); // profile 1
    expect(code(() => parseOpaqueData(concat(header(2, 0, 0, 1), e)))).toBe('NVIDIA_OPAQUE_INVALID'); // padding byte
    expect(code(() => parseOpaqueData(concat(header(3), e)))).toBe('NVIDIA_OPAQUE_VERSION');
    expect(code(() => parseOpaqueData(concat(header(1), e)))).toBe('NVIDIA_OPAQUE_VERSION');
    expect(code(() => parseOpaqueData(header().subarray(0, 9)))).toBe('NVIDIA_SPDM_TRUNCATED');
    expect(code(() => parseOpaqueData(concat(header(), e, e)))).toBe('NVIDIA_OPAQUE_INVALID');
    expect(code(() => parseOpaqueData(concat(header(), e.subarray(0, e.length - 1))))).toBe('NVIDIA_SPDM_TRUNCATED');
    expect(code(() => parseOpaqueData(concat(header(), e, Uint8Array.of(1, 0, 0x86, 0))))).toBe('NVIDIA_SPDM_TRUNCATED');
    expect(code(() => parseOpaqueData(concat(header(), entry(20, 1, new Uint8Array(47)))))).toBe('NVIDIA_OPAQUE_INVALID');
    // Legacy bytes are never mistaken for the header: the magic decides.
    expect(parseOpaqueData(concat(Uint8Array.of(3, 0, 2, 0), text('55'))).format).toEqual({ versioned: false });
  });

  it('parses NVIDIA\'s captured NVDAOD transcript (attestation-sdk sample) end to end', () => {
    const t = vectorText('nvidia/attestation-sdk/sample_nvdaod_transcript.txt').trim();
    const r = parseGpuAttestationReport(fromHex(t));
    const o = r.response.opaque;
    expect(o.format).toEqual({ versioned: true, major: 2, minor: 0, patch: 0 });
    expect(o.driverVersion).toBe('620.12');
    expect(o.vbiosVersion).toBe('96.00.d9.00.0f');
    expect(o.nvdec0Status).toBe('enabled');
    expect(o.fwid).toHaveLength(48);
    expect(o.measurementCount).toHaveLength(64);
    expect(o.fields.every((f) => f.valueType !== undefined)).toBe(true);
    expect(r.response.blocks).toHaveLength(64);
    expect(r.padding).toBe(0);
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
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 16 }).filter((x) => x.some((b) => b !== 0)), (extra) => {
      expect(code(() => parseGpuAttestationReport(concat(raw, extra)))).toMatch(/^NVIDIA_/);
    }), { numRuns: 100 });
    // Zero padding of any length: the same report, the same signed bytes.
    const good = parseGpuAttestationReport(raw);
    fc.assert(fc.property(fc.integer({ min: 1, max: 4096 }), (n) => {
      const p = parseGpuAttestationReport(concat(raw, new Uint8Array(n)));
      expect(p.padding).toBe(n);
      expect(p.signedBytes).toEqual(good.signedBytes);
    }), { numRuns: 50 });
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
