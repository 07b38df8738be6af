/**
 * Intel's TCB level matching for TDX (Intel QVL "QuoteVerifier" 4.1.2.4.9–.11 and .14–.17; PCS "TCB Info v3"
 * for TDX): the status Intel assigns to this platform today.
 *
 * - Platform level: the first TCB level (levels are ordered newest first) whose SGX components and PCESVN are all
 *   ≤ those of the PCK certificate selects the SGX level; the first such level whose TDX components are also ≤
 *   TEE_TCB_SVN (components 1 and 2 skipped when TEE_TCB_SVN[1], the TDX module major version, is non-zero)
 *   gives the TDX status and advisories.
 * - TDX module identity (TDX 1.5, `tdxModuleIdentities`): "TDX_<major hex>" must exist; MRSIGNERSEAM and
 *   SEAMATTRIBUTES (masked) must match; the first module level with ISVSVN ≤ TEE_TCB_SVN[0] gives the module status,
 *   converged: OutOfDate → OutOfDate / OutOfDateConfigurationNeeded, Revoked → Revoked.
 * - QE identity: MRSIGNER, ISVPRODID, masked MISCSELECT and ATTRIBUTES must match; the first level with
 *   ISVSVN ≤ the QE's ISVSVN gives the QE status, converged the same way.
 * - TDX 1.5 bodies: Intel's TD relaunch check (TDRelaunchCheck): a TD whose running module is out of date while
 *   TEE_TCB_SVN_2 (the module it would get after relaunch) reaches the latest level is "TDRelaunchAdvised".
 */
import { equalBytes } from '../bytes.ts';
import { rejected } from '../errors.ts';
import type { SgxReportBody, TdQuoteBody } from './abi.ts';
import type { PckExtensions } from './pck.ts';
import type { IsvSvnLevel, QeIdentity, TcbInfo, TcbLevel, TcbStatus, TdxTcbStatus } from './tcbinfo.ts';

export interface TcbEvaluation {
  /** Final status after converging platform, TDX module and QE statuses. */
  readonly status: TdxTcbStatus;
  readonly advisoryIds: readonly string[];
  /** The platform TCB level's own status and date. */
  readonly platformStatus: TcbStatus;
  readonly tcbDate: string;
  readonly tdxModule: { readonly id: string; readonly status: TcbStatus } | undefined;
  readonly qe: { readonly status: TcbStatus; readonly isvSvn: number; readonly tcbDate: string } | undefined;
}

function masked(a: Uint8Array, mask: Uint8Array): Uint8Array {
  return a.map((x, i) => x & mask[i]!);
}

/** Checks the TCB info belongs to this platform (FMSPC and PCE-ID of the PCK certificate). */
export function checkTcbInfoMatchesPck(tcbInfo: TcbInfo, pck: PckExtensions): void {
  if (!equalBytes(tcbInfo.fmspc, pck.fmspc)) throw rejected('TDX_TCB_INFO_MISMATCH', 'TCB info FMSPC differs from the PCK certificate');
  if (!equalBytes(tcbInfo.pceId, pck.pceId)) throw rejected('TDX_TCB_INFO_MISMATCH', 'TCB info PCE-ID differs from the PCK certificate');
}

/** TDX module identity: which identity applies and (for TDX 1.5 identities) its status. */
export function tdxModuleStatus(tcbInfo: TcbInfo, body: TdQuoteBody): { id: string; status: TcbStatus; advisoryIds: readonly string[] } | undefined {
  const isvSvn = body.teeTcbSvn[0]!;
  const major = body.teeTcbSvn[1]!;
  let expected = tcbInfo.tdxModule;
  let identity: (typeof tcbInfo.tdxModuleIdentities & object)[number] | undefined;
  if (major > 0) {
    const id = `TDX_${major.toString(16).toUpperCase().padStart(2, '0')}`;
    identity = tcbInfo.tdxModuleIdentities?.find((m) => m.id.toUpperCase() === id);
    if (!identity) throw rejected('TDX_MODULE_MISMATCH', `TCB info has no TDX module identity ${id} for TDX module version ${major}`);
    expected = identity;
  }
  if (!equalBytes(body.mrSignerSeam, expected.mrSigner)) throw rejected('TDX_MODULE_MISMATCH', 'MRSIGNERSEAM differs from the TDX module signer in the TCB info');
  if (!equalBytes(masked(body.seamAttributes, expected.attributesMask), masked(expected.attributes, expected.attributesMask)))
    throw rejected('TDX_MODULE_MISMATCH', 'SEAMATTRIBUTES differ from the TDX module attributes in the TCB info');
  if (!identity) return undefined;
  const level = identity.tcbLevels.find((l) => isvSvn >= l.isvSvn);
  if (!level) throw rejected('TDX_TCB_NOT_SUPPORTED', `no TCB level of TDX module ${identity.id} covers its ISVSVN ${isvSvn}`);
  return { id: identity.id, status: level.tcbStatus, advisoryIds: level.advisoryIds };
}

