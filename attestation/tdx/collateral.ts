/**
 * TDX verification collateral (Intel PCS API v4, "Get TDX TCB Information" and "Get TDX QE Identity"; PCK CRL and
 * Intel SGX Root CA CRL): the two accepted forms, signature and chain verification, freshness and revocation.
 *
 * The signature of a TCB info or QE identity covers the exact bytes of the `tcbInfo` / `enclaveIdentity` JSON value
 * as served, so the text is located in the body and never re-serialized. The signer is the "Intel SGX TCB Signing"
 * certificate, chained (ECDSA P-256) to the pinned Intel SGX Root CA and checked against the root CA CRL.
 *
 * Forms: (1) PCS responses: JSON body `{"tcbInfo":{…},"signature":"hex"}` plus the `TCB-Info-Issuer-Chain` /
 * `SGX-Enclave-Identity-Issuer-Chain` header value (URL-encoded PEM); (2) the dcap-qvl combined collateral JSON
 * (`tcb_info`, `tcb_info_signature`, `tcb_info_issuer_chain`, `qe_identity…`, `root_ca_crl`, `pck_crl` in hex).
 * The PCK CRL is verified with the PCK CA of the quote's own (already verified) chain, so a separately shipped
 * `pck_crl_issuer_chain` adds nothing and is not used.
 */
import { fromHex } from '../bytes.ts';
import { collateralError, rejected } from '../errors.ts';
import { type Certificate, commonName, parseCertificate } from '../x509/cert.ts';
import { checkValidity, verifyChain } from '../x509/chain.ts';
import { type Crl, assertNotRevoked, parseCrl, verifyCrl } from '../x509/crl.ts';
import { pemDecodeAll } from '../x509/pem.ts';
import { verifySignature } from '../x509/signature.ts';
import { INTEL_ALGORITHMS } from './pck.ts';
import { type QeIdentity, type TcbInfo, parseQeIdentity, parseTcbInfo } from './tcbinfo.ts';

/** One signed collateral item: the exact JSON text of the signed value, its raw r‖s signature, the signer chain. */
export interface SignedCollateral {
  readonly body: string;
  readonly signature: Uint8Array;
  /** DER certificates, signer first (the root may be included). */
  readonly issuerChain: readonly Uint8Array[];
}

export interface TdxCollateral {
  readonly tcbInfo: SignedCollateral;
  /** Absent only when the caller explicitly verifies without QE identity (`requireQeIdentity: false`). */
  readonly qeIdentity?: SignedCollateral;
  /** DER CRL issued by the Intel SGX Root CA. */
  readonly rootCaCrl?: Uint8Array;
  /** DER CRL issued by the PCK Platform or Processor CA. */
  readonly pckCrl?: Uint8Array;
}

/** What the collateral getter is asked for (Intel PCS keys TDX TCB info by FMSPC). */
export interface CollateralRequest {
  /** Lower-case hex. */
  readonly fmspc: string;
  readonly pceId: string;
  readonly ca: 'platform' | 'processor';
}
export type CollateralGetter = (req: CollateralRequest) => TdxCollateral | Promise<TdxCollateral>;

const invalid = (msg: string, cause?: unknown) => collateralError('TDX_COLLATERAL_INVALID', msg, cause === undefined ? undefined : { cause });

/**
 * The exact source text of member `key` of the top-level JSON object in `text` (RFC 8259 §4), found by scanning
 * strings and nesting so that the bytes the signature covers are the bytes served.
 */
export function rawJsonMember(text: string, key: string): string {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  };
  const str = (): string => {
    const start = i;
    if (text[i] !== '"') throw invalid(`expected a string at ${i}`);
    for (i++; i < text.length; i++) {
      if (text[i] === '\\') i++;
      else if (text[i] === '"') return JSON.parse(text.slice(start, ++i)) as string;
    }
    throw invalid('unterminated string');
  };
  const value = (): string => {
    const start = i;
    let depth = 0;
    for (; i < text.length; i++) {
      const ch = text[i]!;
      if (ch === '"') {
        str();
        i--;
      } else if (ch === '{' || ch === '[') depth++;
      else if (ch === '}' || ch === ']') {
        if (depth === 0) break;
        depth--;
        if (depth === 0) {
          i++;
          break;
        }
      } else if (ch === ',' && depth === 0) break;
    }
    return text.slice(start, i).trimEnd();
  };
  ws();
  if (text[i++] !== '{') throw invalid('collateral body is not a JSON object');
  let found: string | undefined;
  for (;;) {
    ws();
    const k = str();
    ws();
    if (text[i++] !== ':') throw invalid(`expected ':' after "${k}"`);
    ws();
    const v = value();
    if (k === key) {
      if (found !== undefined) throw invalid(`duplicate member "${key}"`);
      found = v;
    }
    ws();
    if (text[i] === ',') i++;
    else if (text[i] === '}') break;
    else throw invalid(`expected ',' or '}' at ${i}`);
  }
  if (found === undefined) throw invalid(`member "${key}" is absent`);
  return found;
}

