/**
 * Collateral from the host shim's cache (docs/design.md §1, §4), used only when a client asks for it:
 *  - SEV-SNP: a bundle that carries no certificates is completed with the VCEK for its chip and reported TCB and
 *    AMD's ASK/ARK chain, and one that carries no CRL with AMD's CRL for its product (`/v1/collateral/amd/...`,
 *    mirroring AMD KDS);
 *  - TDX: what the bundle does not carry of the TCB info (with its TCB-Info-Issuer-Chain), the QE identity, the PCK
 *    CRL and the Intel SGX Root CA CRL is fetched (`/v1/collateral/intel/...`, `/v1/collateral/intel-certs/...`,
 *    mirroring Intel PCS v4) by the verifier's collateral getter, i.e. for the FMSPC and CA type of the quote's
 *    PCK certificate after that certificate was verified;
 *  - GPU: OCSP responses for each certificate of a verified GPU chain (`/v1/collateral/nvidia-ocsp/`, POST of a
 *    DER OCSPRequest without nonce, so the shim can cache it), and the driver and VBIOS RIMs by the ids the verified
 *    GPU report names (`/v1/collateral/nvidia-rim/v1/rim/<id>`, NVIDIA's RIM service JSON).
 * The shim is trusted for nothing: every byte goes through the platform verifier as if the bundle had carried it
 * (chains and signatures to the pinned roots, or in sim the explicitly trusted root; dates; revocation). What the
 * shim cannot serve fails verification closed (COLLATERAL_UNAVAILABLE) instead of skipping a check.
 */
import type { EvidenceBundle } from '../attestation/bundle.ts';
import { fromBase64, hex } from '../attestation/bytes.ts';
import { collateralError } from '../attestation/errors.ts';
import { certificatesFrom } from '../attestation/x509/pem.ts';
import { parseReport, productFromCpuid } from '../attestation/sevsnp/abi.ts';
import { type CollateralGetter, type TdxCollateral, collateralFromServed, signedFromPcs } from '../attestation/tdx/index.ts';
import type { GpuCollateral, RimWant } from '../attestation/nvidia/index.ts';
import { certIdHashes } from '../attestation/nvidia/ocsp.ts';
import { type Certificate, commonName } from '../attestation/x509/cert.ts';
import { parseCrl } from '../attestation/x509/crl.ts';
import { TAG } from '../attestation/x509/der.ts';
import { nul, octets, oid, seq, tlv } from '../attestation/x509/der-write.ts';
import { isPem, pemDecodeAll } from '../attestation/x509/pem.ts';
import type { FetchLike } from './attest.ts';

export interface CollateralSource {
  /** The host shim's base URL (it serves /v1/collateral/...). */
  readonly base: string;
  readonly fetch: FetchLike;
  /**
   * Platforms whose bundles are completed from this source (default all). Completing an SEV-SNP bundle also fetches
   * AMD's CRL (revocation then required); the host gate limits its own cache to TDX, which cannot verify without it.
   */
  readonly platforms?: readonly ('sev-snp' | 'tdx')[];
}

const MAX_CRL = 2 * 1024 * 1024;

