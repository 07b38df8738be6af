/**
 * NVIDIA GPU confidential-computing evidence: `verifyGpuEvidence` composes abi (`spdm.ts`, `evidence.ts`), verify
 * (`verify.ts`, `ocsp.ts`, `rim.ts`) and validate (`validate.ts`) per GPU, and aggregates (docs/design.md §3).
 * NRAS tokens are verified by `nras.ts` into the same claims shape.
 *
 * Everything that varies comes in through options: `now`, the trust store or explicit roots (sim), the expected
 * nonce, RIMs, the collateral getters (OCSP; RIMs by the ids `rim-id.ts` derives from the verified report), the
 * policy. Nothing here fetches or reads the clock.
 */
import { bytesToHex } from '@noble/hashes/utils.js';
import { equalBytes, hex, toBase64 } from '../bytes.ts';
import { type ErrorKind, GmError, configError, protocolError } from '../errors.ts';
import { Checks, type VerificationReport } from '../report.ts';
import type { TrustStore } from '../trust.ts';
import { type Certificate, commonName } from '../x509/cert.ts';
import type { VerifiedChain } from '../x509/chain.ts';
import type { GpuClaims } from './claims.ts';
import { type GpuEvidenceFailure, type GpuEvidenceItem, isGpuEvidenceFailure, parseGpuEvidenceList } from './evidence.ts';
import { parseOcspResponse, verifyOcspForCert } from './ocsp.ts';
import { type Rim, compareWithRims, parseRim, verifyRimSignature } from './rim.ts';
import { rimIdsFor } from './rim-id.ts';
import type { GpuAttestationReport } from './spdm.ts';
import { type GpuPolicy, validateGpuClaims } from './validate.ts';
import { type P384Verifier, checkDeclared, checkFwid, checkNonce, verifyGpuChain, verifyReportSignature } from './verify.ts';

export type { GpuClaims } from './claims.ts';
export type { GpuPolicy } from './validate.ts';
export { gpuPolicyFrom } from './validate.ts';
export type { GpuEvidenceFailure, GpuEvidenceItem } from './evidence.ts';
export type { P384Verifier } from './verify.ts';
export { parseGpuEvidenceJson, parseGpuEvidenceList, gpuEvidenceFromRaw } from './evidence.ts';
export { rimIdsFor, type RimIds } from './rim-id.ts';

/** A RIM asked from the collateral getter: its kind and NVIDIA's RIM service id (rim-id.ts). */
export interface RimWant {
  readonly kind: 'driver' | 'vbios';
  readonly id: string;
}

export interface GpuCollateral {
  /** A DER OCSP response covering `cert` (issued by `issuer`), from a cache or the host; undefined when none. */
  ocsp?(cert: Certificate, issuer: Certificate): Promise<Uint8Array | undefined>;
  /**
   * The SWID XML of the RIM published under `want.id`; undefined (or a throw) when it cannot be had. Asked only after
   * the report's chain and signature verified, for the driver and VBIOS RIMs `rims` does not already hold; what it
   * returns is verified exactly like `rims` (XML-DSig to the RIM root, chain at `now`, OCSP of the signing chain).
   */
  rim?(want: RimWant): Promise<string | undefined>;
}

export interface GpuVerifyOptions {
  readonly now: Date;
  /** Pinned anchors: `nvidia-device-root` (and `nvidia-rim-root` when RIMs are given). */
  readonly trustStore?: TrustStore;
  /** Explicit roots instead of the trust store: how a caller that allowed sim trusts a sim root. */
  readonly roots?: { readonly device: readonly Certificate[]; readonly rim?: readonly Certificate[] };
  /** Mark claims as sim (the caller passed sim roots on purpose). */
  readonly sim?: boolean;
  /** The nonce the caller sent; `null` says explicitly that none was sent (freshness then recorded as skipped). */
  readonly expectedNonce: Uint8Array | null;
  /** Driver and VBIOS RIMs (SWID XML); each GPU uses the pair whose versions equal its report's. */
  readonly rims?: readonly (string | Rim)[];
  readonly collateral?: GpuCollateral;
  /** `null`: verify only, no policy (recorded as a skipped row); the caller must then apply its own. */
  readonly policy: GpuPolicy | null;
  /** When the evidence was collected (e.g. the bundle's issuedAt): the local report has no timestamp. */
  readonly collectedAt?: Date;
  /** ECDSA P-384 verifier for report signatures (default WebCrypto); Node callers may pass node:crypto's. */
  readonly p384Verifier?: P384Verifier;
}

