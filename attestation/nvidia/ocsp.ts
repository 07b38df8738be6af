/**
 * OCSP responses for the GPU certificate chain (RFC 6960 §4.2.1 OCSPResponse / BasicOCSPResponse, §4.2.2.2
 * authorized responders, §4.2.2.1 time). NVIDIA runs the OCSP service for its device chains; gm never fetches
 * here: responses arrive through the options' collateral getter (a cache is fine while within nextUpdate).
 *
 * Parse (structure only) and verify (responder signature chained to the pinned root, CertID match, certStatus,
 * thisUpdate/nextUpdate against `now`) are separate functions.
 */
import { equalBytes, hex, own } from '../bytes.ts';
import { collateralError, protocolError, rejected } from '../errors.ts';
import { type AlgorithmIdentifier, type Certificate, type Name, OID, parseAlgorithmIdentifier, parseCertificate, parseName } from '../x509/cert.ts';
import { verifyChain } from '../x509/chain.ts';
import {
  DerReader, TAG, parseDer, readBitStringBytes, readIntegerBytes, readOctetString, readOid, readSmallInt, readTime, reader,
} from '../x509/der.ts';
import { type SigAlg, signatureAlgorithmOf, verifySignature } from '../x509/signature.ts';

export const OID_OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1';
export const OID_KP_OCSP_SIGNING = '1.3.6.1.5.5.7.3.9';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_SHA1 = '1.3.14.3.2.26';
const CERTID_HASH: Record<string, 'SHA-1' | 'SHA-256' | 'SHA-384'> = { [OID_SHA1]: 'SHA-1', [OID.sha256]: 'SHA-256', [OID.sha384]: 'SHA-384' };

export type CertStatus = 'good' | 'revoked' | 'unknown';

export interface SingleResponse {
  readonly hashAlgorithm: string;
  readonly issuerNameHash: Uint8Array;
  readonly issuerKeyHash: Uint8Array;
  readonly serialNumber: Uint8Array;
  readonly certStatus: CertStatus;
  readonly revocationTime: Date | undefined;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
}

export interface BasicOcspResponse {
  readonly der: Uint8Array;
  readonly tbsResponseData: Uint8Array;
  readonly responderId: { readonly byName: Name } | { readonly byKey: Uint8Array };
  readonly producedAt: Date;
  readonly responses: readonly SingleResponse[];
  readonly signatureAlgorithm: AlgorithmIdentifier;
  readonly signature: Uint8Array;
  readonly certs: readonly Certificate[];
}

const bad = (msg: string, cause?: unknown) => protocolError('OCSP_INVALID', `OCSP response: ${msg}`, cause === undefined ? undefined : { cause });

/** Parses an OCSPResponse; a responseStatus other than successful(0) is a collateral error. */
export function parseOcspResponse(der: Uint8Array): BasicOcspResponse {
  let status: number;
  let body: Uint8Array | undefined;
  try {
    const r = reader(parseDer(der));
    const st = r.next(TAG.ENUMERATED);
    if (st.content.length !== 1) throw new Error('bad responseStatus');
    status = st.content[0]!;
    const rb = r.optional(0xa0);
    r.end();
    if (rb) {
      const w = reader(rb);
      const inner = reader(w.next(TAG.SEQUENCE));
      w.end();
      const type = readOid(inner.next(TAG.OID));
      if (type !== OID_OCSP_BASIC) throw new Error(`response type ${type} is not id-pkix-ocsp-basic`);
      body = readOctetString(inner.next(TAG.OCTET_STRING));
      inner.end();
    }
  } catch (e) {
    if (e instanceof Error && 'code' in e) throw bad((e as Error).message, e);
    throw bad((e as Error).message, e);
  }
  if (status !== 0) throw collateralError('OCSP_STATUS', `OCSP responder answered status ${status} (not successful)`);
  if (!body) throw bad('successful status without responseBytes');
  try {
    return parseBasic(body);
  } catch (e) {
    throw bad((e as Error).message, e);
  }
}

