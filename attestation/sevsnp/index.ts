/**
 * AMD SEV-SNP attestation: one composed function over the three layers (docs/design.md §3), abi (parse the
 * ATTESTATION_REPORT, SNP ABI pub. 56860 Table 23) → verify (report signature, AMD chain, CRL, VCEK/VLEK
 * extensions) → validate (policy as data). Returns typed claims and the per-check verification report, or throws a
 * GmError with a stable code and the report so far attached.
 */
import { equalBytes, hex, isZero, sha256, sha384, sha512 } from '../bytes.ts';
import { GmError, rejected } from '../errors.ts';
import { Checks, type VerificationReport } from '../report.ts';
import { type AmdProduct, type SigningKey, type SnpReport, type TcbVersion, parseReport } from './abi.ts';
import { type HclReport, HCL_HASH_SIZE, parseHclReport } from './hcl.ts';
import { type SnpVerifyOptions, verifyReport } from './verify.ts';
import { DEFAULT_POLICY, type SnpPolicy, validateReport } from './validate.ts';

export type { AmdProduct, SigningKey, SnpReport, TcbVersion } from './abi.ts';
export { parseReport, REPORT_SIZE, SIGNED_LENGTH } from './abi.ts';
export type { ExplicitRoots, SnpCollateralGetter, SnpCollateralRequest, SnpVerifyOptions } from './verify.ts';
export { clearSnpCaches } from './verify.ts';
export { DEFAULT_POLICY, parseSnpPolicy, type MinTcb, type SnpPolicy } from './validate.ts';
export { parseHclReport, type HclReport } from './hcl.ts';

export interface VerifySevSnpOptions extends SnpVerifyOptions {
  /** The appraisal policy. Undefined: DEFAULT_POLICY. null: no appraisal (recorded as a skipped row). */
  readonly policy?: SnpPolicy | null | undefined;
  /** When the evidence was produced (e.g. bundle issuedAt), for policy.maxEvidenceAgeSeconds. */
  readonly evidenceTime?: Date | undefined;
  /** REPORT_DATA the caller computed (key binding, docs/design.md §4); checked in addition to the policy. */
  readonly expectedReportData?: Uint8Array | undefined;
}

export interface TcbClaims {
  readonly raw: string;
  readonly fmc?: number;
  readonly bootloader: number;
  readonly tee: number;
  readonly snp: number;
  readonly microcode: number;
}

/** What an application needs from a verified report: JSON-safe (hex strings, no bigint). */
export interface SevSnpClaims {
  readonly platform: 'sev-snp';
  readonly version: number;
  readonly product: AmdProduct;
  readonly signingKey: SigningKey;
  /** VLEK only: the cloud provider the key was issued to. */
  readonly cspId?: string;
  readonly measurement: string;
  readonly reportData: string;
  readonly hostData: string;
  readonly chipId: string;
  readonly chipIdMasked: boolean;
  readonly vmpl: number;
  readonly guestSvn: number;
  readonly policy: {
    readonly raw: string; readonly abiMajor: number; readonly abiMinor: number; readonly debug: boolean; readonly smt: boolean;
    readonly migrateMa: boolean; readonly singleSocket: boolean;
  };
  readonly platformInfo: { readonly raw: string; readonly smtEnabled: boolean; readonly tsmeEnabled: boolean };
  readonly reportedTcb: TcbClaims;
  readonly currentTcb: TcbClaims;
  readonly committedTcb: TcbClaims;
  readonly launchTcb: TcbClaims;
  readonly firmware: string;
  readonly familyId: string;
  readonly imageId: string;
  readonly idKeyDigest: string;
  readonly authorKeyDigest: string;
  readonly reportId: string;
  /** The trust anchor the chain ended in: a pinned AMD ARK, or a caller-supplied root (sim). */
  readonly anchor: string;
  readonly revocationChecked: boolean;
  /** Azure HCL reports: the runtime data REPORT_DATA binds (UTF-8 text as the paravisor wrote it). */
  readonly hclRuntimeData?: string;
}

export interface SevSnpResult {
  readonly claims: SevSnpClaims;
  readonly report: VerificationReport;
  readonly parsed: SnpReport;
}

const tcbClaims = (t: TcbVersion): TcbClaims => ({
  raw: `0x${t.raw.toString(16).padStart(16, '0')}`,
  ...(t.fmc === undefined ? {} : { fmc: t.fmc }),
  bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode,
});

/**
 * Verifies an SEV-SNP attestation report (1184 bytes) end to end. Needs `now`, and `trust` (pinned AMD anchors)
 * or `roots` (a caller-chosen ARK/ASK, e.g. the sim's), and the VCEK/VLEK certificate (`vcek` or the collateral
 * getter). Throws GmError (with `.report`) on any failure.
 */
export async function verifySevSnp(reportBytes: Uint8Array, options: VerifySevSnpOptions): Promise<SevSnpResult> {
  return verifyWith(new Checks('AMD SEV-SNP attestation report'), () => reportBytes, options);
}

const HASH = { 'SHA-256': sha256, 'SHA-384': sha384, 'SHA-512': sha512 } as const;

/**
 * Verifies the SEV-SNP report inside an Azure HCL report (hcl.ts) and its binding: REPORT_DATA is the hash the HCL
 * names of the runtime data, then zero bytes. Rows `snp.hcl.parse` and `snp.hcl.runtimeData` join the report's own.
 */
