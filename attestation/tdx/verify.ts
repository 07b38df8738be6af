/**
 * Signatures inside a TDX quote (Intel "TDX DCAP Quoting Library API" A.3.8–A.3.11; Intel QVL QuoteVerifier
 * steps 4.1.2.4.12, .13 and .16):
 * 1. the QE REPORT is signed by the PCK leaf key (ECDSA P-256 / SHA-256, raw r‖s);
 * 2. the QE REPORT's REPORTDATA binds the attestation key: SHA-256(attestation key ‖ QE authentication data)
 *    followed by 32 zero bytes;
 * 3. header ‖ body is signed by the attestation key (raw 64-byte P-256 point, imported as 0x04 ‖ x ‖ y).
 * Signatures and chains only: no policy here.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equalBytes, isZero, own } from '../bytes.ts';
import { rejected } from '../errors.ts';
import type { Certificate } from '../x509/cert.ts';
import { verifySignature } from '../x509/signature.ts';
import type { TdxQuote } from './abi.ts';
import { byteKey } from './collateral.ts';
import { INTEL_ALGORITHMS } from './pck.ts';

/**
 * The QE report, its signature and the PCK key are the same in every quote of a platform until the QE restarts
 * (they certify the attestation key, not the quote), so a verified triple is cached by its exact bytes.
 */
const qeSigCache = new Map<string, Promise<void>>();

export function clearQeSignatureCache(): void {
  qeSigCache.clear();
}

export function verifyQeReportSignature(quote: TdxQuote, pckLeaf: Certificate): Promise<void> {
  const c = quote.certification;
  const k = `${byteKey(pckLeaf.spki.raw)}|${byteKey(c.qeReport.raw)}|${byteKey(c.qeReportSignature)}`;
  let p = qeSigCache.get(k);
  if (!p) {
    p = verifyQeReportSignatureUncached(quote, pckLeaf);
    if (qeSigCache.size >= 1024) qeSigCache.clear();
    qeSigCache.set(k, p);
    p.catch(() => qeSigCache.delete(k));
  }
  return p;
}

async function verifyQeReportSignatureUncached(quote: TdxQuote, pckLeaf: Certificate): Promise<void> {
  await verifySignature(pckLeaf.spki, 'ecdsa-p256-sha256', quote.certification.qeReport.raw, quote.certification.qeReportSignature, {
    allowed: INTEL_ALGORITHMS, failCode: 'TDX_QE_REPORT_SIGNATURE', what: 'QE report signed by the PCK key', ecdsaFormat: 'p1363',
  });
}

export async function verifyQeReportData(quote: TdxQuote): Promise<void> {
  const rd = quote.certification.qeReport.reportData;
  // Synchronous SHA-256 (@noble/hashes): 96 bytes do not justify a WebCrypto round trip.
  const want = sha256(concat(quote.attestationKey, quote.certification.qeAuthData));
  if (!equalBytes(rd.subarray(0, 32), want) || !isZero(rd.subarray(32)))
    throw rejected('TDX_QE_REPORT_DATA', 'QE report REPORTDATA is not SHA-256(attestation key ‖ QE authentication data) ‖ 32 zero bytes');
}

const attKeyCache = new Map<string, Promise<CryptoKey>>();

function importAttestationKey(raw: Uint8Array): Promise<CryptoKey> {
  const k = String.fromCharCode(...raw);
  let p = attKeyCache.get(k);
  if (!p) {
    p = crypto.subtle.importKey('raw', own(concat(Uint8Array.of(0x04), raw)), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    if (attKeyCache.size >= 1024) attKeyCache.clear();
    attKeyCache.set(k, p);
    p.catch(() => attKeyCache.delete(k));
  }
  return p;
}

/**
 * An ECDSA P-256 / SHA-256 verifier for the attestation key: raw x‖y key, raw r‖s signature. The default is
 * WebCrypto; a Node caller may pass node:crypto (whose synchronous verify is cheaper per call) through the options.
 */
export type EcdsaP256Verifier = (key: Uint8Array, data: Uint8Array, signature: Uint8Array) => boolean | Promise<boolean>;

export async function verifyQuoteSignature(quote: TdxQuote, verifier?: EcdsaP256Verifier): Promise<void> {
  if (verifier) {
    let ok: boolean;
    try {
      ok = (await verifier(quote.attestationKey, quote.signedData, quote.signature)) === true;
    } catch (e) {
      throw rejected('TDX_ATTESTATION_KEY_INVALID', 'attestation key is not a P-256 point', { cause: e });
    }
    if (!ok) throw rejected('TDX_QUOTE_SIGNATURE', 'quote signature over header ‖ body does not verify with the attestation key');
    return;
  }
  let key: CryptoKey;
  try {
    key = await importAttestationKey(quote.attestationKey);
  } catch (e) {
    throw rejected('TDX_ATTESTATION_KEY_INVALID', 'attestation key is not a P-256 point', { cause: e });
  }
  const ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, own(quote.signature), own(quote.signedData));
  if (!ok) throw rejected('TDX_QUOTE_SIGNATURE', 'quote signature over header ‖ body does not verify with the attestation key');
}
