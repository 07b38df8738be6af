/**
 * TDX in the evidence bundle (docs/design.md §4): the adapter `verifyBundle` calls for `tdx` / `sim-tdx` bundles. The
 * quote carries its PCK chain; the bundle's collateral carries Intel's PCS bodies, the TCB signing chain and the two
 * CRLs, all re-verified here against the pinned Intel SGX Root CA (or, for sim bundles the caller allowed, the sim
 * root `verifyBundle` extracted). With a caller's getter, verifyTdx asks it (by the verified PCK's FMSPC) instead.
 * Shaped structurally so this module does not depend on the bundle modules.
 */
import { hex } from '../bytes.ts';
import { configError } from '../errors.ts';
import type { VerificationReport } from '../report.ts';
import type { TrustStore } from '../trust.ts';
import { type Certificate, parseCertificate } from '../x509/cert.ts';
import { type CollateralAsServed, byteKey, collateralFromServed } from './collateral.ts';
import { type CollateralGetter, type TdxClaims, type TdxPolicy, DEFAULT_TDX_POLICY, verifyTdx } from './index.ts';

export interface TdxBundleInput {
  readonly evidence: Uint8Array;
  readonly certs: readonly Uint8Array[];
  readonly collateral: CollateralAsServed;
  readonly expectedReportData: Uint8Array;
  readonly policy: unknown;
  readonly trust: TrustStore | undefined;
  /** DER of the sim root, set only for sim bundles the caller allowed. */
  readonly simRoot: Uint8Array | undefined;
  readonly now: Date;
  /** A caller's collateral getter (e.g. a host shim's cache), asked instead of reading the bundle's collateral. */
  readonly tdxCollateral?: CollateralGetter;
}

export interface TdxBundleResult {
  readonly claims: { readonly reportData: Uint8Array; readonly measurement: string; readonly detail: TdxClaims };
  readonly report: VerificationReport;
}

// The same sim root parsed once, so the verifiers' per-root caches stay warm across bundles.
const simRoots = new Map<string, Certificate>();

export async function tdxBundleVerifier(i: TdxBundleInput): Promise<TdxBundleResult> {
  let roots: Certificate[] | undefined;
  if (i.simRoot) {
    const k = byteKey(i.simRoot);
    let r = simRoots.get(k);
    if (!r) {
      r = parseCertificate(i.simRoot.slice());
      if (simRoots.size >= 16) simRoots.clear();
      simRoots.set(k, r);
    }
    roots = [r];
  } else if (!i.trust) throw configError('TRUST_STORE_REQUIRED', 'verifying TDX evidence needs the pinned trust store');
  const r = await verifyTdx(i.evidence, {
    now: i.now,
    ...(roots ? { roots } : { trustStore: i.trust! }),
    collateral: i.tdxCollateral ?? collateralFromServed(i.collateral),
    policy: (i.policy as TdxPolicy | undefined) ?? DEFAULT_TDX_POLICY,
    expectedReportData: i.expectedReportData,
  });
  return { claims: { reportData: r.claims.reportData, measurement: hex(r.claims.mrTd), detail: r.claims }, report: r.report };
}
