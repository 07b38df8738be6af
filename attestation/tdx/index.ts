/**
 * Intel TDX quote verification (docs/design.md §3): parse (abi.ts) → verify (pck.ts, verify.ts, collateral.ts) →
 * TCB level (tcb.ts) → policy (validate.ts), composed by `verifyTdx`. Every step is a row of the verification
 * report; the first failing signature/chain step throws, policy violations are all reported together.
 *
 * Order follows Intel's QVL (QuoteVerifier 4.1.2.4.x): PCK chain and CRLs, TCB info for the PCK's FMSPC, TDX module
 * identity, QE report signature and REPORTDATA binding, QE identity, quote signature, TCB level.
 */
import { equalBytes, hex } from '../bytes.ts';
import { GmError, collateralError, configError, rejected } from '../errors.ts';
import { Checks, type VerificationReport } from '../report.ts';
import type { TrustStore } from '../trust.ts';
import type { Certificate } from '../x509/cert.ts';
import { assertNotRevoked } from '../x509/crl.ts';
import { type TdxQuote, parseQuote } from './abi.ts';
import { EV_NO_ACTION, verifyEventLog } from './ccel.ts';
import { type CollateralGetter, type TdxCollateral, clearCollateralCaches, verifiedCrl, verifyQeIdentity, verifyTcbInfo } from './collateral.ts';
import { type PckCaType, clearPckCache, verifyPckChain } from './pck.ts';
import { checkQeIdentity, checkTcbInfoMatchesPck, converge, matchSgxTcbLevel, matchTcbLevel, tdRelaunchStatus, tdxModuleStatus } from './tcb.ts';
import type { QeIdentity, TcbStatus, TdxTcbStatus } from './tcbinfo.ts';
import { DEFAULT_TDX_POLICY, type TdxPolicy, validateTdx } from './validate.ts';
import { type EcdsaP256Verifier, clearQeSignatureCache, verifyQeReportData, verifyQeReportSignature, verifyQuoteSignature } from './verify.ts';
export type { EcdsaP256Verifier } from './verify.ts';

export type { TdxCollateral, CollateralGetter, CollateralRequest, SignedCollateral } from './collateral.ts';
export type { CollateralAsServed } from './collateral.ts';
export { collateralFromDcapQvl, collateralFromServed, servedFromCollateral, signedFromPcs, signedFromPcsDer } from './collateral.ts';
export type { TdxPolicy } from './validate.ts';
export { DEFAULT_TDX_POLICY, tdxPolicyFromJson } from './validate.ts';
export type { TcbStatus, TdxTcbStatus } from './tcbinfo.ts';
export { parseQuote } from './abi.ts';

/** Forgets verified PCK chains, collateral and CRL signatures and QE report signatures (the cold path). */
export function clearTdxCaches(): void {
  clearPckCache();
  clearCollateralCaches();
  clearQeSignatureCache();
}

export interface VerifyTdxOptions {
  readonly now: Date;
  /** Pinned anchors; the Intel SGX Root CA is `get('intel-sgx-root')`. */
  readonly trustStore?: TrustStore;
  /** Explicit roots instead of the trust store (a caller that allowed sim passes the sim root here). */
  readonly roots?: readonly Certificate[];
  /**
   * The collateral, or a getter asked by FMSPC once the PCK certificate is verified. `null` says explicitly that there
   * is none: everything that needs no collateral is verified (PCK chain to the root, QE report signature, attestation
   * key binding, quote signature), revocation and TCB rows are SKIP "no collateral", the TCB status is `Unknown`, and
   * only a policy with `allowUnknownTcbStatus` accepts the quote.
   */
  readonly collateral: TdxCollateral | CollateralGetter | null;
  /** Defaults to DEFAULT_TDX_POLICY (UpToDate only, no advisories, DEBUG forbidden). */
  readonly policy?: TdxPolicy;
  /** Root CA CRL and PCK CRL are required unless this is explicitly false. */
  readonly checkRevocation?: boolean;
  /** QE identity is required unless this is explicitly false. */
  readonly requireQeIdentity?: boolean;
  /** REPORTDATA the caller expects (e.g. the key binding of docs/design.md §4); checked in its own row, independent of policy. */
  readonly expectedReportData?: Uint8Array;
  /** Verifier for the per-quote attestation-key signature (default WebCrypto; Node callers may pass node:crypto). */
  readonly ecdsaP256?: EcdsaP256Verifier;
  /** CCEL event log (and ACPI CCEL table) to replay against RTMR0..2; each event becomes a report row. */
  readonly eventLog?: { readonly log: Uint8Array; readonly table?: Uint8Array };
}

