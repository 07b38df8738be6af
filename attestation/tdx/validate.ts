/**
 * TDX policy as data (docs/design.md §3 "validate"): a JSON document read strictly with `PolicyReader`, checked against
 * the verified quote and TCB evaluation. Every rule gets a report row and all violations are reported together.
 *
 * TDATTRIBUTES bits per Intel TDX Module ABI spec ("TDATTRIBUTES"): bit 0 DEBUG, bit 28 SEPT_VE_DISABLE,
 * bit 30 PKS, bit 31 KL, bit 63 PERFMON (the 8 bytes are a little-endian u64).
 */
import { equalBytes, hex } from '../bytes.ts';
import { rejected } from '../errors.ts';
import { PolicyReader } from '../policy.ts';
import type { Checks } from '../report.ts';
import type { TdQuoteBody } from './abi.ts';
import type { TcbEvaluation } from './tcb.ts';
import { TDX_TCB_RESULTS, type TdxTcbStatus } from './tcbinfo.ts';

export const TD_ATTRIBUTE_BITS = { debug: 0, septVeDisable: 28, pks: 30, kl: 31, perfmon: 63 } as const;
type AttributeRule = Exclude<keyof typeof TD_ATTRIBUTE_BITS, 'debug'>;

export interface TdxPolicy {
  readonly allowedTcbStatuses: readonly TdxTcbStatus[];
  /** Accept a quote verified without collateral, whose TCB status is therefore unknown (default false). */
  readonly allowUnknownTcbStatus?: boolean;
  /** Advisory ids tolerated in the matched TCB levels; any other id is a violation. */
  readonly allowedAdvisoryIds: readonly string[];
  readonly mrTd?: readonly Uint8Array[];
  readonly rtmr?: readonly [(readonly Uint8Array[])?, (readonly Uint8Array[])?, (readonly Uint8Array[])?, (readonly Uint8Array[])?];
  readonly mrSeam?: readonly Uint8Array[];
  readonly mrServiceTd?: readonly Uint8Array[];
  readonly mrConfigId?: Uint8Array;
  readonly mrOwner?: Uint8Array;
  readonly mrOwnerConfig?: Uint8Array;
  /** DEBUG is forbidden unless this is true. */
  readonly allowDebug: boolean;
  /** Required values of other TDATTRIBUTES bits. */
  readonly tdAttributes?: Readonly<Partial<Record<AttributeRule, boolean>>>;
  readonly xfam?: Uint8Array;
  readonly reportData?: Uint8Array;
  /** Component-wise minimum of TEE_TCB_SVN. */
  readonly minTeeTcbSvn?: Uint8Array;
  /** Maximum age of the TCB info (now − issueDate). */
  readonly maxCollateralAgeSeconds?: number;
}

export const DEFAULT_TDX_POLICY: TdxPolicy = { allowedTcbStatuses: ['UpToDate'], allowedAdvisoryIds: [], allowDebug: false };

/** Reads a policy document; unknown fields, wrong lengths and wrong types are configuration errors. */
export function tdxPolicyFromJson(doc: unknown, where = 'tdx policy'): TdxPolicy {
  const r = new PolicyReader(doc, where);
  const rtmr = [0, 1, 2, 3].map((i) => r.hexList(`rtmr${i}`, 48, 'optional'));
  const attrs = r.object('tdAttributes', 'optional');
  let tdAttributes: Partial<Record<AttributeRule, boolean>> | undefined;
  let allowDebug = false;
  if (attrs) {
    allowDebug = attrs.boolean('allowDebug', 'optional') ?? false;
    tdAttributes = {};
    for (const k of ['septVeDisable', 'pks', 'kl', 'perfmon'] as const) {
      const v = attrs.boolean(k, 'optional');
      if (v !== undefined) tdAttributes[k] = v;
    }
    attrs.done();
  }
  const p: TdxPolicy = {
    allowedTcbStatuses: (r.strings('allowedTcbStatuses', TDX_TCB_RESULTS, 'optional') as TdxTcbStatus[] | undefined) ?? DEFAULT_TDX_POLICY.allowedTcbStatuses,
    allowUnknownTcbStatus: r.boolean('allowUnknownTcbStatus', 'optional') ?? false,
    allowedAdvisoryIds: r.strings('allowedAdvisoryIds', undefined, 'optional') ?? [],
    mrTd: r.hexList('mrTd', 48, 'optional'),
    rtmr: rtmr.some((x) => x) ? (rtmr as unknown as TdxPolicy['rtmr']) : undefined,
    mrSeam: r.hexList('mrSeam', 48, 'optional'),
    mrServiceTd: r.hexList('mrServiceTd', 48, 'optional'),
    mrConfigId: r.hex('mrConfigId', 48, 'optional'),
    mrOwner: r.hex('mrOwner', 48, 'optional'),
    mrOwnerConfig: r.hex('mrOwnerConfig', 48, 'optional'),
    allowDebug,
    tdAttributes,
    xfam: r.hex('xfam', 8, 'optional'),
    reportData: r.hex('reportData', 64, 'optional'),
    minTeeTcbSvn: r.hex('minTeeTcbSvn', 16, 'optional'),
    maxCollateralAgeSeconds: r.integer('maxCollateralAgeSeconds', 0, undefined, 'optional'),
  };
  r.done();
  return p;
}

