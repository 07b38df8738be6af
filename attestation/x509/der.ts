/**
 * Strict DER reader (ITU-T X.690 §8 and §10): definite lengths in minimal form, minimal INTEGERs, every length
 * checked against the enclosing buffer, nothing left over. After noble-curves `abstract/der.ts`.
 */
import { protocolError, type GmError } from '../errors.ts';

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8String: 0x0c,
  PrintableString: 0x13,
  IA5String: 0x16,
  UTCTime: 0x17,
  GeneralizedTime: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

export interface DerElement {
  /** The identifier octet (single-byte tags only; X.509 and friends never need more). */
  readonly tag: number;
  /** Header and content: the exact encoding, e.g. for signed TBS bytes. */
  readonly raw: Uint8Array;
  readonly content: Uint8Array;
}

const derError = (msg: string): GmError => protocolError('DER_INVALID', `DER: ${msg}`);

/** Reads one element at `offset` of `buf`, returning it and the offset after it. */
export function readElement(buf: Uint8Array, offset: number): { el: DerElement; end: number } {
  if (offset + 2 > buf.length) throw derError(`truncated header at ${offset}`);
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw derError(`multi-byte tag at ${offset}`);
  let len = buf[offset + 1]!;
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw derError('indefinite length');
    if (n > 4) throw derError(`length of ${n} octets`);
    if (offset + 2 + n > buf.length) throw derError(`truncated length at ${offset}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    if (buf[offset + 2] === 0) throw derError('non-minimal length (leading zero)');
    if (len < 0x80) throw derError('non-minimal length (long form for short length)');
    hdr += n;
  }
  const start = offset + hdr;
  const end = start + len;
  if (end > buf.length) throw derError(`length ${len} at ${offset} runs past the end (${buf.length})`);
  return { el: { tag, raw: buf.subarray(offset, end), content: buf.subarray(start, end) }, end };
}

/** Parses exactly one element occupying all of `buf`. */
export function parseDer(buf: Uint8Array): DerElement {
  const { el, end } = readElement(buf, 0);
  if (end !== buf.length) throw derError(`${buf.length - end} trailing bytes`);
  return el;
}

/** Sequential reader over the content of a constructed element. */
export class DerReader {
  #buf: Uint8Array;
  #pos = 0;
  constructor(buf: Uint8Array) {
    this.#buf = buf;
  }
  get done(): boolean {
    return this.#pos >= this.#buf.length;
  }
  peekTag(): number | undefined {
    return this.done ? undefined : this.#buf[this.#pos];
  }
  next(expectedTag?: number): DerElement {
    if (this.done) throw derError(`missing element${expectedTag === undefined ? '' : ` (tag 0x${expectedTag.toString(16)})`}`);
    const { el, end } = readElement(this.#buf, this.#pos);
    if (expectedTag !== undefined && el.tag !== expectedTag)
      throw derError(`expected tag 0x${expectedTag.toString(16)}, found 0x${el.tag.toString(16)}`);
    this.#pos = end;
    return el;
  }
  /** The next element if it has `tag`, else undefined (for OPTIONAL and DEFAULT fields). */
  optional(tag: number): DerElement | undefined {
    return this.peekTag() === tag ? this.next(tag) : undefined;
  }
  end(): void {
    if (!this.done) throw derError(`${this.#buf.length - this.#pos} unexpected trailing bytes`);
  }
}

export const reader = (el: DerElement): DerReader => new DerReader(el.content);

export function readOid(el: DerElement): string {
  if (el.tag !== TAG.OID) throw derError('expected OBJECT IDENTIFIER');
  const c = el.content;
  if (c.length === 0) throw derError('empty OID');
  const parts: number[] = [];
  let v = 0;
  let first = true;
  for (let i = 0; i < c.length; i++) {
    const b = c[i]!;
    if (v === 0 && b === 0x80) throw derError('non-minimal OID arc');
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw derError('OID arc too large');
    if (!(b & 0x80)) {
      if (first) {
        const a = v < 40 ? 0 : v < 80 ? 1 : 2;
        parts.push(a, v - 40 * a);
        first = false;
      } else parts.push(v);
      v = 0;
    } else if (i === c.length - 1) throw derError('truncated OID');
  }
  return parts.join('.');
}

/** INTEGER content bytes, checked minimal (X.690 §8.3.2). */
export function readIntegerBytes(el: DerElement): Uint8Array {
  if (el.tag !== TAG.INTEGER) throw derError('expected INTEGER');
  const c = el.content;
  if (c.length === 0) throw derError('empty INTEGER');
  if (c.length > 1 && ((c[0] === 0 && !(c[1]! & 0x80)) || (c[0] === 0xff && c[1]! & 0x80))) throw derError('non-minimal INTEGER');
  return c;
}

/** A non-negative INTEGER as an unsigned big-endian magnitude without the sign octet. */
export function readUnsigned(el: DerElement): Uint8Array {
  const c = readIntegerBytes(el);
  if (c[0]! & 0x80) throw derError('negative INTEGER where unsigned expected');
  return c[0] === 0 && c.length > 1 ? c.subarray(1) : c;
}

export function readSmallInt(el: DerElement): number {
  const c = readUnsigned(el);
  if (c.length > 6) throw derError('INTEGER too large');
  let v = 0;
  for (const b of c) v = v * 256 + b;
  return v;
}

export function readBoolean(el: DerElement): boolean {
  if (el.tag !== TAG.BOOLEAN || el.content.length !== 1) throw derError('bad BOOLEAN');
  const b = el.content[0]!;
  if (b !== 0 && b !== 0xff) throw derError('non-DER BOOLEAN');
  return b === 0xff;
}

/** BIT STRING with zero unused bits (keys and signatures). */
export function readBitStringBytes(el: DerElement): Uint8Array {
  if (el.tag !== TAG.BIT_STRING || el.content.length === 0) throw derError('bad BIT STRING');
  if (el.content[0] !== 0) throw derError('BIT STRING with unused bits');
  return el.content.subarray(1);
}

export function readOctetString(el: DerElement): Uint8Array {
  if (el.tag !== TAG.OCTET_STRING) throw derError('expected OCTET STRING');
  return el.content;
}

const dec = new TextDecoder('utf-8', { fatal: true });

export function readString(el: DerElement): string {
  switch (el.tag) {
    case TAG.UTF8String:
    case TAG.PrintableString:
    case TAG.IA5String:
    case 0x14: // TeletexString, tolerated for legacy names
    case 0x1e: // BMPString is UCS-2; not expected in our anchors
      try {
        return dec.decode(el.content);
      } catch (e) {
        throw protocolError('DER_INVALID', 'DER: string is not valid UTF-8', { cause: e });
      }
    default:
      throw derError(`expected a string, found tag 0x${el.tag.toString(16)}`);
  }
}

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), as RFC 5280 §4.1.2.5 restricts them. */
export function readTime(el: DerElement): Date {
  const s = String.fromCharCode(...el.content);
  let m: RegExpExecArray | null;
  let year: number;
  if (el.tag === TAG.UTCTime) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw derError(`bad UTCTime ${JSON.stringify(s)}`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (el.tag === TAG.GeneralizedTime) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw derError(`bad GeneralizedTime ${JSON.stringify(s)}`);
    year = Number(m[1]);
  } else throw derError('expected a time');
  const d = new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  if (Number.isNaN(d.getTime())) throw derError(`bad time ${s}`);
  return d;
}