function certsFromPemText(pem: string, what: string): Uint8Array[] {
  try {
    return pemDecodeAll(pem);
  } catch (e) {
    throw invalid(`${what} is not a PEM certificate chain`, e);
  }
}

function signatureHex(s: unknown, what: string): Uint8Array {
  if (typeof s !== 'string' || !/^[0-9a-fA-F]{128}$/.test(s)) throw invalid(`${what} signature must be 64-byte hex`);
  return fromHex(s);
}

/** A PCS response body (`{"tcbInfo"|"enclaveIdentity": …, "signature": …}`) plus its issuer-chain header value. */
export function signedFromPcs(body: string, issuerChainHeader: string, member: 'tcbInfo' | 'enclaveIdentity'): SignedCollateral {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(body) as Record<string, unknown>;
  } catch (e) {
    throw invalid(`${member} response is not JSON`, e);
  }
  // The header value is URL-encoded PEM; plain PEM (which never contains '%') is accepted as is.
  const chain = issuerChainHeader.includes('%') ? decodeURIComponent(issuerChainHeader) : issuerChainHeader;
  return { body: rawJsonMember(body, member), signature: signatureHex(parsed.signature, member), issuerChain: certsFromPemText(chain, `${member} issuer chain`) };
}

/** Same as `signedFromPcs` with the issuer chain already as DER certificates (signer first). */
export function signedFromPcsDer(body: string, issuerChain: readonly Uint8Array[], member: 'tcbInfo' | 'enclaveIdentity'): SignedCollateral {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(body) as Record<string, unknown>;
  } catch (e) {
    throw invalid(`${member} response is not JSON`, e);
  }
  return { body: rawJsonMember(body, member), signature: signatureHex(parsed.signature, member), issuerChain };
}

/** A PCS-form response body for a signed item: `{"<member>":<exact signed text>,"signature":"<hex>"}`. */
export function pcsResponse(item: SignedCollateral, member: 'tcbInfo' | 'enclaveIdentity'): string {
  let sig = '';
  for (const b of item.signature) sig += b.toString(16).padStart(2, '0');
  return `{"${member}":${item.body},"signature":"${sig}"}`;
}

/** The evidence bundle's collateral fields (docs/design.md §4), structurally: PCS bodies, DER CRLs, DER signer chain. */
export interface CollateralAsServed {
  readonly crls?: readonly Uint8Array[];
  readonly tcbInfo?: Uint8Array;
  readonly qeIdentity?: Uint8Array;
  readonly chain?: readonly Uint8Array[];
}

/** Collateral as carried in an evidence bundle → TdxCollateral. CRLs are told apart by their issuer. */
export function collateralFromServed(c: CollateralAsServed): TdxCollateral {
  if (!c.tcbInfo) throw collateralError('TDX_COLLATERAL_MISSING', 'the bundle carries no TCB info');
  if (!c.chain?.length) throw collateralError('TDX_COLLATERAL_MISSING', 'the bundle carries no TCB signing chain');
  const text = (b: Uint8Array) => new TextDecoder('utf-8', { fatal: true }).decode(b);
  let rootCaCrl: Uint8Array | undefined;
  let pckCrl: Uint8Array | undefined;
  for (const der of c.crls ?? []) {
    const crl = parseCrl(der);
    if (commonName(crl.issuer) === 'Intel SGX Root CA') {
      if (rootCaCrl) throw invalid('two root CA CRLs in the bundle');
      rootCaCrl = crl.der;
    } else {
      if (pckCrl) throw invalid('two PCK CRLs in the bundle');
      pckCrl = crl.der;
    }
  }
  return {
    tcbInfo: signedFromPcsDer(text(c.tcbInfo), c.chain, 'tcbInfo'),
    ...(c.qeIdentity ? { qeIdentity: signedFromPcsDer(text(c.qeIdentity), c.chain, 'enclaveIdentity') } : {}),
    ...(rootCaCrl ? { rootCaCrl } : {}),
    ...(pckCrl ? { pckCrl } : {}),
  };
}