export interface TdxClaims {
  readonly platform: 'tdx';
  readonly version: 4 | 5;
  readonly bodyType: 2 | 3;
  readonly teeTcbSvn: Uint8Array;
  readonly teeTcbSvn2: Uint8Array | undefined;
  readonly mrSeam: Uint8Array;
  readonly mrSignerSeam: Uint8Array;
  readonly seamAttributes: Uint8Array;
  readonly tdAttributes: Uint8Array;
  readonly xfam: Uint8Array;
  readonly mrTd: Uint8Array;
  readonly mrConfigId: Uint8Array;
  readonly mrOwner: Uint8Array;
  readonly mrOwnerConfig: Uint8Array;
  readonly rtmr: readonly Uint8Array[];
  readonly reportData: Uint8Array;
  readonly mrServiceTd: Uint8Array | undefined;
  /** Lower-case hex. */
  readonly fmspc: string;
  readonly pceId: string;
  readonly pceSvn: number;
  readonly cpuSvn: string;
  readonly pckCa: PckCaType;
  /** `Unknown` when verified without collateral. */
  readonly tcbStatus: TdxTcbStatus | 'Unknown';
  readonly advisoryIds: readonly string[];
  readonly tcbDate: string | undefined;
  readonly tdxModule: { readonly id: string; readonly status: TcbStatus } | undefined;
  readonly qe: { readonly isvSvn: number; readonly status: TcbStatus | undefined };
  readonly tcbEvaluationDataNumber: number | undefined;
  readonly collateralIssueDate: Date | undefined;
  readonly collateralNextUpdate: Date | undefined;
  /** Subject of the root the chains ended in (the pinned Intel SGX Root CA, or a sim root). */
  readonly root: string;
  /** Replayed CCEL events, when an event log was given. */
  readonly eventLog: readonly { readonly rtmr: number; readonly type: string; readonly sha384: string }[] | undefined;
}

export interface TdxVerification {
  readonly claims: TdxClaims;
  readonly report: VerificationReport;
}

/** A started check whose failure is surfaced only when its result is asked for (no unhandled rejection meanwhile). */
function settle(p: Promise<void>): () => Promise<void> {
  const done = p.then(() => undefined, (e: unknown) => e);
  return async () => {
    const e = await done;
    if (e !== undefined) throw e;
  };
}

function rootOf(options: VerifyTdxOptions): Certificate {
  if (options.roots) {
    const r = options.roots[0];
    if (!r) throw configError('TRUST_ANCHOR_MISSING', 'verifyTdx: `roots` is empty');
    return r;
  }
  if (!options.trustStore) throw configError('TRUST_ANCHOR_MISSING', 'verifyTdx: pass a trust store or explicit roots');
  return options.trustStore.get('intel-sgx-root');
}

/** Verifies a TDX quote (v4 or v5) end to end. Throws a GmError with the report so far on any failure. */
/** Intel SGX/TDX Quoting Enclave vendor id (Intel TDX DCAP Quote Generation Library, quote header QE_VENDOR_ID). */
const INTEL_QE_VENDOR_ID_HEX = '939a7233f79c4ca9940a0db3957f0607';

