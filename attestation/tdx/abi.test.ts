/** Parser properties (fast-check) and strictness cases for the TDX quote ABI. */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { isGmError } from '../errors.ts';
import { parseQuote, parseSgxReportBody } from './abi.ts';
import { type SimTdx, createSimTdx } from './sim.ts';

let sim: SimTdx;
let v4: Uint8Array;
let v5: Uint8Array;
beforeAll(async () => {
  sim = await createSimTdx();
  v4 = await sim.quote();
  v5 = await sim.quote({ version: 5 });
});

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    if (!isGmError(e)) throw e;
    return e.code;
  }
};

describe('parseQuote', () => {
  it('parses sim v4 and v5 quotes with the fields the sim wrote', () => {
    const q4 = parseQuote(v4);
    expect(q4.header.version).toBe(4);
    expect(q4.body.bodyType).toBe(2);
    expect(q4.body.teeTcbSvn2).toBeUndefined();
    expect(q4.signedData.length).toBe(48 + 584);
    const q5 = parseQuote(v5);
    expect(q5.body.bodyType).toBe(3);
    expect(q5.body.mrServiceTd?.length).toBe(48);
    expect(q5.signedData.length).toBe(48 + 6 + 648);
    expect(q5.certification.qeReport.isvProdId).toBe(2);
    expect(q5.certification.qeAuthData.length).toBe(32);
  });

  it('property: arbitrary bytes either parse or throw a protocol GmError with a TDX code', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), (b) => {
      const code = codeOf(() => parseQuote(b));
      if (code !== undefined) expect(code).toMatch(/^TDX_/);
    }), { numRuns: 300 });
  });

  it('property: random mutations of a valid quote never escape as non-GmError exceptions', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat({ max: 6000 }), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), (muts) => {
      const b = new Uint8Array(v5);
      for (const [at, v] of muts) b[at % b.length] = v;
      codeOf(() => parseQuote(b));
    }), { numRuns: 300 });
  });

  it('property: every truncation is rejected', () => {
    fc.assert(fc.property(fc.nat({ max: 100_000 }), (n) => {
      const len = n % v4.length;
      expect(codeOf(() => parseQuote(v4.subarray(0, len)))).toMatch(/^TDX_QUOTE_(TRUNCATED|LENGTH)$/);
    }), { numRuns: 200 });
  });

  it('property: zero padding is accepted and counted; any non-zero trailing byte is rejected', () => {
    fc.assert(fc.property(fc.nat({ max: 64 }), fc.integer({ min: 1, max: 255 }), fc.nat(), (pad, v, pos) => {
      const padded = new Uint8Array(v4.length + pad + 1);
      padded.set(v4);
      expect(parseQuote(padded).padding).toBe(pad + 1);
      padded[v4.length + (pos % (pad + 1))] = v;
      expect(codeOf(() => parseQuote(padded))).toBe('TDX_QUOTE_TRAILING_BYTES');
    }), { numRuns: 100 });
  });

  it('property: body fields round-trip through the sim writer', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 48, maxLength: 48 }), fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.constantFrom(4, 5), async (mrTd, reportData, version) => {
      const q = parseQuote(await sim.quote({ mrTd, reportData, version: version as 4 | 5 }));
      expect(q.body.mrTd).toEqual(mrTd);
      expect(q.body.reportData).toEqual(reportData);
    }), { numRuns: 20 });
  });

  const u16at = (b: Uint8Array, at: number, v: number) => {
    const c = new Uint8Array(b);
    c[at] = v & 0xff;
    c[at + 1] = v >> 8;
    return c;
  };
  it('rejects unknown versions, key types, TEE types, body types and certification data types', () => {
    expect(codeOf(() => parseQuote(u16at(v4, 0, 3)))).toBe('TDX_QUOTE_VERSION');
    expect(codeOf(() => parseQuote(u16at(v4, 2, 3)))).toBe('TDX_QUOTE_KEY_TYPE');
    expect(codeOf(() => parseQuote(u16at(v4, 4, 0)))).toBe('TDX_QUOTE_TEE_TYPE');
    expect(codeOf(() => parseQuote(u16at(v4, 10, 1)))).toBe('TDX_QUOTE_RESERVED');
    expect(codeOf(() => parseQuote(u16at(v5, 48, 1)))).toBe('TDX_QUOTE_BODY_TYPE');
    expect(codeOf(() => parseQuote(u16at(v5, 50, 584)))).toBe('TDX_QUOTE_BODY_TYPE'); // type 3 with the 1.0 size
    const sig = 48 + 584 + 4;
    expect(codeOf(() => parseQuote(u16at(v4, sig + 128, 5)))).toBe('TDX_QUOTE_CERT_TYPE');
    const inner = sig + 128 + 6 + 384 + 64 + 2 + 32;
    expect(codeOf(() => parseQuote(u16at(v4, inner, 6)))).toBe('TDX_QUOTE_CERT_TYPE');
  });

  it('a validly signed quote with non-zero header reserved bytes is still refused by the parser', async () => {
    const q = await sim.quote({ patch: [[8, Uint8Array.of(1)]] });
    expect(codeOf(() => parseQuote(q))).toBe('TDX_QUOTE_RESERVED');
    const qe = await sim.quote({ patch: [[12, Uint8Array.of(0xff)]] }); // QE vendor id (offset 12): not reserved, parses
    expect(parseQuote(qe).header.qeVendorId[0]).toBe(0xff);
  });

  it('rejects length fields that disagree with the buffer', () => {
    const sig = 48 + 584;
    const grow = new Uint8Array(v4);
    new DataView(grow.buffer).setUint32(sig, new DataView(v4.buffer).getUint32(sig, true) + 1, true);
    expect(codeOf(() => parseQuote(grow))).toBe('TDX_QUOTE_TRUNCATED');
    const shrink = new Uint8Array(v4);
    new DataView(shrink.buffer).setUint32(sig + 4 + 130, new DataView(v4.buffer).getUint32(sig + 4 + 130, true) - 1, true);
    expect(codeOf(() => parseQuote(shrink))).toBe('TDX_QUOTE_LENGTH');
    const auth = new Uint8Array(v4);
    auth[sig + 4 + 134 + 448] = 200; // QE auth data size larger than what follows
    expect(codeOf(() => parseQuote(auth))).toMatch(/^TDX_QUOTE_(TRUNCATED|LENGTH|CERT_TYPE)$/);
  });
});

describe('parseSgxReportBody', () => {
  it('requires 384 bytes and zero reserved ranges', () => {
    const qe = parseQuote(v4).certification.qeReport.raw;
    expect(parseSgxReportBody(qe).isvSvn).toBe(4);
    expect(codeOf(() => parseSgxReportBody(qe.subarray(0, 383)))).toBe('TDX_QE_REPORT_INVALID');
    for (const at of [20, 96, 160, 262 + 2]) {
      const c = new Uint8Array(qe);
      c[at] = 1;
      expect(codeOf(() => parseSgxReportBody(c))).toBe('TDX_QE_REPORT_INVALID');
    }
  });
});