/** TdxCollateral → the bundle's fields (what the enclave's sim provider and the host's cache attach). */
export function servedFromCollateral(c: TdxCollateral): CollateralAsServed {
  const enc = (s: string) => new TextEncoder().encode(s);
  return {
    tcbInfo: enc(pcsResponse(c.tcbInfo, 'tcbInfo')),
    ...(c.qeIdentity ? { qeIdentity: enc(pcsResponse(c.qeIdentity, 'enclaveIdentity')) } : {}),
    crls: [c.rootCaCrl, c.pckCrl].filter((x): x is Uint8Array => x !== undefined),
    chain: c.tcbInfo.issuerChain,
  };
}

/** The dcap-qvl combined collateral JSON (QuoteCollateralV3 serialized with serde). */
export function collateralFromDcapQvl(text: string): TdxCollateral {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw invalid('collateral is not JSON', e);
  }
  const s = (k: string): string => {
    if (typeof j[k] !== 'string') throw invalid(`collateral field ${k} is missing`);
    return j[k] as string;
  };
  const hexField = (k: string) => {
    const v = s(k);
    if (!/^([0-9a-fA-F]{2})+$/.test(v)) throw invalid(`collateral field ${k} is not hex`);
    return fromHex(v);
  };
  return {
    tcbInfo: { body: s('tcb_info'), signature: signatureHex(j.tcb_info_signature, 'tcb_info'), issuerChain: certsFromPemText(s('tcb_info_issuer_chain'), 'tcb_info_issuer_chain') },
    qeIdentity: { body: s('qe_identity'), signature: signatureHex(j.qe_identity_signature, 'qe_identity'), issuerChain: certsFromPemText(s('qe_identity_issuer_chain'), 'qe_identity_issuer_chain') },
    rootCaCrl: hexField('root_ca_crl'),
    pckCrl: hexField('pck_crl'),
  };
}

interface VerifiedSigned<T> {
  readonly value: T;
  readonly signer: Certificate;
}

let signedCache = new WeakMap<Certificate, Map<string, Promise<VerifiedSigned<unknown>>>>();

async function verifySignedUncached<T>(item: SignedCollateral, root: Certificate, now: Date, what: string, parse: (t: string) => T): Promise<VerifiedSigned<T>> {
  let chain: Certificate[];
  try {
    chain = item.issuerChain.map((d) => parseCertificate(d.slice())); // cached results must not alias caller buffers
  } catch (e) {
    throw invalid(`${what} issuer chain does not parse`, e);
  }
  const signer = chain[0];
  if (!signer || commonName(signer.subject) !== 'Intel SGX TCB Signing')
    throw rejected('TDX_COLLATERAL_SIGNER', `${what} is not signed by an "Intel SGX TCB Signing" certificate`);
  await verifyChain(chain, { now, roots: [root], algorithms: INTEL_ALGORITHMS });
  await verifySignature(signer.spki, 'ecdsa-p256-sha256', new TextEncoder().encode(item.body), item.signature, {
    allowed: INTEL_ALGORITHMS, failCode: 'TDX_COLLATERAL_SIGNATURE', what: `${what} signature`, ecdsaFormat: 'p1363',
  });
  return { value: parse(item.body), signer };
}

/** Verified once per exact (body, signature, chain) and root; dates are rechecked on every call. */
/**
 * Second-level memo by object identity (the same collateral object handed in again, the warm path): it holds only
 * results derived from bytes that were verified, so a later mutation of the object cannot make unverified bytes count.
 */
let signedByObject = new WeakMap<SignedCollateral, { root: Certificate; what: string; p: Promise<VerifiedSigned<unknown>> }>();

async function verifySigned<T>(item: SignedCollateral, root: Certificate, now: Date, what: string, parse: (t: string) => T): Promise<VerifiedSigned<T>> {
  const memo = signedByObject.get(item);
  if (memo && memo.root === root && memo.what === what) {
    const v = (await memo.p) as VerifiedSigned<T>;
    checkValidity(v.signer, now);
    return v;
  }
  const v = await verifySignedByContent(item, root, now, what, parse);
  signedByObject.set(item, { root, what, p: Promise.resolve(v) });
  return v;
}