export interface GpuResult {
  readonly gpu: number;
  readonly claims: GpuClaims;
  readonly report: VerificationReport;
  /** The parsed SPDM report (undefined for NRAS results, which carry claims only). */
  readonly attestation: GpuAttestationReport | undefined;
}

export interface GpuOutcome {
  readonly gpu: number;
  readonly arch: string;
  readonly result: GpuResult | undefined;
  readonly error: GmError | undefined;
  readonly report: VerificationReport;
}

export interface GpuEvidenceResult {
  readonly gpus: readonly GpuResult[];
  /** Every GPU's rows, ids prefixed `gpu<i>.`. */
  readonly report: VerificationReport;
}

/**
 * Warm chains: verified chains by the parsed chain's identity (evidence.ts memoizes parsing by PEM text), else by
 * the certificates' signature values (callers that parse each time). A hit is re-checked: the same DER, the same
 * roots, every certificate valid at `now`.
 */
interface CachedChain {
  readonly roots: readonly Certificate[];
  readonly verified: VerifiedChain;
}
const chainByIdentity = new WeakMap<readonly Certificate[], CachedChain>();
const chainBySignatures = new Map<string, CachedChain>();
const CHAIN_CACHE_MAX = 1024;

function usable(hit: CachedChain | undefined, chain: readonly Certificate[], roots: readonly Certificate[], now: Date): hit is CachedChain {
  return hit !== undefined
    && hit.roots.length === roots.length && hit.roots.every((r, i) => r === roots[i] || equalBytes(r.der, roots[i]!.der))
    && chain.every((c, i) => hit.verified.path[i] === c || equalBytes(c.der, hit.verified.path[i]?.der ?? new Uint8Array(0)))
    && hit.verified.path.every((c) => now >= c.notBefore && now <= c.notAfter);
}

async function cachedChain(chain: readonly Certificate[], roots: readonly Certificate[], now: Date): Promise<VerifiedChain> {
  const byId = chainByIdentity.get(chain);
  if (usable(byId, chain, roots, now)) return byId.verified;
  const key = chain.map((c) => toBase64(c.signature)).join('|');
  const bySig = chainBySignatures.get(key);
  if (usable(bySig, chain, roots, now)) return bySig.verified;
  const entry = { roots, verified: await verifyGpuChain(chain, roots, now) };
  chainByIdentity.set(chain, entry);
  if (chainBySignatures.size >= CHAIN_CACHE_MAX) chainBySignatures.clear();
  chainBySignatures.set(key, entry);
  return entry.verified;
}

function roots(options: GpuVerifyOptions, which: 'device' | 'rim'): { certs: readonly Certificate[]; name: string } {
  // Explicit roots win for their role; a role without explicit roots falls back to the pinned trust store.
  const explicit = which === 'device' ? options.roots?.device : options.roots?.rim;
  if (explicit) {
    if (explicit.length === 0) throw configError('TRUST_ANCHOR_MISSING', `no ${which} roots given`);
    return { certs: explicit, name: `${options.sim ? 'sim ' : ''}${commonName(explicit[0]!.subject) ?? explicit[0]!.subject.text}` };
  }
  if (!options.trustStore) throw configError('TRUST_ANCHOR_MISSING', 'neither a trust store nor explicit NVIDIA roots were given');
  const c = options.trustStore.get(which === 'device' ? 'nvidia-device-root' : 'nvidia-rim-root');
  return { certs: [c], name: `pinned ${commonName(c.subject) ?? c.subject.text}` };
}

/** The RIMs of one verification call, parsed once, each signature verified once for all GPUs. */
interface RimSet {
  readonly rims: readonly Rim[];
  readonly verified: Map<Rim, Promise<VerifiedChain>>;
  /** RIMs asked from the collateral getter, by id: once per call, whatever the number of GPUs. */
  readonly fetched: Map<string, Promise<FetchedRim>>;
}

/** A RIM from the getter: parsed, unavailable (why), or served but not a RIM of that kind (a failure, not a skip). */
type FetchedRim = { readonly rim: Rim } | { readonly unavailable: string } | { readonly invalid: GmError };

