/**
 * SEV-SNP evidence verification (layer 2 of 3): the report signature (ECDSA P-384 SHA-384 over [0, 0x2A0), SNP ABI
 * pub. 56860 §7.3 and Table 142), the AMD chain ARK → ASK (or ASVK) → VCEK (or VLEK) with RSA-PSS SHA-384 pinned
 * (KDS spec pub. 57230 §2), revocation through AMD's `/crl` (an X.509 CRL signed by the ARK), and the VCEK/VLEK
 * extensions bound to the report (hwID = CHIP_ID, SPLs = REPORTED_TCB, product name = CPUID product).
 *
 * Signatures and chains only: policy lives in validate.ts. Every check records a row through `Checks`.
 */
import { equalBytes, hex, isZero } from '../bytes.ts';
import { GmError, collateralError, configError, rejected } from '../errors.ts';
import type { Checks } from '../report.ts';
import type { TrustStore } from '../trust.ts';
import { type Certificate, OID, commonName, parseCertificate } from '../x509/cert.ts';
import { checkValidity, verifyChain } from '../x509/chain.ts';
import { type Crl, assertNotRevoked, parseCrl, verifyCrl } from '../x509/crl.ts';
import { certificatesFrom } from '../x509/pem.ts';
import { type P384Verifier, verifySignature } from '../x509/signature.ts';
import { type AmdProduct, type SnpReport, productFromCpuid, signatureP1363 } from './abi.ts';
import { type AmdExtensions, type EndorsementKind, readAmdExtensions } from './extensions.ts';

/** What a collateral getter is asked for. The getter may return undefined when it has nothing. */
export type SnpCollateralRequest =
  | { readonly kind: 'vcek'; readonly product: AmdProduct | undefined; readonly chipId: Uint8Array; readonly reportedTcb: bigint }
  | { readonly kind: 'vlek'; readonly product: AmdProduct | undefined }
  | { readonly kind: 'crl'; readonly product: AmdProduct; readonly endorsement: EndorsementKind };
export type SnpCollateralGetter = (req: SnpCollateralRequest) => Promise<Uint8Array | undefined>;

/** A caller-chosen root (e.g. a simulated AMD the caller decided to trust): DER/PEM bytes or parsed certificates. */
export interface ExplicitRoots {
  readonly ark: Uint8Array | Certificate;
  /** The ASK (for VCEKs) or ASVK (for VLEKs). */
  readonly ask: Uint8Array | Certificate;
  /** How the report names this root (e.g. `pinned ARK-Milan` when the caller matched it to a pin); default "caller-supplied root". */
  readonly anchor?: string;
}

export interface SnpVerifyOptions {
  readonly now: Date;
  /** Pinned AMD anchors; used unless `roots` is given. */
  readonly trust?: TrustStore | undefined;
  readonly roots?: ExplicitRoots | undefined;
  /** The VCEK or VLEK certificate (DER or PEM). */
  readonly vcek?: Uint8Array | undefined;
  /** AMD `/crl` for the product (DER or PEM). Without one, revocation is recorded as skipped. */
  readonly crl?: Uint8Array | undefined;
  readonly collateral?: SnpCollateralGetter | undefined;
  /** Fail (SNP_CRL_MISSING, a collateral error) instead of recording a skip when no CRL is available. */
  readonly requireRevocation?: boolean | undefined;
  /** The report signature's ECDSA P-384 verifier (default WebCrypto; `gm verify snp` passes node:crypto's). */
  readonly p384Verifier?: P384Verifier | undefined;
}

export interface SnpVerified {
  readonly product: AmdProduct;
  readonly endorsement: Certificate;
  readonly extensions: AmdExtensions;
  readonly ark: Certificate;
  readonly ask: Certificate;
  readonly anchor: string;
  readonly revocationChecked: boolean;
}

const RSA_PSS: readonly ['rsa-pss-sha384'] = ['rsa-pss-sha384'];

const rootCache = new Map<string, Certificate>();

