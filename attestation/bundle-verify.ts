/**
 * Verifies an evidence bundle (docs/design.md §3, §4): dispatches the CPU evidence to its platform verifier (SEV-SNP
 * or TDX) and each GPU report to the NVIDIA verifier, and records the bundle-level checks (version, platform
 * allowed, sim allowed, nonce, freshness) in the same verification report.
 *
 * The caller computes the values the evidence must be bound to (this module imports nothing from protocol/):
 * `expectedReportData` = protocol/binding.ts `reportData(...)` over the bundle's keys and nonce, and, for
 * workers, `expectedGpuNonce` = `gpuNonceFor(expectedReportData)`.
 *
 * Sim platforms (`sim-sev-snp`, `sim-tdx`) are refused unless `allowSim` is set; then the fake vendor root carried
 * as the last certificate of the bundle is trusted explicitly (or only the ones in `simRoots`, when given), and
 * every report row and the claims say `sim`.
 */
import { type BundlePlatform, type EvidenceBundle, type GpuEvidence, isSimPlatform } from './bundle.ts';
import { fromHex, hex } from './bytes.ts';
import { DEFAULT_POLICY, type SnpPolicy, verifySevSnp } from './sevsnp/index.ts';
import { type GpuCollateral, type GpuEvidenceItem, type GpuPolicy, verifyOneGpu } from './nvidia/index.ts';
import { parseGpuAttestationReport } from './nvidia/spdm.ts';
import { parseCertificate } from './x509/cert.ts';
import { tdxBundleVerifier } from './tdx/bundle.ts';
import { type CollateralGetter, type TdxPolicy, parseQuote } from './tdx/index.ts';
import { pemDecodeAll } from './x509/pem.ts';
import { configError, GmError, protocolError, rejected } from './errors.ts';
import { Checks, type CheckRow, type VerificationReport } from './report.ts';
import type { TrustStore } from './trust.ts';

/** Per-platform policy values, as the platform modules define them (policy-as-data parsed by their readers). */
export interface BundlePolicy {
  /** Undefined: the SEV-SNP module's DEFAULT_POLICY (debug forbidden, any measurement). */
  readonly 'sev-snp'?: SnpPolicy;
  /** Undefined: the TDX module's DEFAULT_TDX_POLICY. */
  readonly tdx?: TdxPolicy;
  /** Undefined: DEFAULT_WORKER_GPU_POLICY. */
  readonly gpu?: GpuPolicy;
}

/**
 * The GPU policy a worker must meet when the caller gives none: CC mode on, devtools and debug off, Hopper or
 * Blackwell, evidence at most 10 minutes old. RIM matching and OCSP are left to an explicit policy (they need
 * collateral the caller supplies).
 */
export const DEFAULT_WORKER_GPU_POLICY: GpuPolicy = Object.freeze({
  ccModeRequired: true, allowDebug: false, allowDevtools: false, minDriverVersion: '0', minVbiosVersion: '0',
  allowedArchitectures: Object.freeze(['HOPPER', 'BLACKWELL']) as readonly string[], rimMatchRequired: false, ocsp: 'allow-skip' as const,
  maxEvidenceAgeSeconds: 600, expectedNonce: undefined,
});

export interface VerifyBundleOptions {
  /** The 64-byte REPORT_DATA the CPU evidence must carry. */
  readonly expectedReportData: Uint8Array;
  /** The 32-byte value the bundle's `nonce` field must equal (the caller's fresh nonce, or zeros for boot). */
  readonly expectedNonce?: Uint8Array;
  /** The nonce every GPU report must carry: gpuNonceFor(expectedReportData). Required when GPU evidence is present. */
  readonly expectedGpuNonce?: Uint8Array;
  /** Workers: GPU evidence must be present (CC-mode GPU required). */
  readonly requireGpu?: boolean;
  readonly policy: BundlePolicy;
  /** Accept `sim-*` platforms, trusting the bundle's own fake root. Never set in production. */
  readonly allowSim?: boolean;
  /** With allowSim: only these sim roots (DER) are trusted, instead of whichever root the bundle carries. */
  readonly simRoots?: readonly Uint8Array[];
  /**
   * With allowSim, for sim bundles only: the sim NVIDIA RIM roots (DER) RIMs of sim GPUs are verified to. Unset: the
   * pinned NVIDIA RIM root of `trust`.
   */
  readonly simRimRoots?: readonly Uint8Array[];
  /** Pinned vendor anchors (required for non-sim platforms). */
  readonly trust?: TrustStore;
  readonly now: Date;
  /** Maximum age of the evidence (now - issuedAt). Unset: no age limit beyond the verifiers' own collateral windows. */
  readonly maxAgeMs?: number;
  /** Tolerated clock skew for issuedAt in the future (default 60 s). */
  readonly skewMs?: number;
  /**
   * Collateral the caller fetches itself, e.g. from a host shim's cache (client/collateral.ts). It is verified by
   * the platform verifiers exactly as collateral the bundle carries: the source is trusted for nothing.
   */
  readonly fetched?: FetchedCollateral;
}

