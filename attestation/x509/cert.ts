/**
 * X.509 v3 certificate parsing (RFC 5280 §4.1). Structure only: no trust decision and no signature check here
 * (see `signature.ts` and `chain.ts`). The TBS bytes are kept exactly as encoded for signature verification.
 */
import { hex } from '../bytes.ts';
import { protocolError } from '../errors.ts';
import {
  type DerElement, DerReader, TAG, parseDer, readBitStringBytes, readBoolean, readIntegerBytes, readOctetString,
  readOid, readSmallInt, readString, readTime, reader,
} from './der.ts';

export interface AlgorithmIdentifier {
  readonly oid: string;
  /** The parameters element, if present (NULL included). */
  readonly params: DerElement | undefined;
  readonly raw: Uint8Array;
}

export interface NameAttribute {
  readonly oid: string;
  readonly value: string;
}

export interface Name {
  readonly raw: Uint8Array;
  readonly attributes: readonly NameAttribute[];
  /** Human-readable form, e.g. `CN=SEV-Milan, O=Advanced Micro Devices`. */
  readonly text: string;
}

export interface SubjectPublicKeyInfo {
  readonly raw: Uint8Array;
  readonly algorithm: AlgorithmIdentifier;
  /** For id-ecPublicKey: the named curve OID. */
  readonly curveOid: string | undefined;
  readonly publicKey: Uint8Array;
}

export interface Extension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Uint8Array;
}

export interface Certificate {
  readonly der: Uint8Array;
  readonly tbs: Uint8Array;
  readonly version: number;
  readonly serialNumber: Uint8Array;
  readonly signatureAlgorithm: AlgorithmIdentifier;
  readonly issuer: Name;
  readonly subject: Name;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: SubjectPublicKeyInfo;
  readonly extensions: ReadonlyMap<string, Extension>;
  readonly signature: Uint8Array;
}

export const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsassaPss: '1.2.840.113549.1.1.10',
  sha256WithRSA: '1.2.840.113549.1.1.11',
  sha384WithRSA: '1.2.840.113549.1.1.12',
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  p256: '1.2.840.10045.3.1.7',
  p384: '1.3.132.0.34',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  mgf1: '1.2.840.113549.1.1.8',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  crlDistributionPoints: '2.5.29.31',
  commonName: '2.5.4.3',
} as const;

const NAME_SHORT: Record<string, string> = {
  '2.5.4.3': 'CN', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST', '2.5.4.10': 'O', '2.5.4.11': 'OU', '2.5.4.5': 'serialNumber',
};

export function parseAlgorithmIdentifier(el: DerElement): AlgorithmIdentifier {
  if (el.tag !== TAG.SEQUENCE) throw protocolError('X509_INVALID', 'AlgorithmIdentifier is not a SEQUENCE');
  const r = reader(el);
  const oid = readOid(r.next(TAG.OID));
  const params = r.done ? undefined : r.next();
  r.end();
  return { oid, params, raw: el.raw };
}

export function parseName(el: DerElement): Name {
  if (el.tag !== TAG.SEQUENCE) throw protocolError('X509_INVALID', 'Name is not a SEQUENCE');
  const attributes: NameAttribute[] = [];
  const rdns = reader(el);
  while (!rdns.done) {
    const set = reader(rdns.next(TAG.SET));
    while (!set.done) {
      const atv = reader(set.next(TAG.SEQUENCE));
      const oid = readOid(atv.next(TAG.OID));
      const v = atv.next();
      let value: string;
      try {
        value = readString(v);
      } catch {
        value = `#${hex(v.raw)}`;
      }
      atv.end();
      attributes.push({ oid, value });
    }
  }
  const text = attributes.map((a) => `${NAME_SHORT[a.oid] ?? a.oid}=${a.value}`).join(', ');
  return { raw: el.raw, attributes, text };
}

