import { describe, expect, it } from 'vitest';
import { decodeBundleList, encodeBundleList, isBundleList, MAX_LISTED_BUNDLES } from './bundle-list.ts';

const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
};

describe('replica bundle list', () => {
  it('round-trips byte strings of every head size and tells a list from a bundle (a CBOR map)', () => {
    const items = [new Uint8Array(0), new Uint8Array(23).fill(1), new Uint8Array(24).fill(2), new Uint8Array(300).fill(3), new Uint8Array(70_000).fill(4)];
    const enc = encodeBundleList(items);
    expect(isBundleList(enc)).toBe(true);
    expect(isBundleList(Uint8Array.of(0xa1))).toBe(false);
    expect(decodeBundleList(enc)).toEqual(items);
    expect([...encodeBundleList([Uint8Array.of(7)])]).toEqual([0x81, 0x41, 7]);
  });

  it('refuses what a strict decoder must: trailing bytes, truncation, non-shortest heads, indefinite lengths, other types, too many', () => {
    const ok = encodeBundleList([Uint8Array.of(1, 2)]);
    const cases: [string, Uint8Array][] = [
      ['trailing', Uint8Array.of(...ok, 0)],
      ['truncated body', ok.subarray(0, ok.length - 1)],
      ['truncated head', Uint8Array.of(0x81, 0x58)],
      ['non-shortest array head', Uint8Array.of(0x98, 0x01, 0x41, 7)],
      ['non-shortest byte head', Uint8Array.of(0x81, 0x58, 0x01, 7)],
      ['indefinite array', Uint8Array.of(0x9f, 0x41, 7, 0xff)],
      ['text string element', Uint8Array.of(0x81, 0x61, 0x41)],
      ['a map', Uint8Array.of(0xa0)],
      ['empty', new Uint8Array(0)],
      ['too many', Uint8Array.of(0x98, MAX_LISTED_BUNDLES + 1)],
    ];
    for (const [, b] of cases) expect(code(() => decodeBundleList(b))).toBe('BUNDLE_LIST_MALFORMED');
    expect(code(() => encodeBundleList(Array.from({ length: MAX_LISTED_BUNDLES + 1 }, () => new Uint8Array(1))))).toBe('BUNDLE_LIST_MALFORMED');
  });
});
