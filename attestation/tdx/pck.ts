/**
 * The PCK certificate chain of a TDX quote and the Intel SGX PCK certificate extensions.
 *
 * Chain: PCK leaf ("Intel SGX PCK Certificate") → "Intel SGX PCK Platform CA" or "Intel SGX PCK Processor CA" →
 * the pinned "Intel SGX Root CA", ECDSA P-256 with SHA-256 only (Intel "SGX PCK Certificate and Certificate
 * Revocation List Profile Specification" §1.3). Extensions per the same profile §1.5, OID 1.2.840.113741.1.13.1:
 * PPID (.1), TCB (.2: component SVNs .2.1–.2.16, PCESVN .2.17, CPUSVN .2.18), PCE-ID (.3), FMSPC (.4),
 * SGX Type (.5), PlatformInstanceID (.6, Platform CA only), Configuration (.7, Platform CA only).
 */
import { equalBytes } from '../bytes.ts';
import { protocolError, rejected } from '../errors.ts';
import { type Certificate, OID, commonName, parseCertificate } from '../x509/cert.ts';
import { checkValidity, verifyChain } from '../x509/chain.ts';
import { TAG, parseDer, readBoolean, readOctetString, readOid, readSmallInt, reader, type DerElement } from '../x509/der.ts';
import { pemDecodeAll } from '../x509/pem.ts';
import type { SigAlg } from '../x509/signature.ts';

export const SGX_EXTENSIONS_OID = '1.2.840.113741.1.13.1';
/** Intel signs every certificate, CRL and collateral item of DCAP with ECDSA P-256 / SHA-256. */
export const INTEL_ALGORITHMS: readonly SigAlg[] = ['ecdsa-p256-sha256'];

export type PckCaType = 'platform' | 'processor';

export interface PckTcb {
  /** SGX TCB component SVNs 1..16 (index 0 = component 1). */
  readonly sgxTcbComponents: readonly number[];
  readonly pceSvn: number;
  readonly cpuSvn: Uint8Array;
}

export interface PckExtensions {
  readonly ppid: Uint8Array;
  readonly tcb: PckTcb;
  readonly pceId: Uint8Array;
  readonly fmspc: Uint8Array;
  /** 0 = Standard, 1 = Scalable, 2 = Scalable with Integrity. */
  readonly sgxType: number;
  readonly platformInstanceId: Uint8Array | undefined;
  readonly configuration: { readonly dynamicPlatform?: boolean; readonly cachedKeys?: boolean; readonly smtEnabled?: boolean } | undefined;
}

export interface VerifiedPck {
  readonly leaf: Certificate;
  readonly intermediate: Certificate;
  readonly root: Certificate;
  readonly caType: PckCaType;
  readonly extensions: PckExtensions;
}

const extError = (msg: string) => protocolError('TDX_PCK_EXTENSIONS_INVALID', `PCK SGX extensions: ${msg}`);

function exact(b: Uint8Array, n: number, what: string): Uint8Array {
  if (b.length !== n) throw extError(`${what} is ${b.length} bytes, expected ${n}`);
  return b;
}

/** Each entry of the SGX extension is SEQUENCE { OID, value }; returns them keyed by OID, no duplicates. */
function entries(el: DerElement, prefix: string): Map<string, DerElement> {
  const out = new Map<string, DerElement>();
  const r = reader(el);
  while (!r.done) {
    const e = reader(r.next(TAG.SEQUENCE));
    const oid = readOid(e.next(TAG.OID));
    const v = e.next();
    e.end();
    if (!oid.startsWith(`${prefix}.`)) throw extError(`unexpected OID ${oid} under ${prefix}`);
    if (out.has(oid)) throw extError(`duplicate ${oid}`);
    out.set(oid, v);
  }
  return out;
}

function need(m: Map<string, DerElement>, oid: string): DerElement {
  const v = m.get(oid);
  if (!v) throw extError(`missing ${oid}`);
  return v;
}

export function parsePckExtensions(cert: Certificate): PckExtensions {
  const ext = cert.extensions.get(SGX_EXTENSIONS_OID);
  if (!ext) throw extError('extension 1.2.840.113741.1.13.1 is absent');
  try {
    const O = SGX_EXTENSIONS_OID;
    const top = entries(parseDer(ext.value), O);
    const tcbEntries = entries(need(top, `${O}.2`), `${O}.2`);
    const sgxTcbComponents: number[] = [];
    for (let i = 1; i <= 16; i++) {
      const v = readSmallInt(need(tcbEntries, `${O}.2.${i}`));
      if (v > 255) throw extError(`TCB component ${i} out of range`);
      sgxTcbComponents.push(v);
    }
    const pceSvn = readSmallInt(need(tcbEntries, `${O}.2.17`));
    if (pceSvn > 0xffff) throw extError('PCESVN out of range');
    const cpuSvn = exact(readOctetString(need(tcbEntries, `${O}.2.18`)), 16, 'CPUSVN');
    if (tcbEntries.size !== 18) throw extError('unexpected entries in TCB');
    // CPUSVN is the 16 component SVNs as bytes: the two encodings must agree.
    if (!cpuSvn.every((b, i) => b === sgxTcbComponents[i])) throw extError('CPUSVN differs from the TCB component SVNs');
    const sgxTypeEl = need(top, `${O}.5`);
    if (sgxTypeEl.tag !== TAG.ENUMERATED || sgxTypeEl.content.length !== 1) throw extError('SGX Type is not a one-byte ENUMERATED');
    const piid = top.get(`${O}.6`);
    const cfg = top.get(`${O}.7`);
    let configuration: PckExtensions['configuration'];
    if (cfg) {
      const c = entries(cfg, `${O}.7`);
      const b = (n: number) => (c.has(`${O}.7.${n}`) ? readBoolean(c.get(`${O}.7.${n}`)!) : undefined);
      configuration = { dynamicPlatform: b(1), cachedKeys: b(2), smtEnabled: b(3) };
    }
    for (const k of top.keys()) if (![1, 2, 3, 4, 5, 6, 7].some((n) => k === `${O}.${n}`)) throw extError(`unknown entry ${k}`);
    return {
      ppid: exact(readOctetString(need(top, `${O}.1`)), 16, 'PPID'),
      tcb: { sgxTcbComponents, pceSvn, cpuSvn },
      pceId: exact(readOctetString(need(top, `${O}.3`)), 2, 'PCE-ID'),
      fmspc: exact(readOctetString(need(top, `${O}.4`)), 6, 'FMSPC'),
      sgxType: sgxTypeEl.content[0]!,
      platformInstanceId: piid ? exact(readOctetString(piid), 16, 'PlatformInstanceID') : undefined,
      configuration,
    };
  } catch (e) {
    if (e instanceof Error && 'code' in e && e.code === 'TDX_PCK_EXTENSIONS_INVALID') throw e;
    throw extError(`does not parse: ${(e as Error).message}`);
  }
}

