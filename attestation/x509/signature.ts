/**
 * Signature algorithms gm accepts, checked against an allowlist before any key is used (after jose's
 * `jws_verify` and go-sev-guest's exact SHA384WithRSAPSS check), and verified with WebCrypto.
 */
import { own } from '../bytes.ts';
import { GmError, rejected } from '../errors.ts';
import { type AlgorithmIdentifier, type Certificate, OID, type SubjectPublicKeyInfo } from './cert.ts';
import { DerReader, TAG, parseDer, readOid, readSmallInt, readUnsigned, reader } from './der.ts';

export type SigAlg =
  | 'ecdsa-p256-sha256'
  | 'ecdsa-p384-sha384'
  | 'ecdsa-p384-sha256'
  | 'rsa-pss-sha384'
  | 'rsa-pkcs1-sha256'
  | 'rsa-pkcs1-sha384';

const CURVE: Record<string, { name: 'P-256' | 'P-384'; size: number }> = {
  [OID.p256]: { name: 'P-256', size: 32 },
  [OID.p384]: { name: 'P-384', size: 48 },
};

/** Names the algorithm of a signature made with `issuerKey` under `sigAlg`; throws CERT_ALGORITHM if unknown. */
export function signatureAlgorithmOf(sigAlg: AlgorithmIdentifier, issuerKey: SubjectPublicKeyInfo): SigAlg {
  const keyAlg = issuerKey.algorithm.oid;
  if (sigAlg.oid === OID.ecdsaSha256 || sigAlg.oid === OID.ecdsaSha384) {
    if (sigAlg.params !== undefined) throw rejected('CERT_ALGORITHM', 'ECDSA signature algorithm must have absent parameters');
    if (keyAlg !== OID.ecPublicKey) throw rejected('CERT_ALGORITHM', 'ECDSA signature with a non-EC issuer key');
    const h = sigAlg.oid === OID.ecdsaSha256 ? 'sha256' : 'sha384';
    if (issuerKey.curveOid === OID.p256 && h === 'sha256') return 'ecdsa-p256-sha256';
    if (issuerKey.curveOid === OID.p384 && h === 'sha384') return 'ecdsa-p384-sha384';
    if (issuerKey.curveOid === OID.p384 && h === 'sha256') return 'ecdsa-p384-sha256';
    throw rejected('CERT_ALGORITHM', `unsupported ECDSA curve/hash ${issuerKey.curveOid}/${h}`);
  }
  if (keyAlg !== OID.rsaEncryption && keyAlg !== OID.rsassaPss) throw rejected('CERT_ALGORITHM', `unsupported key algorithm ${keyAlg}`);
  if (sigAlg.oid === OID.sha256WithRSA) return 'rsa-pkcs1-sha256';
  if (sigAlg.oid === OID.sha384WithRSA) return 'rsa-pkcs1-sha384';
  if (sigAlg.oid === OID.rsassaPss) {
    assertPssSha384(sigAlg);
    return 'rsa-pss-sha384';
  }
  throw rejected('CERT_ALGORITHM', `unsupported signature algorithm ${sigAlg.oid}`);
}

