/**
 * SEV-SNP appraisal policy (layer 3 of 3), written as data (after go-sev-guest `validate` and `check.proto`):
 * field meanings follow the SNP ABI (pub. 56860) Table 23 (MEASUREMENT, REPORT_DATA, HOST_DATA, ID_KEY_DIGEST,
 * GUEST_SVN, VMPL, TCB_VERSION) and Table 9 (GUEST POLICY: DEBUG, SMT, MIGRATE_MA).
 *
 * Every rule is evaluated and every violation recorded as a fail row before one error is thrown, so an operator
 * sees all that is wrong at once. A required policy field that is missing is a configuration error.
 */
import { equalBytes, hex } from '../bytes.ts';
import { configError, rejected } from '../errors.ts';
import { PolicyReader } from '../policy.ts';
import type { Checks } from '../report.ts';
import type { AmdProduct, SigningKey, SnpReport, TcbVersion } from './abi.ts';

export interface MinTcb {
  readonly bootloader: number;
  readonly tee: number;
  readonly snp: number;
  readonly microcode: number;
  /** Turin only. */
  readonly fmc?: number | undefined;
}

export interface SnpPolicy {
  /** Allowed MEASUREMENTs (48 bytes each), or 'any' to accept every measurement explicitly. Required. */
  readonly measurements: readonly Uint8Array[] | 'any';
  /** Whether GUEST POLICY.DEBUG may be set. Required. */
  readonly allowDebug: boolean;
  /** Whether SMT may be allowed (GUEST POLICY.SMT) or on (PLATFORM_INFO.SMT_EN). Default true. */
  readonly allowSmt: boolean;
  /** Whether GUEST POLICY.MIGRATE_MA may be set. Default false. */
  readonly allowMigrationAgent: boolean;
  /** Allowed VMPLs. Default [0]. */
  readonly vmpls: readonly number[];
  /** Allowed signing keys. Default VCEK and VLEK. */
  readonly signingKeys: readonly ('vcek' | 'vlek')[];
  /** Allowed products. Default all. */
  readonly products: readonly AmdProduct[];
  /** Minimum TCB per product, each component, compared with REPORTED, CURRENT and COMMITTED TCB. */
  readonly minTcb: Readonly<Partial<Record<AmdProduct, MinTcb>>>;
  readonly minGuestSvn: number;
  readonly reportData?: Uint8Array | undefined;
  readonly hostData?: Uint8Array | undefined;
  /** Allowed ID_KEY_DIGESTs (48 bytes each). */
  readonly idKeyDigests?: readonly Uint8Array[] | undefined;
  /** Maximum age of the evidence in seconds at `now`, from a caller-supplied evidence time. */
  readonly maxEvidenceAgeSeconds?: number | undefined;
}

/** Debug forbidden, no migration agent, VMPL 0, any product and signing key, no minimums beyond zero. */
export const DEFAULT_POLICY: SnpPolicy = Object.freeze({
  measurements: 'any',
  allowDebug: false,
  allowSmt: true,
  allowMigrationAgent: false,
  vmpls: Object.freeze([0]),
  signingKeys: Object.freeze(['vcek', 'vlek'] as const),
  products: Object.freeze(['Milan', 'Genoa', 'Turin'] as const),
  minTcb: Object.freeze({}),
  minGuestSvn: 0,
});

const PRODUCTS: readonly AmdProduct[] = ['Milan', 'Genoa', 'Turin'];

/**
 * Reads a policy JSON document. Required: `measurements` (array of 48-byte hex, or "any") and `allowDebug`.
 * Unknown fields and malformed values are configuration errors.
 */