export async function withCollateral(bundle: EvidenceBundle, src: CollateralSource): Promise<EvidenceBundle> {
  const base = bundle.platform.replace(/^sim-/, '');
  if (base !== 'sev-snp') return bundle;
  const needCerts = bundle.certs.length === 0;
  const needCrl = (bundle.collateral.crls?.length ?? 0) === 0;
  if (!needCerts && !needCrl) return bundle;
  const report = parseReport(bundle.evidence);
  const product = (report.cpuid && productFromCpuid(report.cpuid)) ?? productFromAsk(bundle.certs[1]);
  if (!product) throw collateralError('COLLATERAL_UNAVAILABLE', 'cannot tell the AMD product of the report to fetch its collateral');
  const kind = report.signerInfo.signingKey === 'vlek' ? 'vlek' : 'vcek';
  const root = `${src.base.replace(/\/+$/, '')}/v1/collateral/amd/${kind}/v1/${product}`;
  let certs = bundle.certs;
  if (needCerts) {
    // VLEKs are issued to cloud providers and not served by chip id: only VCEKs can be completed this way.
    if (kind !== 'vcek') throw collateralError('COLLATERAL_UNAVAILABLE', 'the bundle carries no VLEK certificate and VLEKs cannot be fetched by chip id');
    const t = report.reportedTcb;
    const spl = new URLSearchParams({ blSPL: String(t.bootloader), teeSPL: String(t.tee), snpSPL: String(t.snp), ucodeSPL: String(t.microcode), ...(t.fmc !== undefined ? { fmcSPL: String(t.fmc) } : {}) });
    const vcek = certificatesFrom(await get(src, `${root}/${hex(report.chipId)}?${spl}`, 'the VCEK'));
    const chain = certificatesFrom(await get(src, `${root}/cert_chain`, "AMD's ASK/ARK chain"));
    if (vcek.length !== 1 || chain.length !== 2) throw collateralError('COLLATERAL_UNAVAILABLE', 'the VCEK or the ASK/ARK chain served does not hold the expected certificates');
    certs = [vcek[0]!, chain[0]!, chain[1]!];
  }
  const crls = needCrl ? [await get(src, `${root}/crl`, `AMD's CRL for ${product}`)] : bundle.collateral.crls;
  return { ...bundle, certs, collateral: { ...bundle.collateral, ...(crls ? { crls } : {}) } };
}

async function get(src: CollateralSource, url: string, what: string): Promise<Uint8Array> {
  return (await request(src, url, what)).body;
}

async function request(src: CollateralSource, url: string, what: string, init: RequestInit = { method: 'GET' }): Promise<{ body: Uint8Array; headers: Headers }> {
  let r: Response;
  try {
    r = await src.fetch(url, init);
  } catch (e) {
    throw collateralError('COLLATERAL_UNAVAILABLE', `could not fetch ${what} from ${src.base}`, { cause: e });
  }
  if (!r.ok) {
    await r.body?.cancel();
    throw collateralError('COLLATERAL_UNAVAILABLE', `the collateral cache answered HTTP ${r.status} for ${what}`);
  }
  const b = new Uint8Array(await r.arrayBuffer());
  if (b.length === 0 || b.length > MAX_CRL) throw collateralError('COLLATERAL_UNAVAILABLE', `${what} served is empty or too large`);
  return { body: b, headers: r.headers };
}

/** The TDX collateral pieces a bundle does not carry (what `tdxCollateralGetter` will ask the shim for). */
export function missingTdxCollateral(bundle: EvidenceBundle): string[] {
  if (bundle.platform.replace(/^sim-/, '') !== 'tdx') return [];
  const c = bundle.collateral;
  const missing: string[] = [];
  if (!c.tcbInfo || !c.chain?.length) missing.push('TCB info');
  if (!c.qeIdentity || !c.chain?.length) missing.push('QE identity');
  // Which CRL is which is decided by collateralFromServed (by issuer); two carried means both are there.
  if ((c.crls?.length ?? 0) < 2) missing.push('CRLs');
  return missing;
}

/**
 * The collateral getter for a TDX bundle (VerifyTdxOptions.collateral): what the bundle carries is used as carried,
 * the rest is fetched from the shim for the FMSPC and CA type the verifier read from the verified PCK certificate.
 * Undefined when the bundle is not TDX or carries everything.
 */
export function tdxCollateralGetter(bundle: EvidenceBundle, src: CollateralSource): CollateralGetter | undefined {
  if (missingTdxCollateral(bundle).length === 0) return undefined;
  const carried = bundle.collateral;
  return async ({ fmspc, ca }) => {
    // Both values come from the verified PCK certificate; checked anyway, as they become part of a URL.
    if (!/^[0-9a-fA-F]{12}$/.test(fmspc) || (ca !== 'platform' && ca !== 'processor')) throw collateralError('COLLATERAL_UNAVAILABLE', 'FMSPC or PCK CA type out of range for a collateral request');
    const own: Partial<TdxCollateral> = carried.tcbInfo && carried.chain?.length ? collateralFromServed(carried) : { ...(carried.crls?.length ? crlsOnly(carried.crls) : {}) };
    const base = src.base.replace(/\/+$/, '');
    const intel = `${base}/v1/collateral/intel`;
    const [tcbInfo, qeIdentity, pckCrl, rootCaCrl] = await Promise.all([
      own.tcbInfo ?? pcsSigned(src, `${intel}/tdx/certification/v4/tcb?fmspc=${fmspc.toLowerCase()}`, 'tcbInfo', ['tcb-info-issuer-chain', 'tcb-info-signed-issuer-chain'], `Intel's TDX TCB info for FMSPC ${fmspc}`),
      own.qeIdentity ?? pcsSigned(src, `${intel}/tdx/certification/v4/qe/identity`, 'enclaveIdentity', ['sgx-enclave-identity-issuer-chain', 'enclave-identity-issuer-chain'], "Intel's TDX QE identity"),
      own.pckCrl ?? get(src, `${intel}/sgx/certification/v4/pckcrl?ca=${ca}&encoding=der`, `Intel's PCK ${ca} CA CRL`).then(crlDer),
      own.rootCaCrl ?? get(src, `${base}/v1/collateral/intel-certs/IntelSGXRootCA.der`, "the Intel SGX Root CA CRL").then(crlDer),
    ]);
    return { tcbInfo, qeIdentity, pckCrl, rootCaCrl };
  };
}