export async function verifyTdx(quoteBytes: Uint8Array, options: VerifyTdxOptions): Promise<TdxVerification> {
  const { now } = options;
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw configError('BAD_OPTIONS', 'verifyTdx: options.now must be a valid Date');
  const checks = new Checks('Intel TDX quote');
  const root = rootOf(options);
  const rootName = root.subject.text;

  const quote: TdxQuote = checks.runSync('tdx.quote.parse', 'quote parses (v4/v5, ECDSA P-256, TDX, exact lengths)', undefined, () => parseQuote(quoteBytes),
    (q) => `v${q.header.version}, body type ${q.body.bodyType}${q.padding ? `, ${q.padding} zero padding bytes` : ''}`);
  // Intel's QVL accepts only quotes from Intel's Quoting Enclave (QE_VENDOR_ID 939a7233-f79c-4ca9-940a-0db3957f0607).
  checks.runSync('tdx.quote.qeVendor', 'QE vendor id is Intel\'s Quoting Enclave', INTEL_QE_VENDOR_ID_HEX, () => {
    if (hex(quote.header.qeVendorId) !== INTEL_QE_VENDOR_ID_HEX) throw rejected('TDX_QE_VENDOR', `QE vendor id ${hex(quote.header.qeVendorId)} is not Intel's (${INTEL_QE_VENDOR_ID_HEX})`);
  });
  // The two ECDSA verifies of the quote itself start now and run concurrently (WebCrypto works off the main thread);
  // their results are consumed, and reported, in Intel's order below.
  const quoteSignature = settle(verifyQuoteSignature(quote, options.ecdsaP256));
  const pck = await checks.run('tdx.pck.chain', 'PCK certificate chain (ECDSA P-256) to the Intel SGX Root CA', rootName,
    () => verifyPckChain(quote.certification.pckCertChain, root, now), (v) => `${v.caType} CA, FMSPC ${hex(v.extensions.fmspc)}`);
  const ext = pck.extensions;
  const qeSignature = settle(verifyQeReportSignature(quote, pck.leaf));
  if (options.collateral === null) return withoutCollateral(quote, pck, rootName, quoteSignature, qeSignature, options, checks);

  const given = options.collateral;
  const getter = typeof given === 'function' ? given : undefined;
  const collateral: TdxCollateral = await checks.run('tdx.collateral.get', 'collateral for this FMSPC', getter ? 'collateral getter' : 'collateral given',
    async () => {
      let c: TdxCollateral | undefined;
      try {
        c = getter ? await getter({ fmspc: hex(ext.fmspc), pceId: hex(ext.pceId), ca: pck.caType }) : (given as TdxCollateral);
      } catch (e) {
        if (e instanceof GmError) throw e;
        throw collateralError('TDX_COLLATERAL_UNAVAILABLE', `the collateral getter failed for FMSPC ${hex(ext.fmspc)}`, { cause: e });
      }
      if (!c?.tcbInfo) throw collateralError('TDX_COLLATERAL_MISSING', `no TCB info for FMSPC ${hex(ext.fmspc)}`);
      return c;
    });

  if (options.checkRevocation === false) {
    checks.skip('tdx.revocation.root', 'Intel SGX Root CA CRL', 'checkRevocation is false');
    checks.skip('tdx.revocation.pck', 'PCK CA CRL', 'checkRevocation is false');
  } else {
    await checks.run('tdx.revocation.root', 'root CA CRL signed by the root, fresh; PCK CA not revoked', rootName, async () => {
      if (!collateral.rootCaCrl) throw collateralError('TDX_CRL_MISSING', 'the Intel SGX Root CA CRL is missing from the collateral');
      const crl = await verifiedCrl(collateral.rootCaCrl, root, now);
      assertNotRevoked(pck.intermediate, crl);
    });
    await checks.run('tdx.revocation.pck', 'PCK CRL signed by the PCK CA, fresh; PCK certificate not revoked', pck.intermediate.subject.text, async () => {
      if (!collateral.pckCrl) throw collateralError('TDX_CRL_MISSING', 'the PCK CRL is missing from the collateral');
      const crl = await verifiedCrl(collateral.pckCrl, pck.intermediate, now);
      assertNotRevoked(pck.leaf, crl);
    });
  }

  const tcbInfo = await checks.run('tdx.collateral.tcbInfo', 'TCB info signed by Intel SGX TCB Signing (chained to the root), within issueDate..nextUpdate', rootName,
    async () => {
      const v = await verifyTcbInfo(collateral.tcbInfo, root, now);
      if (options.checkRevocation !== false && collateral.rootCaCrl) assertNotRevoked(v.signer, await verifiedCrl(collateral.rootCaCrl, root, now));
      return v.tcbInfo;
    }, (t) => `FMSPC ${hex(t.fmspc)}, tcbEvaluationDataNumber ${t.tcbEvaluationDataNumber}, next update ${t.nextUpdate.toISOString()}`);
  checks.runSync('tdx.tcb.platform', 'TCB info is for this platform (FMSPC, PCE-ID)', 'PCK certificate SGX extensions', () => checkTcbInfoMatchesPck(tcbInfo, ext));
  const module = checks.runSync('tdx.tcb.module', 'TDX module identity (MRSIGNERSEAM, SEAMATTRIBUTES, module TCB level)', 'TCB info tdxModule / tdxModuleIdentities',
    () => tdxModuleStatus(tcbInfo, quote.body), (m) => (m ? `${m.id}: ${m.status}` : 'TDX 1.0 module identity matches'));

  await checks.run('tdx.qe.signature', 'QE report signed by the PCK key', 'PCK leaf', () => qeSignature());
  await checks.run('tdx.qe.reportData', 'QE REPORTDATA = SHA-256(attestation key ‖ QE auth data) ‖ 0^32', undefined, () => verifyQeReportData(quote));

  let qeIdentity: QeIdentity | undefined;
  if (options.requireQeIdentity === false && !collateral.qeIdentity) {
    checks.skip('tdx.collateral.qeIdentity', 'QE identity', 'requireQeIdentity is false and no QE identity was given');
  } else {
    qeIdentity = await checks.run('tdx.collateral.qeIdentity', 'QE identity signed by Intel SGX TCB Signing, within issueDate..nextUpdate', rootName, async () => {
      if (!collateral.qeIdentity) throw collateralError('TDX_COLLATERAL_MISSING', 'the QE identity is missing from the collateral');
      const v = await verifyQeIdentity(collateral.qeIdentity, root, now);
      if (options.checkRevocation !== false && collateral.rootCaCrl) assertNotRevoked(v.signer, await verifiedCrl(collateral.rootCaCrl, root, now));
      return v.qeIdentity;
    });
  }
  const qeLevel = qeIdentity
    ? checks.runSync('tdx.qe.identity', 'QE matches the QE identity (MRSIGNER, ISVPRODID, MISCSELECT, ATTRIBUTES) and its ISVSVN has a TCB level', 'QE identity',
      () => checkQeIdentity(qeIdentity, quote.certification.qeReport), (l) => `ISVSVN ${quote.certification.qeReport.isvSvn}: ${l.tcbStatus}`)
    : undefined;

  await checks.run('tdx.quote.signature', 'quote (header ‖ body) signed by the attestation key', 'QE-certified attestation key', () => quoteSignature());

  const events = await bindingAndEvents(quote, options, checks);

  const level = checks.runSync('tdx.tcb.level', 'platform TCB level (SGX components + PCESVN from the PCK, TDX components from TEE_TCB_SVN)', 'TCB info tcbLevels',
    () => matchTcbLevel(tcbInfo, ext, quote.body), (l) => `${l.tcbStatus} (tcbDate ${l.tcbDate})`);
  let status: TdxTcbStatus = level.tcbStatus;
  if (module) status = converge(status, module.status);
  if (quote.body.teeTcbSvn2 && status !== 'Revoked') {
    const sgx = matchSgxTcbLevel(tcbInfo, ext)!; // exists: matchTcbLevel found a level with this SGX part
    status = tdRelaunchStatus(quote.body.teeTcbSvn2, tcbInfo, sgx.tcbStatus, status, module?.status, qeLevel?.tcbStatus);
  }
  if (qeLevel) status = converge(status, qeLevel.tcbStatus);
  const advisoryIds = [...new Set([...level.advisoryIds, ...(module?.advisoryIds ?? []), ...(qeLevel?.advisoryIds ?? [])])];
  checks.pass('tdx.tcb.status', 'TCB status (platform, TDX module and QE converged)', 'Intel TCB info', `${status}${advisoryIds.length ? `; advisories ${advisoryIds.join(', ')}` : '; no advisories'}`);

  const b = quote.body;
  validateTdx({ body: b, tcb: { status, advisoryIds, platformStatus: level.tcbStatus, tcbDate: level.tcbDate, tdxModule: module, qe: qeLevel ? { status: qeLevel.tcbStatus, isvSvn: quote.certification.qeReport.isvSvn, tcbDate: qeLevel.tcbDate } : undefined }, tcbInfoIssueDate: tcbInfo.issueDate, now },
    options.policy ?? DEFAULT_TDX_POLICY, checks);

  const claims: TdxClaims = {
    platform: 'tdx', version: quote.header.version, bodyType: b.bodyType, teeTcbSvn: b.teeTcbSvn, teeTcbSvn2: b.teeTcbSvn2, mrSeam: b.mrSeam,
    mrSignerSeam: b.mrSignerSeam, seamAttributes: b.seamAttributes, tdAttributes: b.tdAttributes, xfam: b.xfam, mrTd: b.mrTd, mrConfigId: b.mrConfigId,
    mrOwner: b.mrOwner, mrOwnerConfig: b.mrOwnerConfig, rtmr: b.rtmr, reportData: b.reportData, mrServiceTd: b.mrServiceTd,
    fmspc: hex(ext.fmspc), pceId: hex(ext.pceId), pceSvn: ext.tcb.pceSvn, cpuSvn: hex(ext.tcb.cpuSvn), pckCa: pck.caType,
    tcbStatus: status, advisoryIds, tcbDate: level.tcbDate, tdxModule: module ? { id: module.id, status: module.status } : undefined,
    qe: { isvSvn: quote.certification.qeReport.isvSvn, status: qeLevel?.tcbStatus }, tcbEvaluationDataNumber: tcbInfo.tcbEvaluationDataNumber,
    collateralIssueDate: tcbInfo.issueDate, collateralNextUpdate: tcbInfo.nextUpdate, root: rootName, eventLog: events,
  };
  return { claims, report: checks.report() };
}

