/**
 * The byte encoders against RFC 4648 §10's test vectors, on views into a larger buffer (an offset and a length
 * that are not the whole ArrayBuffer's), and round trips through the strict decoders for arbitrary bytes.
 */
import { base64, base64urlnopad } from '@scure/base';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromBase64, fromHex, hex, toBase64, toBase64Url } from './bytes.ts';

/** `s` as bytes inside a larger buffer, with bytes on either side that must not leak into the encoding. */
function view(s: string): Uint8Array {
  const b = new Uint8Array(s.length + 7).fill(0xee);
  for (let i = 0; i < s.length; i++) b[3 + i] = s.charCodeAt(i);
  return b.subarray(3, 3 + s.length);
}

describe('hex, toBase64, toBase64Url', () => {
  it('give RFC 4648 §10 answers for views into a larger buffer', () => {
    const vectors: [string, string, string][] = [
      ['', '', ''],
      ['f', 'Zg==', '66'],
      ['fo', 'Zm8=', '666f'],
      ['foo', 'Zm9v', '666f6f'],
      ['foob', 'Zm9vYg==', '666f6f62'],
      ['fooba', 'Zm9vYmE=', '666f6f6261'],
      ['foobar', 'Zm9vYmFy', '666f6f626172'],
    ];
    for (const [text, b64, h] of vectors) {
      expect(toBase64(view(text))).toBe(b64);
      expect(toBase64Url(view(text))).toBe(b64.replace(/=+$/, ''));
      expect(hex(view(text))).toBe(h);
    }
    // The two alphabets differ in 62 and 63 (RFC 4648 §5).
    expect(toBase64(Uint8Array.of(0xfb, 0xff))).toBe('+/8=');
    expect(toBase64Url(Uint8Array.of(0xfb, 0xff))).toBe('-_8');
  });

  it('agree with @scure/base and round-trip through the decoders for any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(16), (bytes, pad) => {
        const b = new Uint8Array(bytes.length + pad * 2);
        b.set(bytes, pad);
        const v = b.subarray(pad, pad + bytes.length);
        expect(toBase64(v)).toBe(base64.encode(bytes));
        expect(toBase64Url(v)).toBe(base64urlnopad.encode(bytes));
        expect(fromBase64(toBase64(v))).toEqual(bytes);
        expect(fromBase64(toBase64Url(v))).toEqual(bytes);
        expect(fromHex(hex(v))).toEqual(bytes);
      }),
    );
  });
});