function parseBasic(der: Uint8Array): BasicOcspResponse {
  const r = reader(parseDer(der));
  const tbsEl = r.next(TAG.SEQUENCE);
  const signatureAlgorithm = parseAlgorithmIdentifier(r.next(TAG.SEQUENCE));
  const signature = readBitStringBytes(r.next(TAG.BIT_STRING));
  const certs: Certificate[] = [];
  const cw = r.optional(0xa0);
  if (cw) {
    const w = reader(cw);
    const list = reader(w.next(TAG.SEQUENCE));
    w.end();
    while (!list.done) certs.push(parseCertificate(list.next(TAG.SEQUENCE).raw));
  }
  r.end();
  const t = reader(tbsEl);
  const v = t.optional(0xa0);
  if (v) {
    const vr = reader(v);
    if (readSmallInt(vr.next(TAG.INTEGER)) !== 0) throw new Error('ResponseData version is not v1');
    vr.end();
  }
  let responderId: BasicOcspResponse['responderId'];
  const tag = t.peekTag();
  if (tag === 0xa1) {
    const w = reader(t.next(0xa1));
    responderId = { byName: parseName(w.next(TAG.SEQUENCE)) };
    w.end();
  } else if (tag === 0xa2) {
    const w = reader(t.next(0xa2));
    responderId = { byKey: readOctetString(w.next(TAG.OCTET_STRING)) };
    w.end();
  } else throw new Error('missing ResponderID');
  const producedAt = readTime(t.next(TAG.GeneralizedTime));
  const list = reader(t.next(TAG.SEQUENCE));
  const responses: SingleResponse[] = [];
  while (!list.done) responses.push(parseSingle(reader(list.next(TAG.SEQUENCE))));
  t.optional(0xa1); // responseExtensions (a nonce, when the request had one; cached responses need none)
  t.end();
  return { der, tbsResponseData: tbsEl.raw, responderId, producedAt, responses, signatureAlgorithm, signature, certs };
}

function parseSingle(s: DerReader): SingleResponse {
  const id = reader(s.next(TAG.SEQUENCE));
  const hashAlgorithm = parseAlgorithmIdentifier(id.next(TAG.SEQUENCE)).oid;
  const issuerNameHash = readOctetString(id.next(TAG.OCTET_STRING));
  const issuerKeyHash = readOctetString(id.next(TAG.OCTET_STRING));
  const serialNumber = readIntegerBytes(id.next(TAG.INTEGER));
  id.end();
  const st = s.next();
  let certStatus: CertStatus;
  let revocationTime: Date | undefined;
  if (st.tag === 0x80 && st.content.length === 0) certStatus = 'good';
  else if (st.tag === 0x82 && st.content.length === 0) certStatus = 'unknown';
  else if (st.tag === 0xa1) {
    certStatus = 'revoked';
    const ri = new DerReader(st.content);
    revocationTime = readTime(ri.next(TAG.GeneralizedTime));
    ri.optional(0xa0);
    ri.end();
  } else throw new Error(`bad certStatus tag 0x${st.tag.toString(16)}`);
  const thisUpdate = readTime(s.next(TAG.GeneralizedTime));
  let nextUpdate: Date | undefined;
  const nu = s.optional(0xa0);
  if (nu) {
    const w = reader(nu);
    nextUpdate = readTime(w.next(TAG.GeneralizedTime));
    w.end();
  }
  s.optional(0xa1);
  s.end();
  return { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber, certStatus, revocationTime, thisUpdate, nextUpdate };
}

function hasOcspSigningEku(cert: Certificate): boolean {
  const ext = cert.extensions.get(OID_EXT_KEY_USAGE);
  if (!ext) return false;
  const r = reader(parseDer(ext.value));
  while (!r.done) if (readOid(r.next(TAG.OID)) === OID_KP_OCSP_SIGNING) return true;
  return false;
}

async function digest(alg: 'SHA-1' | 'SHA-256' | 'SHA-384', b: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest(alg, own(b)));
}

export interface OcspCheckOptions {
  readonly now: Date;
  /** The verified path above `issuer` (issuer's issuer first, root last): a delegated responder chains through it. */
  readonly issuerChain?: readonly Certificate[];
  /** Roots the responder's certificate must chain to (the pinned NVIDIA device root). */
  readonly roots: readonly Certificate[];
  /** Signature algorithms accepted for the response and the responder chain. */
  readonly algorithms?: readonly SigAlg[];
}