/** The caller's REPORTDATA binding and the CCEL replay: rows that need the verified quote, not the collateral. */
async function bindingAndEvents(quote: TdxQuote, options: VerifyTdxOptions, checks: Checks): Promise<TdxClaims['eventLog']> {
  if (options.expectedReportData) {
    const want = options.expectedReportData;
    checks.runSync('tdx.reportData', 'REPORTDATA equals the expected binding', 'caller', () => {
      if (!equalBytes(quote.body.reportData, want)) throw rejected('TDX_REPORT_DATA_MISMATCH', 'REPORTDATA differs from the expected value (key binding or nonce)');
    });
  }
  if (!options.eventLog) return undefined;
  const { log, table } = options.eventLog;
  const replay = await checks.run('tdx.ccel.replay', 'CCEL event log replays to the quote\'s RTMR0..2 (SHA-384 extend)', 'quote RTMR0..2',
    () => verifyEventLog(quote.body.rtmr, log, table), (r) => `${r.events.length} events`);
  const events = replay.events.filter((e) => e.eventType !== EV_NO_ACTION).map((e) => ({ rtmr: e.mrIndex - 1, type: e.eventTypeName, sha384: hex(e.sha384!) }));
  for (const [i, e] of events.entries()) checks.pass(`tdx.ccel.event.${i + 1}`, `${e.type} extends RTMR${e.rtmr}`, undefined, e.sha384);
  return events;
}