export function parseSpki(el: DerElement): SubjectPublicKeyInfo {
  const r = reader(el);
  const algorithm = parseAlgorithmIdentifier(r.next(TAG.SEQUENCE));
  const publicKey = readBitStringBytes(r.next(TAG.BIT_STRING));
  r.end();
  const curveOid = algorithm.oid === OID.ecPublicKey && algorithm.params?.tag === TAG.OID ? readOid(algorithm.params) : undefined;
  return { raw: el.raw, algorithm, curveOid, publicKey };
}

/** Parses one DER certificate; throws `X509_INVALID` (with the DER cause) on any structural problem. */
export function parseCertificate(der: Uint8Array): Certificate {
  try {
    return parseCertificateInner(der);
  } catch (e) {
    if (e instanceof Error && 'code' in e && e.code === 'X509_INVALID') throw e;
    throw protocolError('X509_INVALID', `certificate does not parse: ${(e as Error).message}`, { cause: e });
  }
}

function parseCertificateInner(der: Uint8Array): Certificate {
  const top = parseDer(der);
  if (top.tag !== TAG.SEQUENCE) throw protocolError('X509_INVALID', 'certificate is not a SEQUENCE');
  const r = reader(top);
  const tbsEl = r.next(TAG.SEQUENCE);
  const signatureAlgorithm = parseAlgorithmIdentifier(r.next(TAG.SEQUENCE));
  const signature = readBitStringBytes(r.next(TAG.BIT_STRING));
  r.end();

  const t = reader(tbsEl);
  let version = 1;
  const v = t.optional(0xa0);
  if (v) {
    const vr = reader(v);
    version = readSmallInt(vr.next(TAG.INTEGER)) + 1;
    vr.end();
  }
  const serialNumber = readIntegerBytes(t.next(TAG.INTEGER));
  const innerAlg = parseAlgorithmIdentifier(t.next(TAG.SEQUENCE));
  if (hex(innerAlg.raw) !== hex(signatureAlgorithm.raw))
    throw protocolError('X509_INVALID', 'signatureAlgorithm differs from tbsCertificate.signature');
  const issuer = parseName(t.next(TAG.SEQUENCE));
  const validity = reader(t.next(TAG.SEQUENCE));
  const notBefore = readTime(validity.next());
  const notAfter = readTime(validity.next());
  validity.end();
  const subject = parseName(t.next(TAG.SEQUENCE));
  const spki = parseSpki(t.next(TAG.SEQUENCE));
  t.optional(0x81); // issuerUniqueID
  t.optional(0x82); // subjectUniqueID
  const extensions = new Map<string, Extension>();
  const extWrap = t.optional(0xa3);
  if (extWrap) {
    const w = reader(extWrap);
    const list = reader(w.next(TAG.SEQUENCE));
    w.end();
    while (!list.done) {
      const e = reader(list.next(TAG.SEQUENCE));
      const oid = readOid(e.next(TAG.OID));
      const crit = e.optional(TAG.BOOLEAN);
      const critical = crit ? readBoolean(crit) : false;
      const value = readOctetString(e.next(TAG.OCTET_STRING));
      e.end();
      if (extensions.has(oid)) throw protocolError('X509_INVALID', `duplicate extension ${oid}`);
      extensions.set(oid, { oid, critical, value });
    }
  }
  t.end();
  return { der, tbs: tbsEl.raw, version, serialNumber, signatureAlgorithm, issuer, subject, notBefore, notAfter, spki, extensions, signature };
}

/** basicConstraints cA flag (RFC 5280 §4.2.1.9); absent extension means not a CA. */
export function isCA(cert: Certificate): boolean {
  const ext = cert.extensions.get(OID.basicConstraints);
  if (!ext) return false;
  const r = new DerReader(parseDer(ext.value).content);
  const b = r.optional(TAG.BOOLEAN);
  return b ? readBoolean(b) : false;
}

export function commonName(name: Name): string | undefined {
  return name.attributes.find((a) => a.oid === OID.commonName)?.value;
}