export async function verifySevSnpHcl(hclBytes: Uint8Array, options: VerifySevSnpOptions): Promise<SevSnpResult> {
  const checks = new Checks('AMD SEV-SNP attestation report (Azure HCL report)');
  let hcl: HclReport | undefined;
  return verifyWith(checks, () => {
    hcl = checks.runSync('snp.hcl.parse', 'Azure HCL report: "HCLA" header, SNP report at 0x20, IGVM request data lengths exact, zero padding', 'Azure IGVM attestation layout',
      () => parseHclReport(hclBytes), (h) => `HCL version ${h.version}, ${h.runtimeData.length} bytes of runtime data, ${h.hashType}, ${h.padding} zero padding bytes`);
    return hcl.snpReport;
  }, options, async (r) => {
    const h = hcl!;
    const n = HCL_HASH_SIZE[h.hashType];
    await checks.run('snp.hcl.runtimeData', `REPORT_DATA = ${h.hashType}(HCL runtime data) followed by ${64 - n} zero bytes`, 'HCL runtime data', async () => {
      const want = await HASH[h.hashType](h.runtimeData);
      if (!equalBytes(r.reportData.subarray(0, n), want)) throw rejected('SNP_HCL_RUNTIME_DATA', `REPORT_DATA[0:${n}] is not the ${h.hashType} of the HCL runtime data: the runtime data is not the one this report attests`);
      if (!isZero(r.reportData.subarray(n))) throw rejected('SNP_HCL_RUNTIME_DATA', `REPORT_DATA[${n}:64] is not zero`);
    }, () => hex(r.reportData.subarray(0, n)));
    return new TextDecoder().decode(h.runtimeData);
  });
}

async function verifyWith(checks: Checks, reportBytes: () => Uint8Array, options: VerifySevSnpOptions, bind?: (r: SnpReport) => Promise<string>): Promise<SevSnpResult> {
  try {
    const bytes = reportBytes();
    const r = checks.runSync('snp.report.parse', 'report layout: 1184 bytes, known version, reserved bytes zero, ECDSA P-384 SHA-384', 'SNP ABI Table 23',
      () => parseReport(bytes), (p) => `version ${p.version}`);
    const v = await verifyReport(r, options, checks);
    // A container's binding is checked once the report is shown genuine, before the policy appraises it.
    const hclRuntimeData = bind ? await bind(r) : undefined;
    const policy = options.policy === undefined ? DEFAULT_POLICY : options.policy;
    if (policy === null) {
      checks.skip('snp.policy', 'appraisal policy', 'no policy applied (caller passed policy: null)');
      if (options.expectedReportData) validateReport(r, r.signerInfo.signingKey, { ...DEFAULT_POLICY, allowDebug: true, allowMigrationAgent: true, vmpls: [0, 1, 2, 3] }, { product: v.product, now: options.now, expectedReportData: options.expectedReportData }, checks);
    } else {
      validateReport(r, r.signerInfo.signingKey, policy, {
        product: v.product, now: options.now, evidenceTime: options.evidenceTime, expectedReportData: options.expectedReportData,
      }, checks);
    }
    const claims: SevSnpClaims = {
      platform: 'sev-snp',
      version: r.version,
      product: v.product,
      signingKey: r.signerInfo.signingKey,
      ...(v.extensions.cspId === undefined ? {} : { cspId: v.extensions.cspId }),
      measurement: hex(r.measurement),
      reportData: hex(r.reportData),
      hostData: hex(r.hostData),
      chipId: hex(r.chipId),
      chipIdMasked: r.signerInfo.maskChipKey,
      vmpl: r.vmpl,
      guestSvn: r.guestSvn,
      policy: {
        raw: `0x${r.policy.raw.toString(16)}`, abiMajor: r.policy.abiMajor, abiMinor: r.policy.abiMinor, debug: r.policy.debug,
        smt: r.policy.smt, migrateMa: r.policy.migrateMa, singleSocket: r.policy.singleSocket,
      },
      platformInfo: { raw: `0x${r.platformInfo.raw.toString(16)}`, smtEnabled: r.platformInfo.smtEnabled, tsmeEnabled: r.platformInfo.tsmeEnabled },
      reportedTcb: tcbClaims(r.reportedTcb),
      currentTcb: tcbClaims(r.currentTcb),
      committedTcb: tcbClaims(r.committedTcb),
      launchTcb: tcbClaims(r.launchTcb),
      firmware: `${r.currentVersion.major}.${r.currentVersion.minor}.${r.currentVersion.build}`,
      familyId: hex(r.familyId),
      imageId: hex(r.imageId),
      idKeyDigest: hex(r.idKeyDigest),
      authorKeyDigest: hex(r.authorKeyDigest),
      reportId: hex(r.reportId),
      anchor: v.anchor,
      revocationChecked: v.revocationChecked,
      ...(hclRuntimeData === undefined ? {} : { hclRuntimeData }),
    };
    return { claims, report: checks.report(), parsed: r };
  } catch (e) {
    if (e instanceof GmError) {
      // An error raised outside a recorded check (e.g. bad options) still gets its failing row.
      if (!e.report) throw checks.failed('snp.verify', 'verification', undefined, e);
      throw e;
    }
    throw checks.failed('snp.internal', 'verification', undefined, e);
  }
}