const NO_COLLATERAL = 'no collateral';

/**
 * `collateral: null`: the signature rows run as with collateral; every row that needs Intel's collateral is a SKIP
 * saying so, the TCB status is Unknown, and the policy decides (validate.ts `allowUnknownTcbStatus`).
 */
async function withoutCollateral(quote: TdxQuote, pck: Awaited<ReturnType<typeof verifyPckChain>>, rootName: string, quoteSignature: () => Promise<void>,
  qeSignature: () => Promise<void>, options: VerifyTdxOptions, checks: Checks): Promise<TdxVerification> {
  const ext = pck.extensions;
  checks.skip('tdx.collateral.get', 'collateral for this FMSPC', `${NO_COLLATERAL} given (FMSPC ${hex(ext.fmspc)})`);
  checks.skip('tdx.revocation.root', 'Intel SGX Root CA CRL', `${NO_COLLATERAL}: revocation not checked`);
  checks.skip('tdx.revocation.pck', 'PCK CA CRL', `${NO_COLLATERAL}: revocation not checked`);
  checks.skip('tdx.collateral.tcbInfo', 'TCB info signed by Intel SGX TCB Signing', NO_COLLATERAL);
  checks.skip('tdx.tcb.module', 'TDX module identity (MRSIGNERSEAM, SEAMATTRIBUTES, module TCB level)', NO_COLLATERAL);
  await checks.run('tdx.qe.signature', 'QE report signed by the PCK key', 'PCK leaf', () => qeSignature());
  await checks.run('tdx.qe.reportData', 'QE REPORTDATA = SHA-256(attestation key ‖ QE auth data) ‖ 0^32', undefined, () => verifyQeReportData(quote));
  checks.skip('tdx.collateral.qeIdentity', 'QE identity', NO_COLLATERAL);
  await checks.run('tdx.quote.signature', 'quote (header ‖ body) signed by the attestation key', 'QE-certified attestation key', () => quoteSignature());
  const events = await bindingAndEvents(quote, options, checks);
  checks.skip('tdx.tcb.status', 'TCB status (platform, TDX module and QE converged)', `${NO_COLLATERAL}: TCB status unknown`, 'Intel TCB info');
  const b = quote.body;
  validateTdx({ body: b, tcb: undefined, tcbInfoIssueDate: undefined, now: options.now }, options.policy ?? DEFAULT_TDX_POLICY, checks);
  const claims: TdxClaims = {
    platform: 'tdx', version: quote.header.version, bodyType: b.bodyType, teeTcbSvn: b.teeTcbSvn, teeTcbSvn2: b.teeTcbSvn2, mrSeam: b.mrSeam,
    mrSignerSeam: b.mrSignerSeam, seamAttributes: b.seamAttributes, tdAttributes: b.tdAttributes, xfam: b.xfam, mrTd: b.mrTd, mrConfigId: b.mrConfigId,
    mrOwner: b.mrOwner, mrOwnerConfig: b.mrOwnerConfig, rtmr: b.rtmr, reportData: b.reportData, mrServiceTd: b.mrServiceTd,
    fmspc: hex(ext.fmspc), pceId: hex(ext.pceId), pceSvn: ext.tcb.pceSvn, cpuSvn: hex(ext.tcb.cpuSvn), pckCa: pck.caType,
    tcbStatus: 'Unknown', advisoryIds: [], tcbDate: undefined, tdxModule: undefined,
    qe: { isvSvn: quote.certification.qeReport.isvSvn, status: undefined }, tcbEvaluationDataNumber: undefined,
    collateralIssueDate: undefined, collateralNextUpdate: undefined, root: rootName, eventLog: events,
  };
  return { claims, report: checks.report() };
}