export function parseSnpPolicy(doc: unknown, where = 'SEV-SNP policy'): SnpPolicy {
  const r = doc instanceof PolicyReader ? doc : new PolicyReader(doc, where);
  const m = r.raw('measurements');
  if (m === undefined) throw configError('POLICY_MISSING_FIELD', `${where}: required field "measurements" is missing`);
  const measurements = m === 'any' ? 'any' : r.hexList('measurements', 48);
  const allowDebug = r.boolean('allowDebug');
  const allowSmt = r.boolean('allowSmt', 'optional') ?? DEFAULT_POLICY.allowSmt;
  const allowMigrationAgent = r.boolean('allowMigrationAgent', 'optional') ?? DEFAULT_POLICY.allowMigrationAgent;
  const vmplsRaw = r.raw('vmpls', 'optional');
  let vmpls = DEFAULT_POLICY.vmpls;
  if (vmplsRaw !== undefined) {
    if (!Array.isArray(vmplsRaw) || vmplsRaw.length === 0 || !vmplsRaw.every((v) => Number.isInteger(v) && v >= 0 && v <= 3))
      throw configError('POLICY_INVALID', `${where}: field "vmpls" must be a non-empty array of integers 0..3`);
    vmpls = vmplsRaw as number[];
  }
  const signingKeys = (r.strings('signingKeys', ['vcek', 'vlek'], 'optional') ?? DEFAULT_POLICY.signingKeys) as ('vcek' | 'vlek')[];
  const products = (r.strings('products', PRODUCTS, 'optional') ?? DEFAULT_POLICY.products) as AmdProduct[];
  const minTcb: Partial<Record<AmdProduct, MinTcb>> = {};
  const mt = r.object('minTcb', 'optional');
  if (mt) {
    for (const p of PRODUCTS) {
      const o = mt.object(p, 'optional');
      if (!o) continue;
      minTcb[p] = {
        bootloader: o.integer('bootloader', 0, 255), tee: o.integer('tee', 0, 255), snp: o.integer('snp', 0, 255),
        microcode: o.integer('microcode', 0, 255), fmc: p === 'Turin' ? o.integer('fmc', 0, 255) : undefined,
      };
      o.done();
    }
    mt.done();
  }
  const policy: SnpPolicy = {
    measurements, allowDebug, allowSmt, allowMigrationAgent, vmpls, signingKeys, products, minTcb,
    minGuestSvn: r.integer('minGuestSvn', 0, 0xffffffff, 'optional') ?? 0,
    reportData: r.hex('reportData', 64, 'optional'),
    hostData: r.hex('hostData', 32, 'optional'),
    idKeyDigests: r.hexList('idKeyDigests', 48, 'optional'),
    maxEvidenceAgeSeconds: r.integer('maxEvidenceAgeSeconds', 0, undefined, 'optional'),
  };
  r.done();
  return policy;
}

export interface SnpValidateContext {
  readonly product: AmdProduct;
  readonly now: Date;
  /** When the evidence was produced (e.g. the bundle's issuedAt); needed by maxEvidenceAgeSeconds. */
  readonly evidenceTime?: Date | undefined;
  /** REPORT_DATA the caller computed (key binding); takes precedence over policy.reportData. */
  readonly expectedReportData?: Uint8Array | undefined;
}

const tcbStr = (t: MinTcb | TcbVersion) =>
  `${t.fmc === undefined ? '' : `fmc ${t.fmc}/`}bl ${t.bootloader}/tee ${t.tee}/snp ${t.snp}/ucode ${t.microcode}`;

function tcbAtLeast(t: TcbVersion, min: MinTcb): boolean {
  return t.bootloader >= min.bootloader && t.tee >= min.tee && t.snp >= min.snp && t.microcode >= min.microcode && (min.fmc === undefined || (t.fmc ?? 0) >= min.fmc);
}