/** PEM bytes of the type-5 certification data to certificates (leaf first). */
export function parsePckChain(pem: Uint8Array): Certificate[] {
  let ders: Uint8Array[];
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(pem);
    // Strict framing: the PEM blocks start at the first byte (only NUL padding may follow the last one).
    if (!text.startsWith('-----BEGIN CERTIFICATE-----')) throw new Error('data before the first PEM block');
    ders = pemDecodeAll(text);
  } catch (e) {
    throw protocolError('TDX_PCK_CHAIN_INVALID', `PCK certificate chain is not PEM: ${(e as Error).message}`, { cause: e });
  }
  try {
    return ders.map(parseCertificate);
  } catch (e) {
    throw protocolError('TDX_PCK_CHAIN_INVALID', `PCK certificate chain: ${(e as Error).message}`, { cause: e });
  }
}

function caTypeOf(intermediate: Certificate): PckCaType {
  const cn = commonName(intermediate.subject);
  if (cn === 'Intel SGX PCK Platform CA') return 'platform';
  if (cn === 'Intel SGX PCK Processor CA') return 'processor';
  throw rejected('TDX_PCK_CHAIN_INVALID', `PCK issuer "${intermediate.subject.text}" is neither the PCK Platform CA nor the PCK Processor CA`);
}

/**
 * Verified chains per root, bucketed by length and confirmed by comparing every byte with the stored copy of the
 * PEM that was verified: the signatures never change, validity dates are rechecked on every call.
 */
let chainCache = new WeakMap<Certificate, Map<number, { pem: Uint8Array; p: Promise<VerifiedPck> }[]>>();
const CACHE_MAX = 1024;
const BUCKET_MAX = 64;

export function clearPckCache(): void {
  chainCache = new WeakMap();
}

async function verifyUncached(pem: Uint8Array, root: Certificate, now: Date): Promise<VerifiedPck> {
  const certs = parsePckChain(pem);
  if (certs.length !== 3) throw rejected('TDX_PCK_CHAIN_INVALID', `PCK chain has ${certs.length} certificates, expected leaf, PCK CA and root`);
  const [leaf, intermediate] = certs as [Certificate, Certificate, Certificate];
  const caType = caTypeOf(intermediate);
  if (!commonName(leaf.subject)?.includes('SGX PCK Certificate')) throw rejected('TDX_PCK_CHAIN_INVALID', `PCK leaf "${leaf.subject.text}" is not an SGX PCK Certificate`);
  // The QE report is verified with this key as ECDSA P-256: pin the curve before the key is used.
  if (leaf.spki.algorithm.oid !== OID.ecPublicKey || leaf.spki.curveOid !== OID.p256) throw rejected('CERT_ALGORITHM', 'PCK leaf key is not an ECDSA P-256 key');
  const chain = await verifyChain(certs, { now, roots: [root], algorithms: INTEL_ALGORITHMS });
  if (!equalBytes(chain.root.der, root.der)) throw rejected('CERT_UNTRUSTED_ROOT', 'PCK chain does not end in the pinned Intel SGX Root CA');
  return { leaf, intermediate, root: chain.root, caType, extensions: parsePckExtensions(leaf) };
}

/**
 * Verifies the quote's PCK chain to `root` (the pinned Intel SGX Root CA, or a sim root the caller trusts) at `now`
 * and parses the leaf's SGX extensions. Signature checks are cached by exact bytes; validity dates are not.
 */
export async function verifyPckChain(pem: Uint8Array, root: Certificate, now: Date): Promise<VerifiedPck> {
  let cache = chainCache.get(root);
  if (!cache) chainCache.set(root, (cache = new Map()));
  let bucket = cache.get(pem.length);
  let hit = bucket?.find((e) => equalBytes(e.pem, pem));
  if (!hit) {
    if (cache.size >= CACHE_MAX) {
      cache.clear();
      bucket = undefined;
    }
    if (!bucket) cache.set(pem.length, (bucket = []));
    if (bucket.length >= BUCKET_MAX) bucket.shift(); // many platforms' chains can share a length
    // Parse the private copy: cached certificates must not alias a caller's (possibly pooled, reused) buffer.
    const copy = pem.slice();
    const entry = { pem: copy, p: verifyUncached(copy, root, now) };
    hit = entry;
    bucket.push(entry);
    const b = bucket;
    entry.p.catch(() => {
      const at = b.indexOf(entry);
      if (at >= 0) b.splice(at, 1);
    });
  }
  const v = await hit.p;
  for (const c of [v.leaf, v.intermediate, v.root]) checkValidity(c, now);
  return v;
}
