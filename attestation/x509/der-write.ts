/**
 * Small DER writer (ITU-T X.690 §10) and X.509 / CRL assembly (RFC 5280 §4.1, §5.1) for the simulated vendor
 * chains: the sims of every platform build their fake roots, intermediates and leaves with it. Output is minimal
 * DER, so `der.ts` (the strict reader) parses everything written here. Signing uses WebCrypto only.
 */
import { concat, own } from '../bytes.ts';
import { OID } from './cert.ts';
import { TAG } from './der.ts';

/** Definite-length TLV with the minimal length form. */
export function tlv(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length;
  let len: number[];
  if (n < 0x80) len = [n];
  else {
    len = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) len.unshift(v & 0xff);
    len.unshift(0x80 | len.length);
  }
  return concat(Uint8Array.from([tag, ...len]), content);
}

export const seq = (...items: readonly Uint8Array[]): Uint8Array => tlv(TAG.SEQUENCE, concat(...items));
export const set = (...items: readonly Uint8Array[]): Uint8Array => tlv(TAG.SET, concat(...items));
export const nul = (): Uint8Array => Uint8Array.from([TAG.NULL, 0]);
export const bool = (v: boolean): Uint8Array => Uint8Array.from([TAG.BOOLEAN, 1, v ? 0xff : 0]);
export const octets = (b: Uint8Array): Uint8Array => tlv(TAG.OCTET_STRING, b);
/** BIT STRING with zero unused bits (keys, signatures). */
export const bits = (b: Uint8Array): Uint8Array => tlv(TAG.BIT_STRING, concat(Uint8Array.of(0), b));
export const utf8 = (s: string): Uint8Array => tlv(TAG.UTF8String, new TextEncoder().encode(s));
export const printable = (s: string): Uint8Array => tlv(TAG.PrintableString, new TextEncoder().encode(s));
export const ia5 = (s: string): Uint8Array => tlv(TAG.IA5String, new TextEncoder().encode(s));
/** Constructed context-specific [n] (EXPLICIT tagging). */
export const explicit = (n: number, inner: Uint8Array): Uint8Array => tlv(0xa0 | n, inner);
/** Primitive context-specific [n] (IMPLICIT tagging of a primitive). */
export const implicitPrim = (n: number, content: Uint8Array): Uint8Array => tlv(0x80 | n, content);

/** INTEGER from a non-negative number, bigint or unsigned big-endian magnitude, minimally encoded. */
export function int(v: number | bigint | Uint8Array): Uint8Array {
  let mag: Uint8Array;
  if (v instanceof Uint8Array) mag = v;
  else {
    let x = BigInt(v);
    if (x < 0n) throw new RangeError('der-write: negative INTEGER not supported');
    const out: number[] = [];
    do {
      out.unshift(Number(x & 0xffn));
      x >>= 8n;
    } while (x > 0n);
    mag = Uint8Array.from(out);
  }
  let i = 0;
  while (i < mag.length - 1 && mag[i] === 0) i++;
  mag = mag.subarray(i);
  if (mag.length === 0) mag = Uint8Array.of(0);
  return tlv(TAG.INTEGER, mag[0]! & 0x80 ? concat(Uint8Array.of(0), mag) : mag);
}

export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map((a) => BigInt(a));
  if (arcs.length < 2) throw new RangeError(`der-write: bad OID ${dotted}`);
  const out: number[] = [];
  const push = (v: bigint) => {
    const grp: number[] = [Number(v & 0x7fn)];
    for (v >>= 7n; v > 0n; v >>= 7n) grp.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...grp);
  };
  push(arcs[0]! * 40n + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(TAG.OID, Uint8Array.from(out));
}