/** Evaluates every rule, recording a row for each; throws once if any failed (see `policyError`). */
export function validateReport(report: SnpReport, signingKey: SigningKey, policy: SnpPolicy, ctx: SnpValidateContext, checks: Checks): void {
  const failures: { code: string; msg: string }[] = [];
  const rule = (id: string, what: string, against: string, code: string, ok: boolean, passDetail: string, failDetail: string) => {
    if (ok) checks.pass(`snp.policy.${id}`, what, against, passDetail);
    else {
      checks.fail(`snp.policy.${id}`, what, against, code, failDetail);
      failures.push({ code, msg: failDetail });
    }
  };

  if (policy.measurements === 'any') checks.skip('snp.policy.measurement', 'MEASUREMENT in the allowlist', 'policy says measurements: "any"', 'policy.measurements');
  else {
    const ok = policy.measurements.some((m) => equalBytes(m, report.measurement));
    rule('measurement', 'MEASUREMENT in the allowlist', `policy.measurements (${policy.measurements.length})`, 'SNP_POLICY_MEASUREMENT', ok,
      hex(report.measurement), `MEASUREMENT ${hex(report.measurement)} is not allowed`);
  }

  rule('debug', 'GUEST POLICY.DEBUG', `policy.allowDebug = ${policy.allowDebug}`, 'SNP_POLICY_DEBUG', policy.allowDebug || !report.policy.debug,
    `DEBUG ${report.policy.debug ? 'set' : 'clear'}`, 'DEBUG is set: the host can read and write guest memory');
  // SMT shares a core's caches with the sibling thread; forbidding it means neither the guest policy allows it nor
  // the platform runs with it (PLATFORM_INFO.SMT_EN).
  const smt = [report.policy.smt ? 'GUEST POLICY.SMT set' : '', report.platformInfo.smtEnabled ? 'PLATFORM_INFO.SMT_EN set' : ''].filter(Boolean);
  rule('smt', 'SMT: GUEST POLICY.SMT and PLATFORM_INFO.SMT_EN', `policy.allowSmt = ${policy.allowSmt}`, 'SNP_POLICY_SMT', policy.allowSmt || smt.length === 0,
    smt.length ? smt.join(', ') : 'SMT off', `SMT is not forbidden: ${smt.join(', ')}`);
  rule('migrate-ma', 'GUEST POLICY.MIGRATE_MA', `policy.allowMigrationAgent = ${policy.allowMigrationAgent}`, 'SNP_POLICY_MIGRATE_MA',
    policy.allowMigrationAgent || !report.policy.migrateMa, `MIGRATE_MA ${report.policy.migrateMa ? 'set' : 'clear'}`, 'a migration agent is allowed (MIGRATE_MA set)');
  rule('vmpl', 'VMPL allowed', `policy.vmpls [${policy.vmpls.join(', ')}]`, 'SNP_POLICY_VMPL', policy.vmpls.includes(report.vmpl),
    `VMPL ${report.vmpl}`, `VMPL ${report.vmpl} is not allowed`);
  rule('signing-key', 'signing key kind allowed', `policy.signingKeys [${policy.signingKeys.join(', ')}]`, 'SNP_POLICY_SIGNING_KEY',
    signingKey !== 'none' && policy.signingKeys.includes(signingKey), signingKey.toUpperCase(), `signing key ${signingKey.toUpperCase()} is not allowed`);
  rule('product', 'product allowed', `policy.products [${policy.products.join(', ')}]`, 'SNP_POLICY_PRODUCT', policy.products.includes(ctx.product),
    ctx.product, `product ${ctx.product} is not allowed`);

  const min = policy.minTcb[ctx.product];
  if (!min) checks.skip('snp.policy.min-tcb', 'TCB at least the minimum', `policy.minTcb has no entry for ${ctx.product}`, 'policy.minTcb');
  else {
    const low = (['reportedTcb', 'currentTcb', 'committedTcb'] as const).filter((k) => !tcbAtLeast(report[k], min));
    rule('min-tcb', 'REPORTED, CURRENT and COMMITTED TCB at least the minimum', `policy.minTcb.${ctx.product} (${tcbStr(min)})`, 'SNP_POLICY_TCB', low.length === 0,
      tcbStr(report.reportedTcb), low.map((k) => `${k} ${tcbStr(report[k])} is below the minimum`).join('; '));
  }

  rule('guest-svn', 'GUEST_SVN at least the minimum', `policy.minGuestSvn = ${policy.minGuestSvn}`, 'SNP_POLICY_GUEST_SVN', report.guestSvn >= policy.minGuestSvn,
    String(report.guestSvn), `GUEST_SVN ${report.guestSvn} is below ${policy.minGuestSvn}`);

  const rd = ctx.expectedReportData ?? policy.reportData;
  if (!rd) checks.skip('snp.policy.report-data', 'REPORT_DATA equals the expected value', 'no expected REPORT_DATA given', 'policy.reportData');
  else rule('report-data', 'REPORT_DATA equals the expected value', ctx.expectedReportData ? 'caller-computed binding' : 'policy.reportData', 'SNP_POLICY_REPORT_DATA',
    equalBytes(rd, report.reportData), hex(report.reportData), `REPORT_DATA ${hex(report.reportData)} differs from the expected ${hex(rd)}`);

  if (!policy.hostData) checks.skip('snp.policy.host-data', 'HOST_DATA equals the expected value', 'policy has no hostData', 'policy.hostData');
  else rule('host-data', 'HOST_DATA equals the expected value', 'policy.hostData', 'SNP_POLICY_HOST_DATA', equalBytes(policy.hostData, report.hostData),
    hex(report.hostData), `HOST_DATA ${hex(report.hostData)} differs from ${hex(policy.hostData)}`);

  if (!policy.idKeyDigests) checks.skip('snp.policy.id-key', 'ID_KEY_DIGEST in the allowlist', 'policy has no idKeyDigests', 'policy.idKeyDigests');
  else rule('id-key', 'ID_KEY_DIGEST in the allowlist', `policy.idKeyDigests (${policy.idKeyDigests.length})`, 'SNP_POLICY_ID_KEY',
    policy.idKeyDigests.some((d) => equalBytes(d, report.idKeyDigest)), hex(report.idKeyDigest), `ID_KEY_DIGEST ${hex(report.idKeyDigest)} is not allowed`);

  if (policy.maxEvidenceAgeSeconds === undefined) checks.skip('snp.policy.age', 'evidence age at most the maximum', 'policy has no maxEvidenceAgeSeconds', 'policy.maxEvidenceAgeSeconds');
  else if (!ctx.evidenceTime) rule('age', 'evidence age at most the maximum', `policy.maxEvidenceAgeSeconds = ${policy.maxEvidenceAgeSeconds}`, 'SNP_POLICY_EVIDENCE_TIME_MISSING',
    false, '', 'the policy limits evidence age but the caller gave no evidence time');
  else {
    const age = (ctx.now.getTime() - ctx.evidenceTime.getTime()) / 1000;
    // Evidence dated in the future (beyond a second of clock skew) is as suspect as old evidence.
    rule('age', 'evidence age at most the maximum', `policy.maxEvidenceAgeSeconds = ${policy.maxEvidenceAgeSeconds}`, 'SNP_POLICY_EVIDENCE_AGE',
      age <= policy.maxEvidenceAgeSeconds && age >= -1, `${age.toFixed(0)} s old`, age < -1 ? `evidence time is ${(-age).toFixed(0)} s in the future` : `evidence is ${age.toFixed(0)} s old`);
  }

  if (failures.length > 0) {
    // One violation: its own code. Several: SNP_POLICY_VIOLATIONS; the report lists each row with its code.
    const code = failures.length === 1 ? failures[0]!.code : 'SNP_POLICY_VIOLATIONS';
    const err = rejected(code, `SEV-SNP policy: ${failures.map((f) => `${f.code}: ${f.msg}`).join('; ')}`);
    err.report = checks.report();
    throw err;
  }
}