function rimSetOf(options: GpuVerifyOptions): RimSet | undefined {
  const given = options.rims ?? [];
  if (given.length === 0 && !options.collateral?.rim) return undefined;
  return { rims: given.map((r) => (typeof r === 'string' ? parseRim(r) : r)), verified: new Map(), fetched: new Map() };
}

interface RimOutcome {
  readonly match: boolean | undefined;
  readonly mismatches: number[];
  /** Revocation of the RIM signing chains: 'good' when every certificate had a good OCSP status. */
  readonly ocsp: 'good' | 'skipped' | 'none';
  /** Why the RIMs could not be obtained from the collateral getter (then no comparison was made). */
  readonly unavailable?: string;
}

const reason = (e: unknown) => (e instanceof GmError ? `${e.code}: ${e.message}` : String(e));

async function fetchRim(get: NonNullable<GpuCollateral['rim']>, want: RimWant): Promise<FetchedRim> {
  let xml: string | undefined;
  try {
    xml = await get(want);
  } catch (e) {
    if (e instanceof GmError && e.kind === 'config') throw e;
    return { unavailable: reason(e) };
  }
  if (xml === undefined) return { unavailable: 'the collateral source has none' };
  try {
    return { rim: parseRim(xml, want.kind) };
  } catch (e) {
    return { invalid: e instanceof GmError ? e : protocolError('NVIDIA_RIM_INVALID', `RIM ${want.id}: ${reason(e)}`, { cause: e }) };
  }
}

/**
 * The driver and VBIOS RIMs `have` lacks, from the getter by the ids the verified report names. Unavailable RIMs are
 * returned as a reason (the policy decides whether that refuses); a served document that is not the RIM asked for
 * fails its row.
 */
async function fetchRims(item: GpuEvidenceItem, set: RimSet, get: NonNullable<GpuCollateral['rim']>, checks: Checks, have: { driver: Rim | undefined; vbios: Rim | undefined }): Promise<{ driver: Rim; vbios: Rim } | { unavailable: string }> {
  let ids;
  try {
    ids = rimIdsFor(item.report, item.arch);
  } catch (e) {
    return { unavailable: reason(e) };
  }
  const out = { ...have };
  for (const kind of ['driver', 'vbios'] as const) {
    if (out[kind]) continue;
    const id = ids[kind];
    let p = set.fetched.get(id);
    if (!p) {
      p = fetchRim(get, { kind, id });
      set.fetched.set(id, p);
    }
    const r = await p;
    if ('unavailable' in r) return { unavailable: `${kind} RIM ${id}: ${r.unavailable}` };
    out[kind] = checks.runSync(`nvidia.rim.${kind}.fetch`, `${kind} RIM ${id} from the collateral source is a ${kind} SWID RIM`, 'collateral getter (trusted for nothing)', () => {
      if ('invalid' in r) throw r.invalid;
      return r.rim;
    }, (rim) => `version ${rim.version}`);
  }
  return { driver: out.driver!, vbios: out.vbios! };
}