async function verifySignedByContent<T>(item: SignedCollateral, root: Certificate, now: Date, what: string, parse: (t: string) => T): Promise<VerifiedSigned<T>> {
  let cache = signedCache.get(root);
  if (!cache) signedCache.set(root, (cache = new Map()));
  let k = `${what}|${item.body.length}:${item.body}|${byteKey(item.signature)}`;
  for (const c of item.issuerChain) k += `|${c.length}:${byteKey(c)}`;
  let p = cache.get(k) as Promise<VerifiedSigned<T>> | undefined;
  if (!p) {
    p = verifySignedUncached(item, root, now, what, parse);
    if (cache.size >= 256) cache.clear();
    cache.set(k, p);
    p.catch(() => cache.delete(k));
  }
  const v = await p;
  checkValidity(v.signer, now);
  return v;
}

function checkFreshness(issueDate: Date, nextUpdate: Date, now: Date, what: string, code: string): void {
  if (now < issueDate) throw collateralError(`${code}_NOT_YET_VALID`, `${what} is issued ${issueDate.toISOString()}, after now (${now.toISOString()})`);
  if (now > nextUpdate) throw collateralError(`${code}_EXPIRED`, `${what} expired ${nextUpdate.toISOString()} (now ${now.toISOString()}); fetch fresh collateral`);
}

export async function verifyTcbInfo(item: SignedCollateral, root: Certificate, now: Date): Promise<{ tcbInfo: TcbInfo; signer: Certificate }> {
  const v = await verifySigned(item, root, now, 'TCB info', parseTcbInfo);
  checkFreshness(v.value.issueDate, v.value.nextUpdate, now, 'TCB info', 'TDX_TCB_INFO');
  return { tcbInfo: v.value, signer: v.signer };
}

export async function verifyQeIdentity(item: SignedCollateral, root: Certificate, now: Date): Promise<{ qeIdentity: QeIdentity; signer: Certificate }> {
  const v = await verifySigned(item, root, now, 'QE identity', parseQeIdentity);
  checkFreshness(v.value.issueDate, v.value.nextUpdate, now, 'QE identity', 'TDX_QE_IDENTITY');
  return { qeIdentity: v.value, signer: v.signer };
}

let crlCache = new WeakMap<Certificate, Map<string, Promise<Crl>>>();
let crlByObject = new WeakMap<Uint8Array, { issuer: Certificate; p: Promise<Crl> }>();

/** Forgets every verified collateral signature and CRL (benchmarks of the cold path, tests). */
export function clearCollateralCaches(): void {
  signedCache = new WeakMap();
  signedByObject = new WeakMap();
  crlCache = new WeakMap();
  crlByObject = new WeakMap();
}

/** Parses and verifies a CRL signed by `issuer` (signature cached by exact bytes; freshness checked every call). */
export async function verifiedCrl(der: Uint8Array, issuer: Certificate, now: Date): Promise<Crl> {
  let cache = crlCache.get(issuer);
  if (!cache) crlCache.set(issuer, (cache = new Map()));
  // Identity memo first (same array handed in again); it only ever holds CRLs parsed from bytes that verified.
  const memo = crlByObject.get(der);
  let p = memo?.issuer === issuer ? memo.p : undefined;
  const k = p ? '' : byteKey(der);
  p ??= cache.get(k);
  if (!p) {
    p = (async () => {
      const crl = parseCrl(der.slice()); // cached results must not alias caller buffers
      await verifyCrl(crl, issuer, now, INTEL_ALGORITHMS);
      return crl;
    })();
    if (cache.size >= 64) cache.clear();
    cache.set(k, p);
    p.catch(() => cache.delete(k));
  }
  const crl = await p;
  crlByObject.set(der, { issuer, p });
  if (now < crl.thisUpdate) throw collateralError('CRL_NOT_YET_VALID', `CRL of "${crl.issuer.text}" is dated ${crl.thisUpdate.toISOString()}, after now`);
  if (crl.nextUpdate && now > crl.nextUpdate) throw collateralError('CRL_EXPIRED', `CRL of "${crl.issuer.text}" expired ${crl.nextUpdate.toISOString()}; fetch a fresh one`);
  return crl;
}

/** An exact, injective string key for bytes (cache keys must cover every byte a signature covers). */
export function byteKey(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192) as unknown as number[]);
  return s;
}

export { assertNotRevoked };