/** Explicit roots given as bytes are parsed once, so the chain cache (keyed by certificate) stays warm. */
function toCert(x: Uint8Array | Certificate, what: string): Certificate {
  if (!(x instanceof Uint8Array)) return x;
  const key = bytesKey(x);
  const hit = rootCache.get(key);
  if (hit) return hit;
  const ders = certificatesFrom(x);
  if (ders.length !== 1) throw configError('SNP_CERT_INVALID', `${what}: expected one certificate, found ${ders.length}`);
  const cert = parseCertificate(ders[0]!);
  remember(rootCache, key, cert);
  return cert;
}

// ---- warm caches: a parsed endorsement certificate, and a verified chain per (leaf, ASK, ARK) ----

/** Injective string key of bytes (one char per byte), cheap to build and to hash. */
function bytesKey(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192) as unknown as number[]);
  return s;
}

const CACHE_MAX = 1024;
const leafCache = new Map<string, { cert: Certificate; ext: AmdExtensions }>();
interface ChainEntry { readonly ask: Certificate; readonly ark: Certificate; readonly from: number; readonly to: number }
const chainCache = new Map<Certificate, ChainEntry[]>();
const crlCache = new Map<string, { crl: Crl; issuer: Certificate }>();

function remember<K, V>(m: Map<K, V>, k: K, v: V): void {
  if (m.size >= CACHE_MAX) m.clear();
  m.set(k, v);
}

/** Parses (or takes from the cache) the endorsement certificate and its AMD extensions. */
function endorsementFrom(bytes: Uint8Array): { cert: Certificate; ext: AmdExtensions } {
  const ders = certificatesFrom(bytes);
  if (ders.length !== 1) throw rejected('SNP_CERT_INVALID', `expected one VCEK/VLEK certificate, found ${ders.length}`);
  const key = bytesKey(ders[0]!);
  const hit = leafCache.get(key);
  if (hit) return hit;
  let cert: Certificate;
  try {
    cert = parseCertificate(ders[0]!);
  } catch (e) {
    throw rejected('SNP_CERT_INVALID', `VCEK/VLEK certificate does not parse: ${(e as Error).message}`, { cause: e });
  }
  // Allowlist the key before it is used: the report is ECDSA P-384 (SNP ABI Table 142).
  if (cert.spki.algorithm.oid !== OID.ecPublicKey || cert.spki.curveOid !== OID.p384)
    throw rejected('SNP_CERT_KEY', `VCEK/VLEK key is not EC P-384 (${cert.spki.algorithm.oid} ${cert.spki.curveOid ?? ''})`);
  const v = { cert, ext: readAmdExtensions(cert) };
  remember(leafCache, key, v);
  return v;
}

/** The chain result is reused while `now` lies inside every certificate's validity window. */
async function chainVerified(leaf: Certificate, ask: Certificate, ark: Certificate, now: Date): Promise<void> {
  const t = now.getTime();
  const hits = chainCache.get(leaf);
  if (hits?.some((h) => h.ask === ask && h.ark === ark && t >= h.from && t <= h.to)) return;
  await verifyChain([leaf, ask], { now, roots: [ark], algorithms: RSA_PSS });
  const from = Math.max(leaf.notBefore.getTime(), ask.notBefore.getTime(), ark.notBefore.getTime());
  const to = Math.min(leaf.notAfter.getTime(), ask.notAfter.getTime(), ark.notAfter.getTime());
  const list = hits ?? [];
  list.push({ ask, ark, from, to });
  if (!hits) remember(chainCache, leaf, list);
}

/** Verifies the CRL's signature by the ARK (AMD `/crl`) or the ASK; the signature result is cached per CRL bytes. */
async function crlVerified(bytes: Uint8Array, ark: Certificate, ask: Certificate, now: Date): Promise<Crl> {
  const key = bytesKey(bytes);
  let hit = crlCache.get(key);
  if (!hit) {
    const crl = parseCrl(bytes);
    const issuer = equalBytes(crl.issuer.raw, ark.subject.raw) ? ark : equalBytes(crl.issuer.raw, ask.subject.raw) ? ask : undefined;
    if (!issuer) throw rejected('CRL_ISSUER_MISMATCH', `CRL issued by "${crl.issuer.text}", neither the ARK nor the ASK of this chain`);
    await verifyCrl(crl, issuer, now, RSA_PSS);
    hit = { crl, issuer };
    remember(crlCache, key, hit);
  }
  // Freshness is re-checked at every `now`; only the signature result is cached.
  verifyCrlTimes(hit.crl, now);
  return hit.crl;
}