/** Intel's convergence of a platform status with an OutOfDate or Revoked module / QE status. */
export function converge(platform: TdxTcbStatus, other: TcbStatus): TdxTcbStatus {
  if (other === 'Revoked') return 'Revoked';
  if (other === 'OutOfDate') {
    if (platform === 'UpToDate' || platform === 'SWHardeningNeeded') return 'OutOfDate';
    if (platform === 'ConfigurationNeeded' || platform === 'ConfigurationAndSWHardeningNeeded') return 'OutOfDateConfigurationNeeded';
  }
  return platform;
}

/** The first level whose SGX components and PCESVN the PCK certificate reaches (Intel's "SGX TCB level"). */
export function matchSgxTcbLevel(tcbInfo: TcbInfo, pck: PckExtensions): TcbLevel | undefined {
  return tcbInfo.tcbLevels.find((l) => pck.tcb.pceSvn >= l.pceSvn && l.sgxTcbComponents.every((svn, i) => pck.tcb.sgxTcbComponents[i]! >= svn));
}

const configurationNeeded = (s: TdxTcbStatus) =>
  s === 'ConfigurationNeeded' || s === 'OutOfDateConfigurationNeeded' || s === 'ConfigurationAndSWHardeningNeeded' || s === 'TDRelaunchAdvisedConfigurationNeeded';

/**
 * Intel's TD relaunch check for TD 1.5 bodies (QVL TDRelaunchCheck, 4.1.2.4.17.4.3): the platform's SGX part is
 * fine and the QE is not out of date, the TDX status is OutOfDate only because the running TDX module is; if
 * TEE_TCB_SVN_2 (what a relaunched TD would get) reaches the latest module and microcode levels, relaunch is advised.
 */
export function tdRelaunchStatus(
  teeTcbSvn2: Uint8Array, tcbInfo: TcbInfo, sgxStatus: TcbStatus, tdxStatus: TdxTcbStatus, moduleStatus: TcbStatus | undefined, qeStatus: TcbStatus | undefined,
): TdxTcbStatus {
  if (qeStatus === 'OutOfDate' || qeStatus === 'Revoked') return tdxStatus;
  if (!['UpToDate', 'SWHardeningNeeded', 'ConfigurationNeeded', 'ConfigurationAndSWHardeningNeeded'].includes(sgxStatus)) return tdxStatus;
  if (tdxStatus !== 'OutOfDate' && tdxStatus !== 'OutOfDateConfigurationNeeded') return tdxStatus;
  if (moduleStatus !== 'OutOfDate') return tdxStatus;
  const latest = tcbInfo.tcbLevels[0]!;
  let moduleOk: boolean;
  if (teeTcbSvn2[1] === 0) moduleOk = teeTcbSvn2[0]! >= latest.tdxTcbComponents[0]!;
  else {
    const id = `TDX_${teeTcbSvn2[1]!.toString(16).toUpperCase().padStart(2, '0')}`;
    const identity = tcbInfo.tdxModuleIdentities?.find((m) => m.id.toUpperCase() === id);
    if (!identity) throw rejected('TDX_MODULE_MISMATCH', `TCB info has no TDX module identity ${id} for TEE_TCB_SVN_2`);
    const top = identity.tcbLevels[0];
    if (!top) throw rejected('TDX_TCB_NOT_SUPPORTED', `TDX module identity ${id} has no TCB levels`);
    moduleOk = teeTcbSvn2[0]! >= top.isvSvn;
  }
  if (!moduleOk || teeTcbSvn2[2]! < latest.tdxTcbComponents[2]!) return tdxStatus;
  return configurationNeeded(sgxStatus) || configurationNeeded(tdxStatus) ? 'TDRelaunchAdvisedConfigurationNeeded' : 'TDRelaunchAdvised';
}

