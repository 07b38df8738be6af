/** PEM (RFC 7468) to DER, strict: only the labels asked for, base64 body, nothing but whitespace between blocks. */
import { fromBase64, toBase64 } from '../bytes.ts';
import { protocolError } from '../errors.ts';

export function pemDecodeAll(text: string, label = 'CERTIFICATE'): Uint8Array[] {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  const out: Uint8Array[] = [];
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (text.slice(last, m.index).trim() !== '' && out.length > 0)
      throw protocolError('PEM_INVALID', 'PEM: unexpected text between blocks');
    if (m[1] !== label) throw protocolError('PEM_INVALID', `PEM: expected ${label}, found ${m[1]}`);
    out.push(fromBase64(m[2]!, 'PEM body'));
    last = re.lastIndex;
  }
  if (out.length === 0) throw protocolError('PEM_INVALID', `PEM: no ${label} block`);
  if (text.slice(last).replace(/\0+$/, '').trim() !== '') throw protocolError('PEM_INVALID', 'PEM: trailing text after the last block');
  return out;
}

export function isPem(bytes: Uint8Array): boolean {
  const head = new TextDecoder().decode(bytes.subarray(0, 64));
  return head.trimStart().startsWith('-----BEGIN');
}

/** Accepts PEM (one or more certificates) or a single DER certificate. */
export function certificatesFrom(bytes: Uint8Array): Uint8Array[] {
  return isPem(bytes) ? pemDecodeAll(new TextDecoder().decode(bytes)) : [bytes];
}

export function pemEncode(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = toBase64(der).replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}