async function checkRims(item: GpuEvidenceItem, set: RimSet | undefined, options: GpuVerifyOptions, checks: Checks, ocspUnavailable: string[]): Promise<RimOutcome> {
  if (!set) {
    checks.skip('nvidia.rim', 'measurements compared with the driver and VBIOS RIMs', 'no RIMs supplied');
    return { match: undefined, mismatches: [], ocsp: 'none' };
  }
  const op = item.report.response.opaque;
  const pick = (kind: 'driver' | 'vbios', version: string | undefined) =>
    set.rims.find((r) => r.kind === kind && version !== undefined && r.version.toLowerCase() === version.toLowerCase());
  let driver = pick('driver', op.driverVersion);
  let vbios = pick('vbios', op.vbiosVersion);
  const get = options.collateral?.rim;
  if ((!driver || !vbios) && get) {
    const got = await fetchRims(item, set, get, checks, { driver, vbios });
    if ('unavailable' in got) {
      checks.skip('nvidia.rim', 'measurements compared with the driver and VBIOS RIMs', `RIMs unavailable: ${got.unavailable}`, 'collateral getter');
      return { match: undefined, mismatches: [], ocsp: 'none', unavailable: got.unavailable };
    }
    ({ driver, vbios } = got);
  }
  if (!driver || !vbios) {
    checks.skip('nvidia.rim', 'measurements compared with the driver and VBIOS RIMs',
      `no ${!driver ? `driver RIM for ${op.driverVersion}` : ''}${!driver && !vbios ? ' and no ' : ''}${!vbios ? `VBIOS RIM for ${op.vbiosVersion}` : ''} among those supplied`);
    return { match: undefined, mismatches: [], ocsp: 'none' };
  }
  const rimRoots = roots(options, 'rim');
  let ocspGood = true;
  for (const rim of [driver, vbios]) {
    let p = set.verified.get(rim);
    if (!p) {
      p = verifyRimSignature(rim, rimRoots.certs, options.now).then((r) => r.chain);
      set.verified.set(rim, p);
    }
    const chain = await checks.run(`nvidia.rim.${rim.kind}.signature`, `${rim.kind} RIM ${rim.version}: XML signature and signing chain`, rimRoots.name, () => p,
      (c) => c.path.map((x) => commonName(x.subject) ?? x.subject.text).join(' <- '));
    if ((await checkOcsp(chain.path, rimRoots.certs, options, checks, `nvidia.rim.${rim.kind}.ocsp`, ocspUnavailable)) !== 'good') ocspGood = false;
  }
  const cmp = checks.runSync('nvidia.rim.versions', 'RIMs describe the report\'s driver and VBIOS versions', `${driver.version} / ${vbios.version}`,
    () => compareWithRims(item.report, driver, vbios), (c) => `${c.matched.length} active indices compared${c.skipped.length ? `, block ${c.skipped.join(',')} skipped (NVDEC0 disabled)` : ''}`);
  for (const m of cmp.mismatches)
    checks.fail(`nvidia.rim.measurement.${m.block}`, `measurement block ${m.block} (RIM index ${m.rimIndex}) matches the ${m.source} RIM`, `${m.source} RIM ${m.source === 'driver' ? driver.version : vbios.version}`,
      'NVIDIA_RIM_MISMATCH', m.runtime === undefined ? 'the report has no such block' : `runtime value ${m.runtime} matches no alternative`);
  if (cmp.mismatches.length === 0) checks.pass('nvidia.rim.measurements', 'every active RIM measurement matches the report', `driver ${driver.version}, VBIOS ${vbios.version}`, `${cmp.matched.length} indices`);
  return { match: cmp.mismatches.length === 0, mismatches: cmp.mismatches.map((m) => m.block), ocsp: ocspGood ? 'good' : 'skipped' };
}

/**
 * OCSP for every non-root certificate of a verified `path` (device chain, or a RIM signing chain). A source that
 * cannot answer (collateral unavailable) is a visible skip, as no response is (the policy decides whether a
 * skip is allowed, and a policy requiring OCSP then fails with NVIDIA_OCSP_UNAVAILABLE, kind collateral); a response
 * that is served is verified, and a forged or revoking one fails here whatever the policy.
 */
async function checkOcsp(path: readonly Certificate[], pathRoots: readonly Certificate[], options: GpuVerifyOptions, checks: Checks, id = 'nvidia.ocsp', unavailable?: string[]): Promise<'good' | 'skipped'> {
  const getter = options.collateral?.ocsp;
  if (!getter) {
    checks.skip(id, 'revocation status (OCSP) of every certificate of the chain', 'no OCSP collateral getter supplied');
    return 'skipped';
  }
  let good = 0;
  for (let i = 0; i + 1 < path.length; i++) {
    const cert = path[i]!;
    const issuer = path[i + 1]!;
    let der: Uint8Array | undefined;
    try {
      der = await getter(cert, issuer);
    } catch (e) {
      if (!(e instanceof GmError) || e.kind !== 'collateral') throw e;
      checks.skip(`${id}.${i}`, `OCSP status of "${cert.subject.text}"`, `OCSP unavailable: ${reason(e)}`);
      unavailable?.push(reason(e));
      continue;
    }
    if (!der) {
      checks.skip(`${id}.${i}`, `OCSP status of "${cert.subject.text}"`, 'no response supplied');
      continue;
    }
    await checks.run(`${id}.${i}`, `OCSP status of "${cert.subject.text}" is good`, 'responder chained to the same root',
      () => verifyOcspForCert(parseOcspResponse(der), cert, issuer, { now: options.now, roots: pathRoots, issuerChain: path.slice(i + 2) }), (s) => `good, next update ${s.nextUpdate?.toISOString() ?? 'none'}`);
    good++;
  }
  return good === path.length - 1 ? 'good' : 'skipped';
}