function bit(attrs: Uint8Array, n: number): boolean {
  return ((attrs[n >> 3]! >> (n & 7)) & 1) === 1;
}

export interface ValidationInput {
  readonly body: TdQuoteBody;
  /** Undefined when the quote was verified without collateral: the TCB status is unknown. */
  readonly tcb: TcbEvaluation | undefined;
  readonly tcbInfoIssueDate: Date | undefined;
  readonly now: Date;
}

/**
 * Records one row per rule in `checks` (a skip row for a rule the policy does not set) and throws
 * TDX_POLICY_VIOLATION (with every failing row in the report) if any rule fails. Each row carries its own code,
 * e.g. TDX_POLICY_DEBUG.
 */
export function validateTdx(input: ValidationInput, policy: TdxPolicy, checks: Checks): void {
  const { body, tcb } = input;
  let failures = 0;
  const rule = (id: string, what: string, against: string, code: string, ok: boolean, detail: string) => {
    if (ok) checks.pass(`tdx.policy.${id}`, what, against, detail);
    else {
      failures++;
      checks.fail(`tdx.policy.${id}`, what, against, code, detail);
    }
  };
  const oneOf = (v: Uint8Array, list: readonly Uint8Array[]) => list.some((x) => equalBytes(x, v));
  // A rule the policy does not set is recorded as a skip, so the report names every check, run or not.
  const skip = (id: string, what: string) => checks.skip(`tdx.policy.${id}`, what, `policy has no ${id}`, `policy.${id}`);
  const allow = (id: string, what: string, code: string, v: Uint8Array | undefined, list: readonly Uint8Array[] | undefined) => {
    if (!list) return skip(id, what);
    rule(id, what, `policy.${id} (${list.length} allowed)`, code, v !== undefined && oneOf(v, list), v ? hex(v) : 'absent in this quote');
  };
  const exact = (id: string, what: string, code: string, v: Uint8Array, want: Uint8Array | undefined) => {
    if (!want) return skip(id, what);
    rule(id, what, `policy.${id}`, code, equalBytes(v, want), equalBytes(v, want) ? hex(v) : `${hex(v)} (policy wants ${hex(want)})`);
  };

  if (!tcb) {
    rule('tcbStatus', 'TCB status is allowed', `policy.allowUnknownTcbStatus = ${policy.allowUnknownTcbStatus === true}`, 'TDX_POLICY_TCB_STATUS',
      policy.allowUnknownTcbStatus === true, 'Unknown: no collateral, the platform TCB was not evaluated');
    checks.skip('tdx.policy.advisoryIds', 'advisory ids are allowed', 'no collateral: advisories unknown', 'policy.allowedAdvisoryIds');
  } else {
    rule('tcbStatus', 'TCB status is allowed', `policy.allowedTcbStatuses [${policy.allowedTcbStatuses.join(', ')}]`, 'TDX_POLICY_TCB_STATUS',
      policy.allowedTcbStatuses.includes(tcb.status), tcb.status);
    const unexpected = tcb.advisoryIds.filter((a) => !policy.allowedAdvisoryIds.includes(a));
    rule('advisoryIds', 'advisory ids are allowed', 'policy.allowedAdvisoryIds', 'TDX_POLICY_ADVISORY', unexpected.length === 0,
      unexpected.length === 0 ? (tcb.advisoryIds.join(', ') || 'none') : `not allowed: ${unexpected.join(', ')}`);
  }
  allow('mrTd', 'MRTD is in the allowlist', 'TDX_POLICY_MRTD', body.mrTd, policy.mrTd);
  for (let i = 0; i < 4; i++) allow(`rtmr${i}`, `RTMR${i} is in the allowlist`, 'TDX_POLICY_RTMR', body.rtmr[i], policy.rtmr?.[i]);
  allow('mrSeam', 'MRSEAM is in the allowlist', 'TDX_POLICY_MRSEAM', body.mrSeam, policy.mrSeam);
  allow('mrServiceTd', 'MRSERVICETD is in the allowlist', 'TDX_POLICY_MRSERVICETD', body.mrServiceTd, policy.mrServiceTd);
  exact('mrConfigId', 'MRCONFIGID', 'TDX_POLICY_MRCONFIGID', body.mrConfigId, policy.mrConfigId);
  exact('mrOwner', 'MROWNER', 'TDX_POLICY_MROWNER', body.mrOwner, policy.mrOwner);
  exact('mrOwnerConfig', 'MROWNERCONFIG', 'TDX_POLICY_MROWNERCONFIG', body.mrOwnerConfig, policy.mrOwnerConfig);
  const debug = bit(body.tdAttributes, TD_ATTRIBUTE_BITS.debug);
  if (policy.allowDebug) checks.skip('tdx.policy.debug', 'TD is not in debug mode', 'policy.tdAttributes.allowDebug is true');
  else rule('debug', 'TD is not in debug mode (TDATTRIBUTES.DEBUG clear)', 'policy.tdAttributes.allowDebug = false', 'TDX_POLICY_DEBUG', !debug,
    debug ? 'DEBUG is set: the host can read and change TD memory' : 'DEBUG clear');
  const attributeRules = Object.entries(policy.tdAttributes ?? {}) as [AttributeRule, boolean][];
  if (attributeRules.length === 0)
    checks.skip('tdx.policy.tdAttributes', 'TDATTRIBUTES bits other than DEBUG (SEPT_VE_DISABLE, PKS, KL, PERFMON)', 'policy sets no TDATTRIBUTES rule besides allowDebug', 'policy.tdAttributes');
  for (const [k, want] of attributeRules) {
    const got = bit(body.tdAttributes, TD_ATTRIBUTE_BITS[k]);
    rule(`tdAttributes.${k}`, `TDATTRIBUTES.${k} is ${want ? 'set' : 'clear'}`, `policy.tdAttributes.${k}`, 'TDX_POLICY_TD_ATTRIBUTES', got === want, `${k} is ${got ? 'set' : 'clear'}`);
  }
  exact('xfam', 'XFAM', 'TDX_POLICY_XFAM', body.xfam, policy.xfam);
  exact('reportData', 'REPORTDATA binds the expected value', 'TDX_POLICY_REPORT_DATA', body.reportData, policy.reportData);
  if (!policy.minTeeTcbSvn) skip('minTeeTcbSvn', 'TEE_TCB_SVN is at least the policy minimum (component-wise)');
  else {
    const min = policy.minTeeTcbSvn;
    const low = [...body.teeTcbSvn].map((v, i) => (v < min[i]! ? i : -1)).filter((i) => i >= 0);
    rule('minTeeTcbSvn', 'TEE_TCB_SVN is at least the policy minimum (component-wise)', 'policy.minTeeTcbSvn', 'TDX_POLICY_TEE_TCB_SVN', low.length === 0,
      low.length === 0 ? hex(body.teeTcbSvn) : `components ${low.join(', ')} below minimum ${hex(min)}`);
  }
  if (policy.maxCollateralAgeSeconds === undefined)
    checks.skip('tdx.policy.maxCollateralAge', 'TCB info is recent enough', 'policy has no maxCollateralAgeSeconds', 'policy.maxCollateralAgeSeconds');
  else if (!input.tcbInfoIssueDate)
    rule('maxCollateralAge', 'TCB info is recent enough', `policy.maxCollateralAgeSeconds = ${policy.maxCollateralAgeSeconds}`, 'TDX_POLICY_COLLATERAL_AGE', false, 'no collateral');
  else {
    const age = Math.floor((input.now.getTime() - input.tcbInfoIssueDate.getTime()) / 1000);
    rule('maxCollateralAge', 'TCB info is recent enough', `policy.maxCollateralAgeSeconds = ${policy.maxCollateralAgeSeconds}`, 'TDX_POLICY_COLLATERAL_AGE',
      age <= policy.maxCollateralAgeSeconds, `issued ${age} s before now`);
  }
  if (failures > 0) {
    const err = rejected('TDX_POLICY_VIOLATION', `TDX policy rejected the quote: ${checks.failures.map((f) => `${f.code} (${f.detail})`).join('; ')}`);
    err.report = checks.report();
    throw err;
  }
}