export interface FetchedCollateral {
  /** TDX: asked by the FMSPC / CA type of the quote's verified PCK certificate, instead of reading the bundle's. */
  readonly tdx?: CollateralGetter;
  /**
   * GPU: OCSP responses for the certificates of each verified GPU chain (and of the RIM signing chains), and the
   * driver and VBIOS RIMs by the ids the verified report names (client/collateral.ts gpuOcspFromShim, gpuRimsFromShim).
   */
  readonly gpu?: GpuCollateral;
}

export interface CpuClaims {
  readonly reportData: Uint8Array;
  /** SEV-SNP MEASUREMENT, or TDX MRTD (hex). */
  readonly measurement: string;
  /** The platform verifier's full claims object. */
  readonly detail: unknown;
}

export interface GpuClaims {
  readonly arch: string;
  readonly nonce: Uint8Array;
  readonly ccMode: boolean;
  readonly devToolsMode: boolean;
  readonly detail: unknown;
}

export interface BundleClaims {
  readonly platform: BundlePlatform;
  /** True for sim platforms: nothing here is backed by real hardware. */
  readonly sim: boolean;
  readonly cpu: CpuClaims;
  readonly gpu: readonly GpuClaims[];
  readonly keys: EvidenceBundle['keys'];
  readonly nonce: Uint8Array;
  readonly issuedAt: number;
}

export interface BundleVerification {
  readonly claims: BundleClaims;
  readonly report: VerificationReport;
}

/** What a CPU platform verifier must provide to the dispatcher (adapters below wrap each platform's API). */
export interface CpuVerifierInput {
  readonly evidence: Uint8Array;
  readonly certs: readonly Uint8Array[];
  readonly collateral: EvidenceBundle['collateral'];
  readonly expectedReportData: Uint8Array;
  readonly policy: unknown;
  readonly trust: TrustStore | undefined;
  /** Set for sim platforms: the root certificate to trust explicitly. */
  readonly simRoot: Uint8Array | undefined;
  readonly now: Date;
  /** TDX: a collateral getter the caller supplied (VerifyBundleOptions.fetched.tdx). */
  readonly tdxCollateral?: CollateralGetter;
}
export interface GpuVerifierInput {
  readonly gpu: GpuEvidence;
  readonly expectedNonce: Uint8Array;
  readonly policy: unknown;
  readonly trust: TrustStore | undefined;
  readonly simRoot: Uint8Array | undefined;
  readonly now: Date;
  /** When the evidence was produced (the bundle's issuedAt). */
  readonly collectedAt?: Date;
  /** OCSP and RIM collateral the caller supplied (VerifyBundleOptions.fetched.gpu). */
  readonly collateral?: GpuCollateral;
  /** Sim bundles under allowSim: the sim RIM roots (VerifyBundleOptions.simRimRoots). */
  readonly simRimRoots?: readonly Uint8Array[];
}
export interface VerifierResult<C> {
  readonly claims: C;
  readonly report: VerificationReport;
}
export interface Verifiers {
  readonly 'sev-snp'?: (i: CpuVerifierInput) => Promise<VerifierResult<CpuClaims>>;
  readonly tdx?: (i: CpuVerifierInput) => Promise<VerifierResult<CpuClaims>>;
  readonly gpu?: (i: GpuVerifierInput) => Promise<VerifierResult<GpuClaims>>;
}