/** Verifies one GPU; throws a GmError carrying this GPU's report on the first failing check or policy. */
export async function verifyOneGpu(item: GpuEvidenceItem, options: GpuVerifyOptions, rimSet: RimSet | undefined = rimSetOf(options)): Promise<GpuResult> {
  const checks = new Checks(`GPU ${item.index} (${item.arch})`);
  const report = item.report;
  const dev = roots(options, 'device');
  checks.pass('nvidia.report.parse', 'SPDM GET_MEASUREMENTS transcript parses (lengths, blocks, opaque data, 96-byte signature)', undefined,
    `SPDM 0x${report.request.spdmVersion.toString(16)}, ${report.response.blocks.length} blocks, driver ${report.response.opaque.driverVersion ?? '?'}, VBIOS ${report.response.opaque.vbiosVersion ?? '?'}, opaque data ${opaqueFormat(report)}${report.padding ? `, ${report.padding} zero padding byte${report.padding === 1 ? '' : 's'} after the signature (not signed)` : ''}`);
  const chain = await checks.run('nvidia.chain', 'GPU certificate chain to the NVIDIA Device Identity CA (ECDSA P-384)', dev.name,
    () => cachedChain(item.chain, dev.certs, options.now), (v) => v.path.map((c) => commonName(c.subject) ?? c.subject.text).join(' <- '));
  const leaf = chain.path[0]!;
  checks.runSync('nvidia.fwid', 'FWID in the signing certificate equals the report\'s', 'leaf extension 2.23.133.5.4.1', () => checkFwid(leaf, report), (v) => v);
  if (options.expectedNonce) {
    const n = options.expectedNonce;
    checks.runSync('nvidia.report.nonce', 'the report answers the expected nonce', 'caller nonce', () => checkNonce(report, n), () => hex(n));
  } else checks.skip('nvidia.report.nonce', 'the report answers the expected nonce', 'no expected nonce given: freshness not established');
  await checks.run('nvidia.report.signature', 'report signature (ECDSA P-384/SHA-384 over request ‖ response) by the signing certificate', commonName(leaf.subject) ?? leaf.subject.text,
    () => verifyReportSignature(report, leaf, options.p384Verifier));
  checks.runSync('nvidia.evidence.envelope', 'unsigned envelope fields (driver, VBIOS, nonce) agree with the signed report', 'signed report', () => checkDeclared(item.declared, report), (v) => v);
  const ocspUnavailable: string[] = [];
  const ocsp = await checkOcsp(chain.path, dev.certs, options, checks, 'nvidia.ocsp', ocspUnavailable);
  const rim = await checkRims(item, rimSet, options, checks, ocspUnavailable);
  if (checks.failures.length > 0) throw failedWith(checks, 'NVIDIA_RIM_MISMATCH', `GPU ${item.index}: measurements ${rim.mismatches.join(', ')} do not match the RIMs`);

  const measurements: Record<number, string> = {};
  for (const b of report.response.blocks) measurements[b.index] = bytesToHex(b.value);
  const claims: GpuClaims = {
    gpu: item.index, source: 'local', arch: item.arch,
    hwmodel: chain.path[1] ? commonName(chain.path[1].subject) : undefined, ueid: hex(leaf.serialNumber),
    driverVersion: report.response.opaque.driverVersion, vbiosVersion: report.response.opaque.vbiosVersion,
    fwid: report.response.opaque.fwid ? hex(report.response.opaque.fwid) : undefined,
    nonce: hex(report.request.nonce), nonceMatch: options.expectedNonce ? true : undefined,
    measurements, measurementsMatch: rim.match, measurementMismatches: rim.mismatches, ...(rim.unavailable ? { rimUnavailable: rim.unavailable } : {}),
    ...(ocspUnavailable.length ? { ocspUnavailable: ocspUnavailable[0]! } : {}),
    ccMode: item.ccModeDeclared, debug: undefined, secureBoot: undefined, ocsp: ocsp === 'good' && rim.ocsp !== 'skipped' ? 'good' : 'skipped', sim: options.sim === true, issuedAt: options.collectedAt,
  };
  if (options.policy) {
    const codes = validateGpuClaims(claims, options.policy, options.now, checks, '');
    // A RIM or OCSP response the source could not supply may be had on a later try: that refusal is a collateral
    // error, not a rejection.
    const later = codes[0] === 'NVIDIA_RIM_UNAVAILABLE' || codes[0] === 'NVIDIA_OCSP_UNAVAILABLE';
    if (codes.length > 0) throw failedWith(checks, codes[0]!, `GPU ${item.index}: policy violations: ${checks.failures.map((f) => f.code).join(', ')}`, later ? 'collateral' : 'rejected');
  } else checks.skip('policy', 'GPU policy (CC mode, debug, versions, RIM, OCSP, age)', 'no policy given: verification only');
  return { gpu: item.index, claims, report: checks.report(), attestation: report };
}