/** The bundle's CRLs told apart by issuer, as collateralFromServed does (which needs TCB info to be there). */
function crlsOnly(crls: readonly Uint8Array[]): Pick<TdxCollateral, 'pckCrl' | 'rootCaCrl'> {
  const out: { pckCrl?: Uint8Array; rootCaCrl?: Uint8Array } = {};
  for (const der of crls) {
    const crl = parseCrl(der);
    const k = commonName(crl.issuer) === 'Intel SGX Root CA' ? 'rootCaCrl' : 'pckCrl';
    if (out[k]) throw collateralError('TDX_COLLATERAL_INVALID', `two ${k === 'rootCaCrl' ? 'root CA' : 'PCK'} CRLs in the bundle`);
    out[k] = crl.der;
  }
  return out;
}

/** A PCS v4 signed response (JSON body + issuer chain header, URL-encoded PEM) as the verifier takes it. */
async function pcsSigned(src: CollateralSource, url: string, member: 'tcbInfo' | 'enclaveIdentity', chainHeaders: readonly string[], what: string): Promise<TdxCollateral['tcbInfo']> {
  const r = await request(src, url, what);
  const chain = chainHeaders.map((h) => r.headers.get(h)).find((v) => v);
  if (!chain) throw collateralError('COLLATERAL_UNAVAILABLE', `the collateral cache served ${what} without its issuer chain`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(r.body);
  } catch (e) {
    throw collateralError('TDX_COLLATERAL_INVALID', `${what} served is not UTF-8`, { cause: e });
  }
  return signedFromPcs(text, chain, member);
}

/** PCS serves CRLs as DER (encoding=der) or PEM; anything else is handed on and refused by the CRL parser. */
function crlDer(b: Uint8Array): Uint8Array {
  if (!isPem(b)) return b;
  const ders = pemDecodeAll(new TextDecoder().decode(b), 'X509 CRL');
  if (ders.length !== 1) throw collateralError('COLLATERAL_UNAVAILABLE', 'a PEM CRL served holds more than one CRL');
  return ders[0]!;
}

/**
 * OCSP from the shim for the GPU verifier (GpuVerifyOptions.collateral): a DER OCSPRequest (RFC 6960 §4.1.1) for
 * `cert` with a SHA-384 CertID, as NVIDIA's responder and the sim answer, and no nonce so the shim can cache it; the
 * verifier checks the response's signature, responder, dates and status.
 */
export function gpuOcspFromShim(src: CollateralSource): GpuCollateral {
  return {
    async ocsp(cert: Certificate, issuer: Certificate): Promise<Uint8Array> {
      const body = await ocspRequest(cert, issuer);
      const r = await request(src, `${src.base.replace(/\/+$/, '')}/v1/collateral/nvidia-ocsp/`, `the OCSP status of "${cert.subject.text}"`, {
        method: 'POST', body: body as Uint8Array<ArrayBuffer>, headers: { 'content-type': 'application/ocsp-request' },
      });
      return r.body;
    },
  };
}

const OID_SHA384 = '2.16.840.1.101.3.4.2.2';

export async function ocspRequest(cert: Certificate, issuer: Certificate): Promise<Uint8Array> {
  const { nameHash, keyHash } = await certIdHashes(issuer);
  const certId = seq(seq(oid(OID_SHA384), nul()), octets(nameHash), octets(keyHash), tlv(TAG.INTEGER, cert.serialNumber));
  return seq(seq(seq(seq(certId))));
}

