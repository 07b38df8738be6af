import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, hex } from '../attestation/bytes.ts';
import { type CborValue, decodeDeterministic, encodeDeterministic } from './market-cbor.ts';

// RFC 8949 Appendix A examples inside the supported subset, plus §4.2.1 key order.
const VECTORS: [CborValue, string][] = [
  [0, '00'],
  [23, '17'],
  [24, '1818'],
  [100, '1864'],
  [1000, '1903e8'],
  [1000000, '1a000f4240'],
  [1000000000000, '1b000000e8d4a51000'],
  [18446744073709551615n, '1bffffffffffffffff'],
  ['', '60'],
  ['a', '6161'],
  ['\u00fc', '62c3bc'],
  [fromHex('01020304'), '4401020304'],
  [[1, 2, 3], '83010203'],
  [{ a: 1, b: [2, 3] }, 'a26161016162820203'],
  [{ b: 1, aa: 2 }, 'a261620162616102'],
  [false, 'f4'],
  [true, 'f5'],
  [null, 'f6'],
];

describe('deterministic CBOR (RFC 8949 §4.2.1 subset)', () => {
  it.each(VECTORS)('encodes %o as the RFC bytes and decodes back', (v, h) => {
    expect(hex(encodeDeterministic(v))).toBe(h);
    const back = decodeDeterministic(fromHex(h));
    expect(encodeDeterministic(back)).toEqual(fromHex(h));
  });

  it.each([
    ['non-shortest integer', '1817'],
    ['non-shortest 16-bit', '190017'],
    ['unsorted keys', 'a262616101616202'],
    ['duplicate key', 'a2616101616102'],
    ['trailing byte', '0000'],
    ['indefinite array', '9f01ff'],
    ['float', 'f93c00'],
    ['negative integer', '20'],
    ['tag', 'c11a514b67b0'],
    ['invalid utf-8', '61ff'],
    ['length past end', '4501'],
    ['non-text map key', 'a10101'],
  ])('rejects %s with MARKET_CBOR_MALFORMED', (_name, h) => {
    expect(() => decodeDeterministic(fromHex(h))).toThrow(expect.objectContaining({ code: 'MARKET_CBOR_MALFORMED' }));
  });

  it('round-trips arbitrary values byte-exactly (property)', () => {
    const leaf = fc.oneof(fc.nat(), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.string(), fc.uint8Array({ maxLength: 40 }), fc.boolean(), fc.constant(null));
    const value = fc.letrec<{ v: CborValue }>((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 6 }), tie('v'), { maxKeys: 4 })),
    })).v;
    fc.assert(
      fc.property(value, (v) => {
        const bytes = encodeDeterministic(v);
        expect(encodeDeterministic(decodeDeterministic(bytes))).toEqual(bytes);
      }),
      { numRuns: 300 },
    );
  });
});