function opaqueFormat(r: GpuAttestationReport): string {
  const f = r.response.opaque.format;
  return f.versioned ? `NVDAOD ${f.major}.${f.minor}.${f.patch}` : 'legacy';
}

function failedWith(checks: Checks, code: string, message: string, kind: ErrorKind = 'rejected'): GmError {
  return new GmError(kind, code, message, { report: checks.report() });
}

type Evidence = string | Uint8Array | readonly (GpuEvidenceItem | GpuEvidenceFailure)[];

function prepare(evidence: Evidence, options: GpuVerifyOptions) {
  const items = typeof evidence === 'string' ? parseGpuEvidenceList(evidence)
    : evidence instanceof Uint8Array ? parseGpuEvidenceList(new TextDecoder().decode(evidence)) : evidence;
  return { items, rimSet: rimSetOf(options) };
}

/** A GPU whose entry did not parse: its one row is the failed parse, the other GPUs are verified regardless. */
function unparsed(f: GpuEvidenceFailure): GpuOutcome {
  const checks = new Checks(`GPU ${f.index} (${f.arch})`);
  return { gpu: f.index, arch: f.arch, result: undefined, error: checks.failed('nvidia.report.parse', 'GPU evidence entry parses (JSON fields, PEM chain, SPDM transcript)', undefined, f.error), report: checks.report() };
}

/**
 * Verifies every GPU and returns each outcome (never throws for a GPU's rejection or unparseable entry; the CLI
 * reports them all). Only a document that is not a GPU evidence list at all throws.
 */
export async function verifyGpuEvidenceAll(evidence: Evidence, options: GpuVerifyOptions): Promise<{ outcomes: GpuOutcome[] }> {
  const { items, rimSet } = prepare(evidence, options);
  // GPUs are independent: their signature checks run concurrently (WebCrypto works off the main thread).
  const outcomes = await Promise.all(items.map(async (item): Promise<GpuOutcome> => {
    if (isGpuEvidenceFailure(item)) return unparsed(item);
    try {
      const result = await verifyOneGpu(item, options, rimSet);
      return { gpu: item.index, arch: item.arch, result, error: undefined, report: result.report };
    } catch (e) {
      if (!(e instanceof GmError) || e.kind === 'config') throw e;
      return { gpu: item.index, arch: item.arch, result: undefined, error: e, report: e.report ?? { subject: `GPU ${item.index} (${item.arch})`, verified: false, checks: [] } };
    }
  }));
  return { outcomes };
}

function aggregate(outcomes: readonly GpuOutcome[]): VerificationReport {
  return {
    subject: `NVIDIA GPU evidence (${outcomes.length} GPU${outcomes.length === 1 ? '' : 's'})`,
    verified: outcomes.every((o) => o.error === undefined),
    checks: outcomes.flatMap((o) => o.report.checks.map((c) => ({ ...c, id: `gpu${o.gpu}.${c.id}` }))),
  };
}

/**
 * Verifies the evidence of every GPU (nvtrust JSON text/bytes, or parsed items). Returns per-GPU `{ claims, report }`
 * and the aggregate report; throws a GmError naming the first rejected GPU and why, with the aggregate report.
 */
export async function verifyGpuEvidence(evidence: Evidence, options: GpuVerifyOptions): Promise<GpuEvidenceResult> {
  const { outcomes } = await verifyGpuEvidenceAll(evidence, options);
  const report = aggregate(outcomes);
  const bad = outcomes.find((o) => o.error);
  if (bad) {
    const e = bad.error!;
    throw new GmError(e.kind, e.code, `GPU ${bad.gpu} (${bad.arch}) rejected: ${e.message}`, { cause: e, report });
  }
  return { gpus: outcomes.map((o) => o.result!), report };
}

export { aggregate as aggregateGpuReports };
export { verifyNrasResult, type NrasVerifyOptions } from './nras.ts';