/** RSASSA-PSS-params (RFC 4055 §3.1) must say SHA-384, MGF1 with SHA-384, salt length 48, trailer 1. */
function assertPssSha384(alg: AlgorithmIdentifier): void {
  const bad = (why: string) => rejected('CERT_ALGORITHM', `RSA-PSS parameters are not SHA-384/MGF1-SHA-384/48: ${why}`);
  if (!alg.params || alg.params.tag !== TAG.SEQUENCE) throw bad('missing parameters');
  const r = reader(alg.params);
  const h = r.optional(0xa0);
  if (!h) throw bad('default hash (SHA-1)');
  const hashOid = readOid(reader(reader(h).next(TAG.SEQUENCE)).next(TAG.OID));
  if (hashOid !== OID.sha384) throw bad(`hash ${hashOid}`);
  const m = r.optional(0xa1);
  if (!m) throw bad('default MGF');
  const mr = reader(reader(m).next(TAG.SEQUENCE));
  if (readOid(mr.next(TAG.OID)) !== OID.mgf1) throw bad('MGF is not MGF1');
  const mh = readOid(reader(mr.next(TAG.SEQUENCE)).next(TAG.OID));
  if (mh !== OID.sha384) throw bad(`MGF1 hash ${mh}`);
  const s = r.optional(0xa2);
  if (!s || readSmallInt(new DerReader(s.content).next(TAG.INTEGER)) !== 48) throw bad('salt length');
  const t = r.optional(0xa3);
  if (t && readSmallInt(new DerReader(t.content).next(TAG.INTEGER)) !== 1) throw bad('trailer field');
  r.end();
}

