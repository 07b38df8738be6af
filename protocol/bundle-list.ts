/**
 * The replica bundle list (docs/protocol.md §3.1): what a relay fronting several enclave replicas answers to
 * `GET /v1/attestation?all=1&nonce=N`. Each element is one replica's evidence bundle exactly as the replica served
 * it (deterministic CBOR, attestation/bundle.ts), so every element verifies on its own; the list itself is a CBOR
 * array (RFC 8949 §3.1 major type 4) of byte strings (major type 2), definite lengths, shortest heads (§4.2.1).
 *
 * A single bundle is a CBOR map (major type 5), so the first byte tells a list from a bundle: a client may ask for
 * the list and accept either answer. The relay is untrusted: it may drop or repeat a replica; it cannot forge one.
 * Runtime-agnostic (Uint8Array only).
 */
import { concat } from '../attestation/bytes.ts';
import { protocolError } from '../attestation/errors.ts';

/** More replicas than one relay fronts in any deployment we describe; a longer list is refused as malformed. */
export const MAX_LISTED_BUNDLES = 64;
/** Each element's bound (the same as a single bundle's in client/attest.ts). */
export const MAX_LISTED_BUNDLE_BYTES = 1024 * 1024;

const MAJOR_BYTES = 2;
const MAJOR_ARRAY = 4;

/** True when `b` starts like a bundle list (a CBOR array), false for anything else (a single bundle is a map). */
export function isBundleList(b: Uint8Array): boolean {
  return b.length > 0 && b[0]! >> 5 === MAJOR_ARRAY;
}

export function encodeBundleList(bundles: readonly Uint8Array[]): Uint8Array {
  if (bundles.length > MAX_LISTED_BUNDLES) throw protocolError('BUNDLE_LIST_MALFORMED', `at most ${MAX_LISTED_BUNDLES} bundles in a list`);
  const parts: Uint8Array[] = [head(MAJOR_ARRAY, bundles.length)];
  for (const b of bundles) {
    if (b.length > MAX_LISTED_BUNDLE_BYTES) throw protocolError('BUNDLE_LIST_MALFORMED', 'a listed bundle is too large');
    parts.push(head(MAJOR_BYTES, b.length), b);
  }
  return concat(...parts);
}

/** Strict: one definite-length array of definite-length byte strings, shortest heads, nothing left over. */
export function decodeBundleList(b: Uint8Array): Uint8Array[] {
  let at = 0;
  const read = (major: number): number => {
    const [m, n, next] = readHead(b, at);
    if (m !== major) throw malformed(`expected CBOR major type ${major} at offset ${at}`);
    at = next;
    return n;
  };
  const count = read(MAJOR_ARRAY);
  if (count > MAX_LISTED_BUNDLES) throw malformed(`more than ${MAX_LISTED_BUNDLES} bundles`);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const len = read(MAJOR_BYTES);
    if (len > MAX_LISTED_BUNDLE_BYTES) throw malformed('a listed bundle is too large');
    if (at + len > b.length) throw malformed('a listed bundle runs past the end');
    out.push(b.slice(at, at + len));
    at += len;
  }
  if (at !== b.length) throw malformed('trailing bytes after the list');
  return out;
}

function malformed(why: string) {
  return protocolError('BUNDLE_LIST_MALFORMED', `replica bundle list: ${why}`);
}

/** RFC 8949 §3: a head with the shortest argument encoding (lengths up to 2^32 - 1 suffice here). */
function head(major: number, n: number): Uint8Array {
  const m = major << 5;
  if (n < 24) return Uint8Array.of(m | n);
  if (n < 0x100) return Uint8Array.of(m | 24, n);
  if (n < 0x10000) return Uint8Array.of(m | 25, n >> 8, n & 0xff);
  return Uint8Array.of(m | 26, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

/** [major, argument, offset after the head]; refuses indefinite lengths, 8-byte arguments and non-shortest forms. */
function readHead(b: Uint8Array, at: number): [number, number, number] {
  if (at >= b.length) throw malformed('truncated head');
  const major = b[at]! >> 5;
  const info = b[at]! & 0x1f;
  if (info < 24) return [major, info, at + 1];
  const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : 0;
  if (size === 0) throw malformed('indefinite or 8-byte lengths are not used');
  if (at + 1 + size > b.length) throw malformed('truncated head');
  let n = 0;
  for (let i = 0; i < size; i++) n = n * 256 + b[at + 1 + i]!;
  const min = size === 1 ? 24 : size === 2 ? 0x100 : 0x10000;
  if (n < min) throw malformed('a length is not in its shortest form');
  return [major, n, at + 1 + size];
}