function verifyCrlTimes(crl: Crl, now: Date): void {
  if (now < crl.thisUpdate) throw collateralError('CRL_NOT_YET_VALID', `CRL of "${crl.issuer.text}" is dated ${crl.thisUpdate.toISOString()}, after now`);
  if (crl.nextUpdate && now > crl.nextUpdate) throw collateralError('CRL_EXPIRED', `CRL of "${crl.issuer.text}" expired ${crl.nextUpdate.toISOString()}; fetch a fresh one`);
}

/** Resets the warm caches (tests and benchmarks measuring a cold path). */
export function clearSnpCaches(): void {
  leafCache.clear();
  chainCache.clear();
  crlCache.clear();
  rootCache.clear();
}

const tcbText = (bl: number, tee: number, snp: number, uc: number, fmc?: number) =>
  `${fmc === undefined ? '' : `fmc ${fmc} `}bl ${bl} tee ${tee} snp ${snp} ucode ${uc}`;

/** Runs the verify layer over a parsed report, recording each check in `checks`. */
export async function verifyReport(report: SnpReport, options: SnpVerifyOptions, checks: Checks): Promise<SnpVerified> {
  const { now } = options;
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw configError('SNP_OPTIONS', 'options.now must be a valid Date');

  const signingKey = report.signerInfo.signingKey;
  checks.runSync('snp.signing-key', 'report is signed by a VCEK or VLEK (SIGNER_INFO.SIGNING_KEY)', undefined, () => {
    if (signingKey === 'none') throw rejected('SNP_SIGNING_KEY_NONE', 'SIGNING_KEY is 7: the report is not signed');
  }, () => signingKey.toUpperCase());

  const cpuidProduct = report.cpuid ? productFromCpuid(report.cpuid) : undefined;
  const bytes = await checks.run('snp.cert.present', `${signingKey.toUpperCase()} certificate supplied`, undefined, async () => {
    if (options.vcek) return options.vcek;
    const got = await options.collateral?.(signingKey === 'vcek'
      ? { kind: 'vcek', product: cpuidProduct, chipId: report.chipId, reportedTcb: report.reportedTcb.raw }
      : { kind: 'vlek', product: cpuidProduct });
    if (!got) throw collateralError('SNP_CERT_MISSING', `no ${signingKey.toUpperCase()} certificate given and none from the collateral getter`);
    return got;
  }, () => (options.vcek ? 'from options' : 'from the collateral getter'));

  const { cert, ext } = checks.runSync('snp.cert.parse', 'endorsement certificate parses; key is EC P-384; AMD extensions present', undefined,
    () => endorsementFrom(bytes), (v) => `${v.ext.kind.toUpperCase()} "${v.cert.subject.text}", product ${v.ext.productName}`);

  checks.runSync('snp.cert.kind', 'certificate kind matches SIGNER_INFO.SIGNING_KEY', undefined, () => {
    if (ext.kind !== signingKey)
      throw rejected('SNP_SIGNING_KEY_MISMATCH', `report says it is signed by the ${signingKey.toUpperCase()}, the certificate is a ${ext.kind.toUpperCase()}`);
  }, () => ext.kind.toUpperCase());

  // Order as go-sev-guest: the endorsement certificate is shown to be AMD's (chain) before it is used to check the
  // report signature, so a forged or corrupted VCEK is refused as such (CERT_*), not as a bad report signature.
  const role = ext.kind === 'vcek' ? 'amd-ask' : 'amd-asvk';
  const { ark, ask, anchor } = checks.runSync('snp.anchors', 'AMD root (ARK) and signing key (ASK/ASVK) selected', undefined, () => {
    if (options.roots) {
      const a = toCert(options.roots.ark, 'roots.ark');
      const s = toCert(options.roots.ask, 'roots.ask');
      return { ark: a, ask: s, anchor: options.roots.anchor ?? `caller-supplied root "${a.subject.text}"` };
    }
    if (!options.trust) throw configError('SNP_NO_TRUST', 'neither options.trust nor options.roots is given');
    // The certificate's product name selects the pinned chain; the report's CPUID is compared with it (snp.product)
    // once the report signature has shown those bytes are genuine.
    const p = ext.product;
    if (!p) throw rejected('SNP_PRODUCT_UNKNOWN', `certificate product name "${ext.productName}" is not a known product: no pinned AMD chain for it`);
    return { ark: options.trust.get('amd-ark', p), ask: options.trust.get(role, p), anchor: `pinned ARK-${p}` };
  }, (v) => `${commonName(v.ask.subject) ?? v.ask.subject.text} under ${v.anchor}`);

  await checks.run('snp.chain', `chain ARK → ${ext.kind === 'vcek' ? 'ASK' : 'ASVK'} → ${ext.kind.toUpperCase()}, RSA-PSS SHA-384, valid at now`, anchor, async () => {
    await chainVerified(cert, ask, ark, now);
    // The cache holds the chain's validity window; re-check the leaf at `now` for a precise message.
    checkValidity(cert, now);
  }, () => `valid ${cert.notBefore.toISOString()} .. ${cert.notAfter.toISOString()}`);

  await checks.run('snp.report.signature', 'ECDSA P-384 SHA-384 signature over report bytes [0, 0x2A0)', `${ext.kind.toUpperCase()} "${commonName(cert.subject) ?? cert.subject.text}"`, async () => {
    try {
      const verifier = options.p384Verifier;
      if (verifier) {
        // The algorithm is pinned here, before the key is used: a P-384 EC key, nothing else.
        if (cert.spki.algorithm.oid !== OID.ecPublicKey || cert.spki.curveOid !== OID.p384) throw rejected('CERT_KEY_INVALID', 'VCEK/VLEK does not hold a P-384 key');
        let ok: boolean;
        try {
          ok = await verifier(cert.spki.raw, report.signedBytes, signatureP1363(report));
        } catch (e) {
          throw rejected('CERT_KEY_INVALID', 'the VCEK/VLEK public key was refused by the verifier', { cause: e });
        }
        if (!ok) throw rejected('SNP_REPORT_SIGNATURE', 'SEV-SNP report: signature does not verify');
        return;
      }
      await verifySignature(cert.spki, 'ecdsa-p384-sha384', report.signedBytes, signatureP1363(report), {
        allowed: ['ecdsa-p384-sha384'], failCode: 'SNP_REPORT_SIGNATURE', what: 'SEV-SNP report', ecdsaFormat: 'p1363',
      });
    } catch (e) {
      // x509 codes a public key WebCrypto refuses (not a point on P-384) as CERT_KEY_INVALID: a bad certificate.
      if (!(e instanceof GmError) || e.code !== 'CERT_KEY_INVALID') throw e;
      throw rejected('SNP_CERT_KEY', 'VCEK/VLEK public key is not a valid P-384 point', { cause: e });
    }
  });

  const product = checks.runSync('snp.product', 'processor product: CPUID fields (report v3+) agree with the certificate product name', undefined, () => {
    if (report.cpuid && !cpuidProduct)
      throw rejected('SNP_PRODUCT_UNKNOWN', `CPUID family 0x${report.cpuid.family.toString(16)} model 0x${report.cpuid.model.toString(16)} is not a known SEV-SNP product`);
    if (!ext.product) throw rejected('SNP_PRODUCT_UNKNOWN', `certificate product name "${ext.productName}" is not a known product`);
    if (cpuidProduct && cpuidProduct !== ext.product)
      throw rejected('SNP_PRODUCT_MISMATCH', `report CPUID says ${cpuidProduct}, certificate says ${ext.productName}`);
    if ((report.tcbLayout === 'turin') !== (ext.product === 'Turin'))
      throw rejected('SNP_PRODUCT_MISMATCH', `TCB layout ${report.tcbLayout} does not fit product ${ext.product}`);
    return ext.product;
  }, (p) => (cpuidProduct ? `${p} (CPUID and certificate)` : `${p} (certificate; report v${report.version} has no CPUID)`));

  let revocationChecked = false;
  const crlBytes = options.crl ?? (await options.collateral?.({ kind: 'crl', product, endorsement: ext.kind }));
  if (crlBytes) {
    await checks.run('snp.crl', 'ASK/ASVK and endorsement certificate not revoked (AMD CRL, signed and current)', anchor, async () => {
      const crl = await crlVerified(crlBytes, ark, ask, now);
      assertNotRevoked(ask, crl);
      if (equalBytes(crl.issuer.raw, ask.subject.raw)) assertNotRevoked(cert, crl);
      return crl;
    }, (crl) => `CRL of "${crl.issuer.text}" (${crl.revoked.size} entries, next update ${crl.nextUpdate?.toISOString() ?? 'none'})`);
    revocationChecked = true;
  } else if (options.requireRevocation) {
    throw checks.failed('snp.crl', 'revocation (AMD CRL)', anchor, collateralError('SNP_CRL_MISSING', 'revocation is required but no AMD CRL was supplied or fetched'));
  } else checks.skip('snp.crl', 'revocation (AMD CRL)', 'no CRL supplied', anchor);

  if (ext.kind === 'vcek') {
    // Only a report that says it masked CHIP_ID (and did) may skip the comparison; a zero CHIP_ID without
    // MASK_CHIP_KEY is compared, and fails.
    if (report.signerInfo.maskChipKey && isZero(report.chipId)) {
      checks.skip('snp.cert.hwid', 'VCEK hwID equals report CHIP_ID', 'CHIP_ID is masked (MASK_CHIP_KEY); the VCEK signature alone binds the chip');
    } else {
      checks.runSync('snp.cert.hwid', 'VCEK hwID equals report CHIP_ID', 'VCEK extension 1.3.6.1.4.1.3704.1.4', () => {
        const hw = ext.hwId!;
        // Turin's hwID is 8 bytes: the first 8 of CHIP_ID, the rest of CHIP_ID zero.
        const ok = product === 'Turin'
          ? equalBytes(hw, report.chipId.subarray(0, 8)) && isZero(report.chipId.subarray(8))
          : equalBytes(hw, report.chipId);
        if (!ok) throw rejected('SNP_HWID_MISMATCH', `VCEK hwID ${hex(hw)} does not match CHIP_ID ${hex(report.chipId)}`);
      }, () => hex(report.chipId).slice(0, 16) + '…');
    }
  } else {
    checks.pass('snp.cert.csp', 'VLEK issued to a cloud provider (csp_id)', 'VLEK extension 1.3.6.1.4.1.3704.1.5', ext.cspId);
  }

  checks.runSync('snp.cert.tcb', 'certificate SPLs equal REPORTED_TCB', `${ext.kind.toUpperCase()} extensions 1.3.6.1.4.1.3704.1.3.x`, () => {
    const t = report.reportedTcb;
    if (t.bootloader !== ext.blSpl || t.tee !== ext.teeSpl || t.snp !== ext.snpSpl || t.microcode !== ext.ucodeSpl || t.fmc !== ext.fmcSpl)
      throw rejected('SNP_TCB_MISMATCH', `certificate SPLs (${tcbText(ext.blSpl, ext.teeSpl, ext.snpSpl, ext.ucodeSpl, ext.fmcSpl)}) differ from REPORTED_TCB (${tcbText(t.bootloader, t.tee, t.snp, t.microcode, t.fmc)})`);
  }, () => tcbText(ext.blSpl, ext.teeSpl, ext.snpSpl, ext.ucodeSpl, ext.fmcSpl));

  return { product, endorsement: cert, extensions: ext, ark, ask, anchor, revocationChecked };
}