function importParams(alg: SigAlg): { imp: RsaHashedImportParams | EcKeyImportParams; ver: AlgorithmIdentifierLike } {
  switch (alg) {
    case 'ecdsa-p256-sha256':
      return { imp: { name: 'ECDSA', namedCurve: 'P-256' }, ver: { name: 'ECDSA', hash: 'SHA-256' } };
    case 'ecdsa-p384-sha384':
      return { imp: { name: 'ECDSA', namedCurve: 'P-384' }, ver: { name: 'ECDSA', hash: 'SHA-384' } };
    case 'ecdsa-p384-sha256':
      return { imp: { name: 'ECDSA', namedCurve: 'P-384' }, ver: { name: 'ECDSA', hash: 'SHA-256' } };
    case 'rsa-pss-sha384':
      return { imp: { name: 'RSA-PSS', hash: 'SHA-384' }, ver: { name: 'RSA-PSS', saltLength: 48 } };
    case 'rsa-pkcs1-sha256':
      return { imp: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, ver: { name: 'RSASSA-PKCS1-v1_5' } };
    case 'rsa-pkcs1-sha384':
      return { imp: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-384' }, ver: { name: 'RSASSA-PKCS1-v1_5' } };
  }
}
type AlgorithmIdentifierLike = EcdsaParams | RsaPssParams | Algorithm;

const keyCache = new Map<string, Promise<CryptoKey>>();
const KEY_CACHE_MAX = 4096;

/** Imports (and caches) a public key for `alg`. An id-RSASSA-PSS SPKI is re-wrapped as rsaEncryption for WebCrypto. */
export function importPublicKey(spki: SubjectPublicKeyInfo, alg: SigAlg): Promise<CryptoKey> {
  let raw = spki.raw;
  const cacheKey = `${alg}:${String.fromCharCode(...raw)}`;
  const hit = keyCache.get(cacheKey);
  if (hit) return hit;
  if (alg.startsWith('ecdsa')) {
    const curve = CURVE[spki.curveOid ?? ''];
    if (!curve || spki.algorithm.oid !== OID.ecPublicKey) throw rejected('CERT_ALGORITHM', 'EC key on an unsupported curve');
  } else if (spki.algorithm.oid === OID.rsassaPss) {
    raw = rsaSpkiFromPss(spki);
  }
  const { imp } = importParams(alg);
  const p = crypto.subtle.importKey('spki', own(raw), imp, false, ['verify']);
  p.catch(() => keyCache.delete(cacheKey));
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
  keyCache.set(cacheKey, p);
  return p;
}

function rsaSpkiFromPss(spki: SubjectPublicKeyInfo): Uint8Array {
  // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING key }
  const alg = Uint8Array.from([0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00]);
  const bits = derWrap(0x03, Uint8Array.from([0, ...spki.publicKey]));
  return derWrap(0x30, Uint8Array.from([...alg, ...bits]));
}

function derWrap(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Uint8Array.from([tag, ...len, ...content]);
}

/**
 * An ECDSA P-384/SHA-384 verifier over (SPKI DER, data, raw r‖s), for verifiers that take one in their options
 * (SEV-SNP reports, NVIDIA GPU reports). The default is WebCrypto; a Node process may pass node:crypto's (it skips
 * WebCrypto's thread-pool round trip). The caller pins the algorithm and checks the key type before calling it.
 */
export type P384Verifier = (spki: Uint8Array, data: Uint8Array, signatureP1363: Uint8Array) => boolean | Promise<boolean>;

/** DER ECDSA-Sig-Value to IEEE P1363 r‖s of `size`-byte halves. */
export function ecdsaDerToP1363(sig: Uint8Array, size: number): Uint8Array {
  // Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 5480 §2.2 / RFC 3279 §2.2.3): any other outer tag is not DER.
  const outer = parseDer(sig);
  if (outer.tag !== TAG.SEQUENCE) throw rejected('CERT_SIGNATURE', `ECDSA signature is not a SEQUENCE (tag 0x${outer.tag.toString(16)})`);
  const r = reader(outer);
  const rv = readUnsigned(r.next(TAG.INTEGER));
  const sv = readUnsigned(r.next(TAG.INTEGER));
  r.end();
  if (rv.length > size || sv.length > size) throw rejected('CERT_SIGNATURE', 'ECDSA signature component too long');
  const out = new Uint8Array(2 * size);
  out.set(rv, size - rv.length);
  out.set(sv, 2 * size - sv.length);
  return out;
}

/**
 * Verifies `signature` over `data` with `spki` under `alg`, which must be in `allowed`.
 * ECDSA signatures may be DER (X.509, CRLs) or raw P1363 (`ecdsaFormat: 'p1363'`).
 * Throws `CERT_ALGORITHM` before using the key when disallowed, `failCode` when the signature does not verify.
 */
export async function verifySignature(
  spki: SubjectPublicKeyInfo, alg: SigAlg, data: Uint8Array, signature: Uint8Array,
  options: { allowed: readonly SigAlg[]; failCode: string; what: string; ecdsaFormat?: 'der' | 'p1363' },
): Promise<void> {
  if (!options.allowed.includes(alg)) throw rejected('CERT_ALGORITHM', `${options.what}: algorithm ${alg} is not allowed here (allowed: ${options.allowed.join(', ')})`);
  let key: CryptoKey;
  try {
    key = await importPublicKey(spki, alg);
  } catch (e) {
    // WebCrypto refuses a key that is not a valid point / modulus with a DOMException: a bad key, coded.
    if (e instanceof GmError) throw e;
    throw rejected('CERT_KEY_INVALID', `${options.what}: the public key is not a valid ${alg} key`, { cause: e });
  }
  let sig = signature;
  if (alg.startsWith('ecdsa')) {
    const size = CURVE[spki.curveOid ?? '']!.size;
    if (options.ecdsaFormat !== 'p1363') {
      try {
        sig = ecdsaDerToP1363(signature, size);
      } catch (e) {
        throw rejected(options.failCode, `${options.what}: malformed ECDSA signature`, { cause: e });
      }
    } else if (sig.length !== 2 * size) throw rejected(options.failCode, `${options.what}: ECDSA signature must be ${2 * size} bytes`);
  }
  const ok = await crypto.subtle.verify(importParams(alg).ver, key, own(sig), own(data));
  if (!ok) throw rejected(options.failCode, `${options.what}: signature does not verify`);
}

/** Verifies `cert`'s signature with `issuer`'s key. */
export async function verifyCertificateSignature(cert: Certificate, issuer: Certificate, allowed: readonly SigAlg[]): Promise<void> {
  const alg = signatureAlgorithmOf(cert.signatureAlgorithm, issuer.spki);
  await verifySignature(issuer.spki, alg, cert.tbs, cert.signature, {
    allowed, failCode: 'CERT_SIGNATURE', what: `certificate "${cert.subject.text}" signed by "${issuer.subject.text}"`,
  });
}