/** Finds the platform TCB level (SGX part from the PCK certificate, TDX part from TEE_TCB_SVN). */
export function matchTcbLevel(tcbInfo: TcbInfo, pck: PckExtensions, body: TdQuoteBody): TcbLevel {
  const skip = body.teeTcbSvn[1]! > 0 ? 2 : 0;
  let sgxMatched = false;
  for (const level of tcbInfo.tcbLevels) {
    if (pck.tcb.pceSvn < level.pceSvn) continue;
    if (level.sgxTcbComponents.some((svn, i) => pck.tcb.sgxTcbComponents[i]! < svn)) continue;
    sgxMatched = true;
    if (level.tdxTcbComponents.every((svn, i) => i < skip || body.teeTcbSvn[i]! >= svn)) return level;
  }
  // Name what falls short of the lowest level, so the rejection says why.
  const lowest = tcbInfo.tcbLevels[tcbInfo.tcbLevels.length - 1]!;
  const short: string[] = [];
  if (!sgxMatched) {
    if (pck.tcb.pceSvn < lowest.pceSvn) short.push(`PCESVN is ${pck.tcb.pceSvn}, needs ${lowest.pceSvn}`);
    lowest.sgxTcbComponents.forEach((svn, i) => {
      if (pck.tcb.sgxTcbComponents[i]! < svn) short.push(`SGX TCB component ${i + 1} is ${pck.tcb.sgxTcbComponents[i]}, needs ${svn}`);
    });
  } else {
    lowest.tdxTcbComponents.forEach((svn, i) => {
      if (i >= skip && body.teeTcbSvn[i]! < svn) short.push(`TDX TCB component ${i + 1} (TEE_TCB_SVN[${i}]) is ${body.teeTcbSvn[i]}, needs ${svn}`);
    });
  }
  throw rejected('TDX_TCB_NOT_SUPPORTED', `no TCB level of the TCB info covers this platform (Intel: TCB not supported, i.e. older than every listed level)${short.length ? `; against the lowest level: ${short.join('; ')}` : ''}`);
}

/** QE identity check; returns the QE's TCB level. */
export function checkQeIdentity(qeIdentity: QeIdentity, qe: SgxReportBody): IsvSvnLevel {
  if (!equalBytes(qe.mrSigner, qeIdentity.mrSigner)) throw rejected('TDX_QE_IDENTITY_MISMATCH', 'QE MRSIGNER differs from the QE identity');
  if (qe.isvProdId !== qeIdentity.isvProdId) throw rejected('TDX_QE_IDENTITY_MISMATCH', `QE ISVPRODID ${qe.isvProdId} differs from the QE identity (${qeIdentity.isvProdId})`);
  // As Intel's QVL (4.1.2.9.5–6): the report's value under the mask must equal the identity's value as given.
  if (((qe.miscSelect & qeIdentity.miscSelectMask) >>> 0) !== qeIdentity.miscSelect)
    throw rejected('TDX_QE_IDENTITY_MISMATCH', 'QE MISCSELECT (masked) differs from the QE identity');
  if (!equalBytes(masked(qe.attributes, qeIdentity.attributesMask), qeIdentity.attributes))
    throw rejected('TDX_QE_IDENTITY_MISMATCH', 'QE ATTRIBUTES (masked) differ from the QE identity');
  const level = qeIdentity.tcbLevels.find((l) => qe.isvSvn >= l.isvSvn);
  if (!level) throw rejected('TDX_TCB_NOT_SUPPORTED', `no QE identity TCB level covers QE ISVSVN ${qe.isvSvn}`);
  return level;
}
