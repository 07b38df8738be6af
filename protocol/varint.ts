/**
 * Variable-length integers of QUIC (RFC 9000 §16), as used by binary HTTP (RFC 9292 §3) and chunked OHTTP
 * (draft-ietf-ohai-chunked-ohttp §4). The two high bits of the first byte give the length: 1, 2, 4 or 8 bytes.
 *
 * Values are JS numbers, so the 8-byte form is limited to 2^53 - 1 here; larger values are rejected as malformed
 * (no length in these protocols can legitimately reach it).
 */
import { protocolError } from '../attestation/errors.ts';

/** Largest value this module encodes or decodes (2^53 - 1; RFC 9000 allows 2^62 - 1). */
export const VARINT_MAX = Number.MAX_SAFE_INTEGER;

/** Encoded length of `v` in the shortest form. */
export function varintLength(v: number): 1 | 2 | 4 | 8 {
  if (!Number.isSafeInteger(v) || v < 0) throw protocolError('VARINT_RANGE', 'varint value out of range');
  if (v < 0x40) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x40000000) return 4;
  return 8;
}

/** Writes `v` at `out[offset]` in the shortest form; returns the offset after it. */
export function writeVarint(out: Uint8Array, offset: number, v: number): number {
  const n = varintLength(v);
  if (offset + n > out.length) throw protocolError('VARINT_RANGE', 'varint does not fit in the buffer');
  if (n === 1) {
    out[offset] = v;
  } else if (n === 2) {
    out[offset] = 0x40 | (v >>> 8);
    out[offset + 1] = v & 0xff;
  } else if (n === 4) {
    out[offset] = 0x80 | (v >>> 24);
    out[offset + 1] = (v >>> 16) & 0xff;
    out[offset + 2] = (v >>> 8) & 0xff;
    out[offset + 3] = v & 0xff;
  } else {
    const hi = Math.floor(v / 2 ** 32);
    const lo = v >>> 0;
    out[offset] = 0xc0 | (hi >>> 24);
    out[offset + 1] = (hi >>> 16) & 0xff;
    out[offset + 2] = (hi >>> 8) & 0xff;
    out[offset + 3] = hi & 0xff;
    out[offset + 4] = lo >>> 24;
    out[offset + 5] = (lo >>> 16) & 0xff;
    out[offset + 6] = (lo >>> 8) & 0xff;
    out[offset + 7] = lo & 0xff;
  }
  return offset + n;
}

export function encodeVarint(v: number): Uint8Array {
  const out = new Uint8Array(varintLength(v));
  writeVarint(out, 0, v);
  return out;
}

/**
 * Reads a varint at `offset`. Returns `undefined` when the buffer ends before the varint does (so incremental
 * parsers can wait for more bytes); callers that hold a complete message treat that as truncation.
 * Non-minimal encodings are accepted, as RFC 9000 §16 permits.
 */
export function readVarint(b: Uint8Array, offset: number): { value: number; next: number } | undefined {
  if (offset >= b.length) return undefined;
  const first = b[offset]!;
  const n = 1 << (first >> 6);
  if (offset + n > b.length) return undefined;
  let v = first & 0x3f;
  for (let i = 1; i < n; i++) v = v * 256 + b[offset + i]!;
  if (v > VARINT_MAX) throw protocolError('VARINT_RANGE', 'varint exceeds the supported range');
  return { value: v, next: offset + n };
}