const two = (n: number) => String(n).padStart(2, '0');

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function time(d: Date): Uint8Array {
  const y = d.getUTCFullYear();
  const rest = `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  const enc = new TextEncoder();
  return y >= 1950 && y < 2050 ? tlv(TAG.UTCTime, enc.encode(`${two(y % 100)}${rest}`)) : tlv(TAG.GeneralizedTime, enc.encode(`${y}${rest}`));
}

/** A Name from (attribute OID, value) pairs, one attribute per RDN. Country is PrintableString, others UTF8String. */
export function name(attrs: readonly (readonly [string, string])[]): Uint8Array {
  return seq(...attrs.map(([o, v]) => set(seq(oid(o), o === '2.5.4.6' ? printable(v) : utf8(v)))));
}

/** Signature AlgorithmIdentifiers (DER) for the algorithms the sims sign with. */
export const ALG = {
  ecdsaSha384: seq(oid(OID.ecdsaSha384)),
  ecdsaSha256: seq(oid(OID.ecdsaSha256)),
  /** RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48 (RFC 4055 §3.1), as AMD signs its chain. */
  rsaPssSha384: seq(
    oid(OID.rsassaPss),
    seq(
      explicit(0, seq(oid(OID.sha384), nul())),
      explicit(1, seq(oid(OID.mgf1), seq(oid(OID.sha384), nul()))),
      explicit(2, int(48)),
    ),
  ),
} as const;

export interface ExtensionSpec {
  readonly oid: string;
  readonly critical?: boolean;
  /** The extnValue content (the DER of the extension's own value, or raw bytes where a vendor puts raw bytes). */
  readonly value: Uint8Array;
}

export const extension = (e: ExtensionSpec): Uint8Array =>
  seq(oid(e.oid), ...(e.critical ? [bool(true)] : []), octets(e.value));

/** basicConstraints (RFC 5280 §4.2.1.9) value. */
export const basicConstraints = (ca: boolean, pathLen?: number): Uint8Array =>
  seq(...(ca ? [bool(true)] : []), ...(pathLen === undefined ? [] : [int(pathLen)]));

/** keyUsage (RFC 5280 §4.2.1.3) value from bit numbers (0 = digitalSignature, 5 = keyCertSign, 6 = cRLSign). */
export function keyUsage(bitNumbers: readonly number[]): Uint8Array {
  let v = 0;
  for (const b of bitNumbers) v |= 0x80 >> b;
  if (v === 0) throw new RangeError('der-write: empty keyUsage');
  let unused = 0;
  while (!((v >> unused) & 1)) unused++;
  return tlv(TAG.BIT_STRING, Uint8Array.of(unused, v));
}

/** Produces the X.509 signature value for `tbs` (DER ECDSA-Sig-Value for ECDSA, the raw block for RSA). */
export type Signer = (tbs: Uint8Array) => Promise<Uint8Array>;

export interface CertificateSpec {
  readonly serial: number | bigint | Uint8Array;
  /** DER AlgorithmIdentifier, e.g. `ALG.rsaPssSha384`. */
  readonly signatureAlgorithm: Uint8Array;
  readonly issuer: Uint8Array;
  readonly subject: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** DER SubjectPublicKeyInfo (WebCrypto `exportKey('spki')`). */
  readonly spki: Uint8Array;
  readonly extensions?: readonly ExtensionSpec[];
}

export function tbsCertificate(s: CertificateSpec): Uint8Array {
  return seq(
    explicit(0, int(2)),
    int(s.serial),
    s.signatureAlgorithm,
    s.issuer,
    seq(time(s.notBefore), time(s.notAfter)),
    s.subject,
    s.spki,
    ...(s.extensions && s.extensions.length > 0 ? [explicit(3, seq(...s.extensions.map(extension)))] : []),
  );
}

/** A signed v3 certificate (DER). */
export async function certificate(s: CertificateSpec, sign: Signer): Promise<Uint8Array> {
  const tbs = tbsCertificate(s);
  return seq(tbs, s.signatureAlgorithm, bits(await sign(tbs)));
}

export interface CrlSpec {
  readonly signatureAlgorithm: Uint8Array;
  readonly issuer: Uint8Array;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly revoked: readonly { readonly serial: number | bigint | Uint8Array; readonly date: Date }[];
}

/** A signed v2 CRL (DER), RFC 5280 §5.1. */
export async function crl(s: CrlSpec, sign: Signer): Promise<Uint8Array> {
  const tbs = seq(
    int(1),
    s.signatureAlgorithm,
    s.issuer,
    time(s.thisUpdate),
    time(s.nextUpdate),
    ...(s.revoked.length > 0 ? [seq(...s.revoked.map((r) => seq(int(r.serial), time(r.date))))] : []),
  );
  return seq(tbs, s.signatureAlgorithm, bits(await sign(tbs)));
}

/** IEEE P1363 r‖s to DER ECDSA-Sig-Value. */
export function ecdsaP1363ToDer(sig: Uint8Array): Uint8Array {
  const h = sig.length / 2;
  return seq(int(sig.subarray(0, h)), int(sig.subarray(h)));
}

/** A Signer over a WebCrypto private key: ECDSA (SHA-256/384, DER output) or RSA-PSS (salt 48, SHA-384 key). */
export function webCryptoSigner(key: CryptoKey, hash: 'SHA-256' | 'SHA-384' = 'SHA-384'): Signer {
  return async (tbs) => {
    if (key.algorithm.name === 'ECDSA') {
      return ecdsaP1363ToDer(new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash }, key, own(tbs))));
    }
    if (key.algorithm.name === 'RSA-PSS') return new Uint8Array(await crypto.subtle.sign({ name: 'RSA-PSS', saltLength: 48 }, key, own(tbs)));
    throw new RangeError(`der-write: unsupported signing key ${key.algorithm.name}`);
  };
}