/** SEV-SNP: certs are [VCEK or VLEK, ASK/ASVK, ARK]; collateral.crls[0] is AMD's CRL for the product. */
export const snpAdapter: NonNullable<Verifiers['sev-snp']> = async (i) => {
  const [vcek, ask, ark] = i.certs;
  if (!vcek) throw protocolError('BUNDLE_MALFORMED', 'SEV-SNP bundle carries no VCEK/VLEK certificate');
  if (i.simRoot && (!ask || !ark)) throw protocolError('BUNDLE_MALFORMED', 'sim SEV-SNP bundle must carry [VCEK, ASK, ARK]');
  const r = await verifySevSnp(i.evidence, {
    now: i.now,
    trust: i.trust,
    ...(i.simRoot ? { roots: { ark: i.simRoot, ask: ask! } } : {}),
    vcek,
    ...(i.collateral.crls?.[0] ? { crl: i.collateral.crls[0] } : {}),
    policy: (i.policy as SnpPolicy | undefined) ?? DEFAULT_POLICY,
    expectedReportData: i.expectedReportData,
  });
  return { claims: { reportData: fromHex(r.claims.reportData), measurement: r.claims.measurement, detail: r.claims }, report: r.report };
};

/** NVIDIA: the bundle entry becomes a GpuEvidenceItem; a sim root (last certificate of the chain) only under allowSim. */
export const gpuAdapter: NonNullable<Verifiers['gpu']> = async (i) => {
  const item: GpuEvidenceItem = {
    index: 0, arch: i.gpu.arch, report: parseGpuAttestationReport(i.gpu.evidence), chain: i.gpu.certs.map((d) => parseCertificate(d)),
    ccModeDeclared: i.gpu.ccMode, declared: {},
  };
  const r = await verifyOneGpu(item, {
    now: i.now,
    // A sim device root with the pinned RIM root (trust store) unless sim RIM roots were given.
    ...(i.simRoot ? { roots: { device: [parseCertificate(i.simRoot)], ...(i.simRimRoots?.length ? { rim: i.simRimRoots.map((d) => parseCertificate(d)) } : {}) }, sim: true } : {}),
    ...(i.trust ? { trustStore: i.trust } : {}),
    expectedNonce: i.expectedNonce,
    policy: (i.policy as GpuPolicy | undefined) ?? DEFAULT_WORKER_GPU_POLICY,
    ...(i.collectedAt ? { collectedAt: i.collectedAt } : {}),
    ...(i.collateral ? { collateral: i.collateral } : {}),
  });
  const c = r.claims;
  return { claims: { arch: c.arch, nonce: fromHex(c.nonce), ccMode: c.ccMode === 'on' || c.ccMode === 'devtools', devToolsMode: c.ccMode === 'devtools', detail: c }, report: r.report };
};

/**
 * TDX: the quote carries its PCK chain; collateral (TCB info, QE identity, CRLs, TCB signing chain) is re-verified,
 * from the bundle or, given one, from the caller's getter (`tdxCollateral`).
 */
export const tdxAdapter: NonNullable<Verifiers['tdx']> = (i) => tdxBundleVerifier(i);

/** The last certificate of the PCK chain a TDX quote carries (its root), or undefined when it cannot be read. */
function quoteRoot(quote: Uint8Array): Uint8Array | undefined {
  try {
    const pem = new TextDecoder('utf-8', { fatal: true }).decode(parseQuote(quote).certification.pckCertChain);
    return pemDecodeAll(pem).at(-1);
  } catch {
    return undefined;
  }
}

let registered: Verifiers = { 'sev-snp': snpAdapter, tdx: tdxAdapter, gpu: gpuAdapter };
/**
 * Installs the platform adapters (attestation/bundle-verifiers.ts does this for the real modules). Kept as a
 * table so each platform can be replaced in a test and so this file does not pull every verifier into a bundle.
 */
export function registerVerifiers(v: Verifiers): void {
  registered = { ...registered, ...v };
}