/** Report v2 has no CPUID: the ASK's subject names the product (AMD KDS "SEV-Milan", "SEV-VLEK-Genoa", ...). */
function productFromAsk(der: Uint8Array | undefined): 'Milan' | 'Genoa' | 'Turin' | undefined {
  if (!der) return undefined;
  const s = new TextDecoder('latin1').decode(der);
  const m = /SEV-(?:VLEK-)?(Milan|Genoa|Turin)/.exec(s);
  return m ? (m[1] as 'Milan' | 'Genoa' | 'Turin') : undefined;
}

/** NVIDIA RIMs are tens of kilobytes; the service's JSON (base64 RIM inside) is refused beyond this. */
const MAX_RIM_RESPONSE = 512 * 1024;
/** The RIM service's id alphabet, as the shim's route allowlist (host/collateral/sources.ts). */
const RIM_ID = /^[A-Za-z0-9_.-]{1,200}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * RIMs from the shim for the GPU verifier (GpuCollateral.rim): `GET /v1/collateral/nvidia-rim/v1/rim/<id>`, answered
 * with NVIDIA's RIM service JSON `{ "id", "rim": base64(SWID XML), "sha256", "last_updated", "rim_format", ... }`.
 * The JSON is read strictly (size-bounded, `id` equal to the one asked, `rim` plain base64 of UTF-8 text, the typed
 * fields typed, a format other than NVIDIA's SWID "TCG" refused); members it does not know are ignored, as the XML
 * signature the verifier checks is what carries trust. Anything else is COLLATERAL_UNAVAILABLE.
 */
export function gpuRimsFromShim(src: CollateralSource): GpuCollateral {
  return {
    async rim(want: RimWant): Promise<string> {
      if (!RIM_ID.test(want.id)) throw collateralError('COLLATERAL_UNAVAILABLE', `"${want.id}" is not a RIM service id`);
      const what = `the ${want.kind} RIM ${want.id}`;
      const r = await request(src, `${src.base.replace(/\/+$/, '')}/v1/collateral/nvidia-rim/v1/rim/${want.id}`, what);
      if (r.body.length > MAX_RIM_RESPONSE) throw collateralError('COLLATERAL_UNAVAILABLE', `${what} served is larger than ${MAX_RIM_RESPONSE} bytes`);
      return rimFromServiceJson(r.body, want.id, what);
    },
  };
}

/** The SWID XML inside one RIM service response for `id` (exported for tests). */
export function rimFromServiceJson(body: Uint8Array, id: string, what = `RIM ${id}`): string {
  const bad = (m: string, cause?: unknown) => collateralError('COLLATERAL_UNAVAILABLE', `${what} served is not a RIM service response: ${m}`, cause === undefined ? undefined : { cause });
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (e) {
    throw bad('not UTF-8 JSON', e);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('not a JSON object');
  const o = doc as Record<string, unknown>;
  if (o.id !== id) throw bad(`"id" is ${JSON.stringify(o.id)}, asked for ${id}`);
  for (const k of ['sha256', 'last_updated', 'rim_format', 'request_id']) if (o[k] !== undefined && o[k] !== null && typeof o[k] !== 'string') throw bad(`"${k}" is not a string`);
  if (typeof o.rim_format === 'string' && o.rim_format.toUpperCase() !== 'TCG') throw bad(`"rim_format" is ${o.rim_format}, not the SWID (TCG) format`);
  if (typeof o.rim !== 'string' || !BASE64.test(o.rim) || o.rim.length % 4 !== 0) throw bad('"rim" is not a base64 string');
  let xml: string;
  try {
    xml = new TextDecoder('utf-8', { fatal: true }).decode(fromBase64(o.rim, '"rim"'));
  } catch (e) {
    throw bad('"rim" does not decode to UTF-8 text', e);
  }
  if (xml.length === 0) throw bad('"rim" is empty');
  return xml;
}

/** Both GPU getters from one shim: OCSP for the verified chains and the RIMs the verified report names. */
export function gpuCollateralFromShim(src: CollateralSource): GpuCollateral {
  return { ...gpuOcspFromShim(src), ...gpuRimsFromShim(src) };
}