/**
 * Verifies that `resp` is a valid statement by `issuer`'s OCSP responder that `cert` is good at `now`.
 * The signer is either the issuer itself or a delegated responder (RFC 6960 §4.2.2.2) carried in `certs`, issued
 * by `issuer`, with id-kp-OCSPSigning, and chained to `roots`.
 */
export async function verifyOcspForCert(resp: BasicOcspResponse, cert: Certificate, issuer: Certificate, options: OcspCheckOptions): Promise<SingleResponse> {
  const algorithms = options.algorithms ?? ['ecdsa-p384-sha384'];
  let single: SingleResponse | undefined;
  for (const s of resp.responses) {
    const h = CERTID_HASH[s.hashAlgorithm];
    if (!h || !equalBytes(s.serialNumber, cert.serialNumber)) continue;
    const keyBits = issuer.spki.publicKey;
    if (equalBytes(s.issuerNameHash, await digest(h, issuer.subject.raw)) && equalBytes(s.issuerKeyHash, await digest(h, keyBits))) {
      single = s;
      break;
    }
  }
  if (!single) throw collateralError('OCSP_NO_STATUS', `OCSP response has no status for "${cert.subject.text}" (serial ${hex(cert.serialNumber)})`);

  const signer = resp.certs[0] ?? issuer;
  if (signer !== issuer && !equalBytes(signer.der, issuer.der)) {
    if (!equalBytes(signer.issuer.raw, issuer.subject.raw))
      throw rejected('OCSP_RESPONDER_UNAUTHORIZED', `OCSP responder "${signer.subject.text}" is not issued by "${issuer.subject.text}"`);
    if (!hasOcspSigningEku(signer)) throw rejected('OCSP_RESPONDER_UNAUTHORIZED', `OCSP responder "${signer.subject.text}" lacks id-kp-OCSPSigning`);
    await verifyChain([signer, issuer, ...(options.issuerChain ?? [])], { now: options.now, roots: options.roots, algorithms });
  }
  matchesResponderId(resp, signer);
  const alg = signatureAlgorithmOf(resp.signatureAlgorithm, signer.spki);
  await verifySignature(signer.spki, alg, resp.tbsResponseData, resp.signature, { allowed: algorithms, failCode: 'OCSP_SIGNATURE', what: `OCSP response for "${cert.subject.text}"` });

  if (options.now < single.thisUpdate) throw collateralError('OCSP_NOT_YET_VALID', `OCSP status for "${cert.subject.text}" is dated ${single.thisUpdate.toISOString()}, after now`);
  if (single.nextUpdate && options.now > single.nextUpdate) throw collateralError('OCSP_EXPIRED', `OCSP status for "${cert.subject.text}" expired ${single.nextUpdate.toISOString()}; fetch a fresh response`);
  if (single.certStatus === 'revoked') throw rejected('CERT_REVOKED', `certificate "${cert.subject.text}" is revoked (OCSP, since ${single.revocationTime?.toISOString()})`);
  if (single.certStatus !== 'good') throw rejected('OCSP_STATUS_UNKNOWN', `OCSP responder does not know certificate "${cert.subject.text}"`);
  return single;
}

function matchesResponderId(resp: BasicOcspResponse, signer: Certificate): void {
  const id = resp.responderId;
  if ('byName' in id) {
    if (!equalBytes(id.byName.raw, signer.subject.raw)) throw rejected('OCSP_RESPONDER_UNAUTHORIZED', `ResponderID names "${id.byName.text}", signer is "${signer.subject.text}"`);
  }
  // byKey (SHA-1 of the key) is checked by the signature itself: only that key verifies.
}

/** The DER of an OCSP CertID's input, for builders: SHA-384 issuerNameHash / issuerKeyHash. */
export async function certIdHashes(issuer: Certificate): Promise<{ nameHash: Uint8Array; keyHash: Uint8Array }> {
  return { nameHash: await digest('SHA-384', issuer.subject.raw), keyHash: await digest('SHA-384', issuer.spki.publicKey) };
}