export async function verifyBundle(bundle: EvidenceBundle, opts: VerifyBundleOptions, verifiers: Verifiers = registered): Promise<BundleVerification> {
  const sim = isSimPlatform(bundle.platform);
  try {
    const r = await verifyInner(bundle, opts, verifiers);
    return sim ? { claims: r.claims, report: markSim(r.report) } : r;
  } catch (e) {
    if (sim && e instanceof GmError && e.report) e.report = markSim(e.report);
    throw e;
  }
}

/** Every row of a sim verification says so, so no table or log can be mistaken for hardware evidence. */
function markSim(r: VerificationReport): VerificationReport {
  return { ...r, checks: r.checks.map((c) => (c.what.startsWith('[sim] ') ? c : { ...c, what: `[sim] ${c.what}` })) };
}

async function verifyInner(bundle: EvidenceBundle, opts: VerifyBundleOptions, verifiers: Verifiers): Promise<BundleVerification> {
  const sim = isSimPlatform(bundle.platform);
  const tag = sim ? ' [SIM: not backed by hardware]' : '';
  const checks = new Checks(`evidence bundle (${bundle.platform})${tag}`);
  const base = bundle.platform === 'sim-sev-snp' ? 'sev-snp' : bundle.platform === 'sim-tdx' ? 'tdx' : bundle.platform;

  checks.runSync('bundle.platform', 'platform is real hardware, or sim explicitly allowed', sim ? 'allowSim' : 'pinned vendor roots', () => {
    if (sim && !opts.allowSim) throw rejected('SIM_NOT_ALLOWED', `bundle platform ${bundle.platform} is simulated and sim evidence was not allowed`);
    if (!sim && !opts.trust) throw configError('TRUST_STORE_REQUIRED', `verifying ${bundle.platform} evidence needs the pinned trust store`);
  }, () => bundle.platform);

  let simRoot: Uint8Array | undefined;
  if (sim) {
    simRoot = checks.runSync('bundle.sim-root', 'sim root certificate is the one trusted explicitly', opts.simRoots ? 'simRoots' : "bundle's own sim root (allowSim)", () => {
      // A TDX bundle without collateral (fetched by the caller, or missing) names its root only in the quote's PCK chain.
      const root = base === 'sev-snp' ? bundle.certs[bundle.certs.length - 1]
        : (bundle.collateral.chain?.[bundle.collateral.chain.length - 1] ?? bundle.certs[bundle.certs.length - 1] ?? quoteRoot(bundle.evidence));
      if (!root) throw protocolError('BUNDLE_MALFORMED', 'sim bundle carries no root certificate');
      if (opts.simRoots && !opts.simRoots.some((r) => r.length === root.length && r.every((x, i) => x === root[i])))
        throw rejected('SIM_ROOT_UNTRUSTED', 'sim root in the bundle is not one of the trusted sim roots');
      return root;
    }, () => 'sim');
  }

  if (opts.expectedNonce) {
    const want = opts.expectedNonce;
    checks.runSync('bundle.nonce', 'bundle nonce equals the requested nonce', 'caller nonce', () => {
      if (!eq(bundle.nonce, want)) throw rejected('NONCE_MISMATCH', 'bundle nonce differs from the nonce the caller sent');
    }, () => hex(want));
  }

  const nowMs = opts.now.getTime();
  checks.runSync('bundle.freshness', 'evidence issued within the allowed age', opts.maxAgeMs === undefined ? 'no age limit set' : `max age ${opts.maxAgeMs} ms`, () => {
    if (bundle.issuedAt > nowMs + (opts.skewMs ?? 60_000)) throw rejected('EVIDENCE_FROM_FUTURE', 'bundle issuedAt is in the future');
    if (opts.maxAgeMs !== undefined && nowMs - bundle.issuedAt > opts.maxAgeMs) throw rejected('EVIDENCE_STALE', `evidence is ${nowMs - bundle.issuedAt} ms old, more than ${opts.maxAgeMs} ms`);
  }, () => new Date(bundle.issuedAt).toISOString());

  const cpuVerify = base === 'sev-snp' ? verifiers['sev-snp'] : verifiers.tdx;
  const cpu = await checks.run(`bundle.cpu`, `${base} evidence verified (signature, chain, policy, REPORT_DATA binding)`, sim ? 'sim root (allowSim)' : 'pinned vendor root', async () => {
    if (!cpuVerify) throw configError('VERIFIER_UNAVAILABLE', `no ${base} verifier is registered in this build`);
    const r = await nested(checks, () => cpuVerify({ evidence: bundle.evidence, certs: bundle.certs, collateral: bundle.collateral, expectedReportData: opts.expectedReportData, policy: opts.policy[base], trust: opts.trust, simRoot, now: opts.now, ...(base === 'tdx' && opts.fetched?.tdx ? { tdxCollateral: opts.fetched.tdx } : {}) }));
    return r.claims;
  }, (c) => `measurement ${c.measurement}`);
  // The binding is what makes the keys in the bundle the enclave's keys: check it here too, whatever the adapter did.
  checks.runSync('bundle.report-data', 'REPORT_DATA equals the binding of the bundle keys and nonce', 'protocol/binding reportData', () => {
    if (!eq(cpu.reportData, opts.expectedReportData)) throw rejected('REPORT_DATA_MISMATCH', 'REPORT_DATA in the evidence does not bind the keys and nonce of this bundle');
  });

  const gpus: GpuClaims[] = [];
  if (!bundle.gpu || bundle.gpu.length === 0) {
    if (opts.requireGpu) checks.runSync('bundle.gpu', 'GPU evidence present', 'worker policy', () => { throw rejected('GPU_EVIDENCE_MISSING', 'worker bundle carries no GPU evidence'); });
    else checks.skip('bundle.gpu', 'GPU evidence', 'bundle carries none (not required)');
  } else {
    const gv = verifiers.gpu;
    const nonce = opts.expectedGpuNonce;
    for (const [i, g] of bundle.gpu.entries()) {
      const c = await checks.run(`bundle.gpu[${i}]`, 'GPU evidence verified (chain, signature, nonce bound to CPU REPORT_DATA, CC mode on, devtools off)', sim ? 'sim root (allowSim)' : 'NVIDIA device root', async () => {
        if (!nonce) throw configError('GPU_NONCE_REQUIRED', 'GPU evidence present but the caller gave no expected GPU nonce');
        if (!gv) throw configError('VERIFIER_UNAVAILABLE', 'no GPU verifier is registered in this build');
        const r = await nested(checks, () => gv({ gpu: g, expectedNonce: nonce, policy: opts.policy.gpu, trust: opts.trust, simRoot: sim ? g.certs[g.certs.length - 1] : undefined, now: opts.now, collectedAt: new Date(bundle.issuedAt), ...(opts.fetched?.gpu ? { collateral: opts.fetched.gpu } : {}), ...(sim && opts.simRimRoots ? { simRimRoots: opts.simRimRoots } : {}) }));
        if (!eq(r.claims.nonce, nonce)) throw rejected('GPU_NONCE_MISMATCH', 'GPU report nonce is not bound to the CPU evidence');
        if (!r.claims.ccMode) throw rejected('GPU_CC_MODE_OFF', 'GPU confidential-computing mode is off');
        if (r.claims.devToolsMode) throw rejected('GPU_DEVTOOLS_ON', 'GPU devtools mode is on');
        return r.claims;
      }, (c) => `${c.arch} cc=on devtools=off`);
      gpus.push(c);
    }
  }

  const report = checks.report();
  return { claims: { platform: bundle.platform, sim, cpu, gpu: gpus, keys: bundle.keys, nonce: bundle.nonce, issuedAt: bundle.issuedAt }, report };
}

/** Runs a platform verifier and copies its rows (also those of a failure) into the bundle report. */
async function nested<C>(checks: Checks, fn: () => Promise<VerifierResult<C>>): Promise<VerifierResult<C>> {
  try {
    const r = await fn();
    merge(checks, r.report);
    return r;
  } catch (e) {
    if (e instanceof GmError && e.report) merge(checks, e.report);
    throw e;
  }
}

function merge(checks: Checks, r: VerificationReport): void {
  for (const row of r.checks) {
    if (row.status === 'pass') checks.pass(row.id, row.what, row.against, row.detail);
    else if (row.status === 'skip') checks.skip(row.id, row.what, row.detail ?? 'skipped', row.against);
    else checks.fail(row.id, row.what, row.against, (row as CheckRow).code ?? 'FAILED', row.detail ?? '');
  }
}

function eq(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
