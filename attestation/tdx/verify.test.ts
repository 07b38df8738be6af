/**
 * verifyTdx against the fake Intel signer (sim.ts): change one field of the quote, the PCK certificate or the
 * collateral at a time and expect exactly one error code; plus byte flips over a real quote (go-tdx-guest
 * verify_test.go style), each region with its own code.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { hasVectors, trustStore, vector, vectorText } from '../../test/vectors.ts';
import { isGmError } from '../errors.ts';
import { parseCertificate } from '../x509/cert.ts';
import { pemDecodeAll } from '../x509/pem.ts';
import { parseQuote } from './abi.ts';
import { collateralFromDcapQvl } from './collateral.ts';
import { DEFAULT_TDX_POLICY, type TdxCollateral, type TdxPolicy, type VerifyTdxOptions, verifyTdx } from './index.ts';
import { type SimQuoteFields, type SimTdx, createSimTdx } from './sim.ts';

let sim: SimTdx;
let collateral: TdxCollateral;

beforeAll(async () => {
  sim = await createSimTdx();
  collateral = await sim.collateral();
});

const opts = (o: Partial<VerifyTdxOptions> = {}): VerifyTdxOptions => ({ now: sim.now, roots: sim.roots(), collateral, ...o });

async function codeOf(p: Promise<unknown>): Promise<{ code: string | undefined; failures: string[] }> {
  try {
    await p;
    return { code: undefined, failures: [] };
  } catch (e) {
    if (!isGmError(e)) throw e;
    return { code: e.code, failures: (e.report?.checks ?? []).filter((c) => c.status === 'fail').map((c) => c.code!) };
  }
}

const svn = (...v: number[]) => Uint8Array.from([...v, ...new Array(16 - v.length).fill(0)]);
const filled = (n: number, v: number) => new Uint8Array(n).fill(v);

describe('verifyTdx with the sim signer', () => {
  it('a default sim quote (v4, v5 TD 1.5, v5 TD 1.0) verifies UpToDate with every check passing', async () => {
    for (const f of [{}, { version: 5 }, { version: 5, bodyType: 2 }] as SimQuoteFields[]) {
      const { claims, report } = await verifyTdx(await sim.quote(f), opts());
      expect(claims.tcbStatus).toBe('UpToDate');
      expect(claims.advisoryIds).toEqual([]);
      expect(claims.tdxModule).toEqual({ id: 'TDX_01', status: 'UpToDate' });
      expect(claims.qe).toEqual({ isvSvn: 4, status: 'UpToDate' });
      expect(claims.pckCa).toBe('platform');
      expect(report.verified).toBe(true);
    }
  });

  it('a validly signed quote from another QE vendor → TDX_QE_VENDOR', async () => {
    const r = await codeOf(verifyTdx(await sim.quote({ patch: [[12, Uint8Array.of(0xff)]] }), opts()));
    expect(r.code).toBe('TDX_QE_VENDOR');
    expect(r.failures).toEqual(['TDX_QE_VENDOR']);
  });

  it('a collateral getter is asked by FMSPC, PCE-ID and CA type', async () => {
    const asked: unknown[] = [];
    await verifyTdx(await sim.quote(), opts({ collateral: (req) => (asked.push(req), collateral) }));
    expect(asked).toEqual([{ fmspc: '90c06f000000', pceId: '0000', ca: 'platform' }]);
    const r = await codeOf(verifyTdx(await sim.quote(), opts({ collateral: () => Promise.reject(new Error('ECONNREFUSED')) })));
    expect(r.code).toBe('TDX_COLLATERAL_UNAVAILABLE');
  });

  it('the pinned Intel root does not accept a sim quote (roots must be passed explicitly)', async () => {
    if (!hasVectors) return;
    const r = await codeOf(verifyTdx(await sim.quote(), { now: sim.now, trustStore: await trustStore(), collateral }));
    expect(r.code).toBe('CERT_UNTRUSTED_ROOT');
  });

  const quoteCases: [string, SimQuoteFields, string][] = [
    ['QE MRSIGNER differs', { qe: { mrSigner: filled(32, 1) } }, 'TDX_QE_IDENTITY_MISMATCH'],
    ['QE ISVPRODID differs', { qe: { isvProdId: 3 } }, 'TDX_QE_IDENTITY_MISMATCH'],
    ['QE ATTRIBUTES differ in a masked bit', { qe: { attributes: filled(16, 0) } }, 'TDX_QE_IDENTITY_MISMATCH'],
    ['QE MISCSELECT differs', { qe: { miscSelect: 1 } }, 'TDX_QE_IDENTITY_MISMATCH'],
    ['QE ISVSVN below every QE level', { qe: { isvSvn: 1 } }, 'TDX_TCB_NOT_SUPPORTED'],
    ['QE REPORTDATA does not bind the attestation key', { qe: { reportData: new Uint8Array(64) } }, 'TDX_QE_REPORT_DATA'],
    ['TDX module major version without identity', { teeTcbSvn: svn(3, 3, 2) }, 'TDX_MODULE_MISMATCH'],
    ['MRSIGNERSEAM is not Intel', { mrSignerSeam: filled(48, 1) }, 'TDX_MODULE_MISMATCH'],
    ['SEAMATTRIBUTES non-zero', { seamAttributes: filled(8, 1) }, 'TDX_MODULE_MISMATCH'],
    ['TDX module ISVSVN below every module level', { teeTcbSvn: svn(1, 1, 2) }, 'TDX_TCB_NOT_SUPPORTED'],
    ['TDX TCB component below every level', { teeTcbSvn: svn(3, 1, 0) }, 'TDX_TCB_NOT_SUPPORTED'],
  ];
  for (const [what, f, code] of quoteCases) {
    it(`quote: ${what} → ${code}`, async () => {
      expect((await codeOf(verifyTdx(await sim.quote(f), opts()))).code).toBe(code);
    });
  }

  const statusCases: [string, SimQuoteFields, string, string[]][] = [
    ['QE ISVSVN 3 (QE OutOfDate)', { qe: { isvSvn: 3 } }, 'OutOfDate', ['INTEL-SA-00615']],
    ['TDX module ISVSVN 2 (module OutOfDate)', { teeTcbSvn: svn(2, 1, 2) }, 'OutOfDate', []],
    ['TDX late microcode SVN 1 (older TCB level)', { teeTcbSvn: svn(3, 1, 1) }, 'OutOfDate', ['INTEL-SA-00837']],
  ];
  for (const [what, f, status, advisories] of statusCases) {
    it(`status: ${what} → ${status}, rejected by the default policy, accepted when allowed`, async () => {
      const q = await sim.quote(f);
      const r = await codeOf(verifyTdx(q, opts()));
      expect(r.code).toBe('TDX_POLICY_VIOLATION');
      expect(r.failures).toContain('TDX_POLICY_TCB_STATUS');
      const policy: TdxPolicy = { ...DEFAULT_TDX_POLICY, allowedTcbStatuses: ['UpToDate', 'OutOfDate'], allowedAdvisoryIds: advisories };
      const { claims } = await verifyTdx(q, opts({ policy }));
      expect(claims.tcbStatus).toBe(status);
      expect(claims.advisoryIds).toEqual(advisories);
    });
  }

  it('TD 1.5: running module out of date but TEE_TCB_SVN_2 at the latest level → TDRelaunchAdvised (Intel TDRelaunchCheck)', async () => {
    const policy: TdxPolicy = { ...DEFAULT_TDX_POLICY, allowedTcbStatuses: ['TDRelaunchAdvised', 'OutOfDate'] };
    const advised = await verifyTdx(await sim.quote({ version: 5, teeTcbSvn: svn(2, 1, 2), teeTcbSvn2: svn(3, 1, 2) }), opts({ policy }));
    expect(advised.claims.tcbStatus).toBe('TDRelaunchAdvised');
    const stale = await verifyTdx(await sim.quote({ version: 5, teeTcbSvn: svn(2, 1, 2), teeTcbSvn2: svn(2, 1, 2) }), opts({ policy }));
    expect(stale.claims.tcbStatus).toBe('OutOfDate');
    const r = await codeOf(verifyTdx(await sim.quote({ version: 5, teeTcbSvn: svn(2, 1, 2), teeTcbSvn2: svn(3, 1, 2) }), opts()));
    expect(r.failures).toEqual(['TDX_POLICY_TCB_STATUS']);
    const c = await sim.collateral({ tcbInfo: (j) => void (j.tcbLevels[0].tcbStatus = 'ConfigurationNeeded') });
    const cfg = await verifyTdx(await sim.quote({ version: 5, teeTcbSvn: svn(2, 1, 2), teeTcbSvn2: svn(3, 1, 2) }), opts({ collateral: c, policy: { ...policy, allowedTcbStatuses: ['TDRelaunchAdvisedConfigurationNeeded'] } }));
    expect(cfg.claims.tcbStatus).toBe('TDRelaunchAdvisedConfigurationNeeded');
  });

  it('PCK certificate one field at a time', async () => {
    const cases: [Parameters<SimTdx['issuePck']>[0], string][] = [
      [{ fmspc: Uint8Array.of(1, 2, 3, 4, 5, 6) }, 'TDX_TCB_INFO_MISMATCH'],
      [{ pceId: Uint8Array.of(1, 0) }, 'TDX_TCB_INFO_MISMATCH'],
      [{ omitSgxExtension: true }, 'TDX_PCK_EXTENSIONS_INVALID'],
      [{ commonName: 'Intel SGX Something Else' }, 'TDX_PCK_CHAIN_INVALID'],
      [{ notAfter: new Date(sim.now.getTime() - 1000) }, 'CERT_EXPIRED'],
      [{ notBefore: new Date(sim.now.getTime() + 1000) }, 'CERT_NOT_YET_VALID'],
      [{ sgxTcbComponents: [1, 2, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0], pceSvn: 5 }, 'TDX_TCB_NOT_SUPPORTED'],
      [{ pceSvn: 4 }, 'TDX_TCB_NOT_SUPPORTED'],
      [{ keyCurve: 'P-384' }, 'CERT_ALGORITHM'],
    ];
    for (const [ov, code] of cases) {
      const pck = await sim.issuePck(ov);
      // A P-384 key would make a 96-byte QE signature the layout cannot hold: the sim's own key signs instead.
      const q = await sim.quote({ pckChainPem: pck.chainPem, pckKey: ov?.keyCurve === 'P-384' ? undefined : pck.key });
      expect([JSON.stringify(ov), (await codeOf(verifyTdx(q, opts()))).code]).toEqual([JSON.stringify(ov), code]);
    }
  });

  it('an older PCK TCB matches the older level: OutOfDate with its advisories', async () => {
    const pck = await sim.issuePck({ sgxTcbComponents: [2, 2, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0], pceSvn: 5 });
    const q = await sim.quote({ pckChainPem: pck.chainPem, pckKey: pck.key });
    const { claims } = await verifyTdx(q, opts({ policy: { ...DEFAULT_TDX_POLICY, allowedTcbStatuses: ['OutOfDate'], allowedAdvisoryIds: ['INTEL-SA-00837'] } }));
    expect(claims.tcbStatus).toBe('OutOfDate');
    expect(claims.pceSvn).toBe(5);
  });

  it('PCK chain framing is strict: text before the first PEM block → TDX_PCK_CHAIN_INVALID', async () => {
    const pem = new Uint8Array([...new TextEncoder().encode('note\n'), ...sim.pck.chainPem]);
    expect((await codeOf(verifyTdx(await sim.quote({ pckChainPem: pem }), opts()))).code).toBe('TDX_PCK_CHAIN_INVALID');
  });

  it('QE report signed by a key other than the PCK leaf → TDX_QE_REPORT_SIGNATURE', async () => {
    const other = await sim.issuePck();
    expect((await codeOf(verifyTdx(await sim.quote({ pckKey: other.key }), opts()))).code).toBe('TDX_QE_REPORT_SIGNATURE');
  });

  it('collateral one field at a time', async () => {
    const day = 86400_000;
    const cases: [Parameters<SimTdx['collateral']>[0], string][] = [
      [{ tcbInfo: (j) => void (j.nextUpdate = new Date(sim.now.getTime() - day).toISOString()) }, 'TDX_TCB_INFO_EXPIRED'],
      [{ tcbInfo: (j) => void (j.issueDate = new Date(sim.now.getTime() + day).toISOString()) }, 'TDX_TCB_INFO_NOT_YET_VALID'],
      [{ qeIdentity: (j) => void (j.nextUpdate = new Date(sim.now.getTime() - day).toISOString()) }, 'TDX_QE_IDENTITY_EXPIRED'],
      [{ tcbInfo: (j) => void (j.fmspc = '00606A000000') }, 'TDX_TCB_INFO_MISMATCH'],
      [{ tcbInfo: (j) => void (j.id = 'SGX') }, 'TDX_TCB_INFO_INVALID'],
      [{ tcbInfo: (j) => void (j.version = 2) }, 'TDX_TCB_INFO_INVALID'],
      [{ qeIdentity: (j) => void (j.id = 'QE') }, 'TDX_QE_IDENTITY_INVALID'],
      [{ tcbInfo: (j) => void (j.tcbLevels[0].tcbStatus = 'Unknown') }, 'TDX_TCB_INFO_INVALID'],
      [{ tcbInfo: (j) => void (j.tcbType = 1) }, 'TDX_TCB_INFO_INVALID'],
      [{ tcbInfo: (j) => void (j.tcbLevels[0].tcb.sgxtcbcomponents.pop()) }, 'TDX_TCB_INFO_INVALID'],
      [{ qeIdentity: (j) => void (j.mrsigner = 'AB') }, 'TDX_QE_IDENTITY_INVALID'],
      [{ revokeByPckCa: [0x100] }, 'CERT_REVOKED'],
      [{ revokeByRoot: [2] }, 'CERT_REVOKED'],
      [{ revokeByRoot: [3] }, 'CERT_REVOKED'],
      [{ crlNextUpdate: new Date(sim.now.getTime() - day), crlThisUpdate: new Date(sim.now.getTime() - 2 * day) }, 'CRL_EXPIRED'],
    ];
    const q = await sim.quote();
    for (const [ov, code] of cases) {
      const c = await sim.collateral(ov);
      expect([String(ov?.tcbInfo ?? ov?.qeIdentity ?? JSON.stringify(ov)), (await codeOf(verifyTdx(q, opts({ collateral: c })))).code]).toEqual([String(ov?.tcbInfo ?? ov?.qeIdentity ?? JSON.stringify(ov)), code]);
    }
  });

  it('TCB level status Revoked and ConfigurationNeeded are reported as such', async () => {
    const q = await sim.quote();
    for (const s of ['Revoked', 'ConfigurationNeeded', 'SWHardeningNeeded'] as const) {
      const c = await sim.collateral({ tcbInfo: (j) => void (j.tcbLevels[0].tcbStatus = s) });
      const { claims } = await verifyTdx(q, opts({ collateral: c, policy: { ...DEFAULT_TDX_POLICY, allowedTcbStatuses: [s] } }));
      expect(claims.tcbStatus).toBe(s);
    }
    // A module level OutOfDate with a ConfigurationNeeded platform converges to OutOfDateConfigurationNeeded.
    const c = await sim.collateral({ tcbInfo: (j) => void (j.tcbLevels[0].tcbStatus = 'ConfigurationNeeded') });
    const { claims } = await verifyTdx(await sim.quote({ teeTcbSvn: svn(2, 1, 2) }), opts({ collateral: c, policy: { ...DEFAULT_TDX_POLICY, allowedTcbStatuses: ['OutOfDateConfigurationNeeded'] } }));
    expect(claims.tcbStatus).toBe('OutOfDateConfigurationNeeded');
  });

  it('tampered collateral text, wrong signer, missing pieces', async () => {
    const q = await sim.quote();
    const tampered = { ...collateral, tcbInfo: { ...collateral.tcbInfo, body: collateral.tcbInfo.body.replace('"UpToDate"', '"UpToDate" ') } };
    expect((await codeOf(verifyTdx(q, opts({ collateral: tampered })))).code).toBe('TDX_COLLATERAL_SIGNATURE');
    const wrongSigner = { ...collateral, qeIdentity: { ...collateral.qeIdentity!, issuerChain: [sim.pckCaDer, sim.rootDer] } };
    expect((await codeOf(verifyTdx(q, opts({ collateral: wrongSigner })))).code).toBe('TDX_COLLATERAL_SIGNER');
    expect((await codeOf(verifyTdx(q, opts({ collateral: { ...collateral, pckCrl: undefined } })))).code).toBe('TDX_CRL_MISSING');
    expect((await codeOf(verifyTdx(q, opts({ collateral: { ...collateral, rootCaCrl: undefined } })))).code).toBe('TDX_CRL_MISSING');
    expect((await codeOf(verifyTdx(q, opts({ collateral: { ...collateral, qeIdentity: undefined } })))).code).toBe('TDX_COLLATERAL_MISSING');
    const { report } = await verifyTdx(q, opts({ collateral: { ...collateral, qeIdentity: undefined }, requireQeIdentity: false, checkRevocation: false }));
    expect(report.checks.filter((c) => c.status === 'skip' && !c.id.startsWith('tdx.policy.')).map((c) => c.id)).toEqual(['tdx.revocation.root', 'tdx.revocation.pck', 'tdx.collateral.qeIdentity']);
  });

  it('an injected ECDSA verifier is used for the quote signature and fails closed', async () => {
    const q = await sim.quote();
    const seen: number[] = [];
    await verifyTdx(q, opts({ ecdsaP256: async (key, data, sig) => {
      seen.push(key.length, sig.length);
      const k = await crypto.subtle.importKey('raw', new Uint8Array([4, ...key]), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
      return crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, k, new Uint8Array(sig), new Uint8Array(data));
    } }));
    expect(seen).toEqual([64, 64]);
    expect((await codeOf(verifyTdx(q, opts({ ecdsaP256: () => false })))).code).toBe('TDX_QUOTE_SIGNATURE');
    expect((await codeOf(verifyTdx(q, opts({ ecdsaP256: () => { throw new Error('bad point'); } })))).code).toBe('TDX_ATTESTATION_KEY_INVALID');
    expect((await codeOf(verifyTdx(q, opts({ ecdsaP256: (() => 1) as never })))).code).toBe('TDX_QUOTE_SIGNATURE');
  });

  it('bundle form: collateral as served round-trips; expectedReportData is checked', async () => {
    const { collateralFromServed, servedFromCollateral } = await import('./collateral.ts');
    const served = servedFromCollateral(collateral);
    expect(served.crls?.length).toBe(2);
    const back = collateralFromServed(served);
    const rd = filled(64, 9);
    const q = await sim.quote({ reportData: rd });
    const { report } = await verifyTdx(q, opts({ collateral: back, expectedReportData: rd }));
    expect(report.checks.find((c) => c.id === 'tdx.reportData')?.status).toBe('pass');
    expect((await codeOf(verifyTdx(q, opts({ collateral: back, expectedReportData: filled(64, 8) })))).code).toBe('TDX_REPORT_DATA_MISMATCH');
    expect(() => collateralFromServed({ ...served, tcbInfo: undefined })).toThrow(expect.objectContaining({ code: 'TDX_COLLATERAL_MISSING' }));
  });

  it('a quote from another sim Intel is not accepted', async () => {
    const other = await createSimTdx();
    expect((await codeOf(verifyTdx(await other.quote(), opts()))).code).toBe('CERT_SIGNATURE');
  });
});

describe('policy rules, one at a time', () => {
  const h = (n: number, v: number) => Buffer.from(filled(n, v)).toString('hex');
  const cases: [string, Record<string, unknown>, SimQuoteFields, string][] = [
    ['mrTd', { mrTd: [h(48, 0x7d)] }, { mrTd: filled(48, 1) }, 'TDX_POLICY_MRTD'],
    ['rtmr1', { rtmr1: [h(48, 0xa1)] }, { rtmr: [filled(48, 0xa0), filled(48, 2), filled(48, 0xa2), new Uint8Array(48)] }, 'TDX_POLICY_RTMR'],
    ['mrSeam', { mrSeam: [h(48, 0x5e)] }, { mrSeam: filled(48, 3) }, 'TDX_POLICY_MRSEAM'],
    ['mrConfigId', { mrConfigId: h(48, 0) }, { mrConfigId: filled(48, 4) }, 'TDX_POLICY_MRCONFIGID'],
    ['mrOwner', { mrOwner: h(48, 0) }, { mrOwner: filled(48, 5) }, 'TDX_POLICY_MROWNER'],
    ['mrOwnerConfig', { mrOwnerConfig: h(48, 0) }, { mrOwnerConfig: filled(48, 6) }, 'TDX_POLICY_MROWNERCONFIG'],
    ['debug (default)', {}, { tdAttributes: Uint8Array.from([1, 0, 0, 0x10, 0, 0, 0, 0]) }, 'TDX_POLICY_DEBUG'],
    ['septVeDisable', { tdAttributes: { septVeDisable: true } }, { tdAttributes: new Uint8Array(8) }, 'TDX_POLICY_TD_ATTRIBUTES'],
    ['perfmon', { tdAttributes: { perfmon: false } }, { tdAttributes: Uint8Array.from([0, 0, 0, 0x10, 0, 0, 0, 0x80]) }, 'TDX_POLICY_TD_ATTRIBUTES'],
    ['xfam', { xfam: 'e71a060000000000' }, { xfam: Uint8Array.from([3, 0, 0, 0, 0, 0, 0, 0]) }, 'TDX_POLICY_XFAM'],
    ['reportData', { reportData: h(64, 0) }, { reportData: filled(64, 7) }, 'TDX_POLICY_REPORT_DATA'],
    ['minTeeTcbSvn', { minTeeTcbSvn: '04010200000000000000000000000000' }, {}, 'TDX_POLICY_TEE_TCB_SVN'],
    ['mrServiceTd', { mrServiceTd: [h(48, 0)] }, { version: 5, mrServiceTd: filled(48, 8) }, 'TDX_POLICY_MRSERVICETD'],
  ];
  for (const [rule, doc, f, code] of cases) {
    it(`${rule}: the matching quote passes, the changed one fails with ${code} only`, async () => {
      const { tdxPolicyFromJson } = await import('./validate.ts');
      const policy = tdxPolicyFromJson(doc);
      const good = await verifyTdx(await sim.quote(rule === 'mrServiceTd' ? { version: 5 } : rule === 'minTeeTcbSvn' ? { teeTcbSvn: svn(4, 1, 2) } : {}), opts({ policy }));
      expect(good.report.checks.some((c) => c.id.startsWith('tdx.policy.') && c.status === 'pass' && c.id !== 'tdx.policy.tcbStatus')).toBe(true);
      const r = await codeOf(verifyTdx(await sim.quote(f), opts({ policy })));
      expect(r.code).toBe('TDX_POLICY_VIOLATION');
      expect(r.failures).toEqual([code]);
    });
  }

  it('maxCollateralAgeSeconds counts from the TCB info issueDate', async () => {
    const { tdxPolicyFromJson } = await import('./validate.ts');
    const q = await sim.quote();
    await verifyTdx(q, opts({ policy: tdxPolicyFromJson({ maxCollateralAgeSeconds: 3600 }), now: new Date(sim.now.getTime() + 1000) }));
    const r = await codeOf(verifyTdx(q, opts({ policy: tdxPolicyFromJson({ maxCollateralAgeSeconds: 3600 }), now: new Date(sim.now.getTime() + 7200_000) })));
    expect(r.failures).toEqual(['TDX_POLICY_COLLATERAL_AGE']);
  });

  it('all violations are reported together', async () => {
    const { tdxPolicyFromJson } = await import('./validate.ts');
    const q = await sim.quote({ mrTd: filled(48, 1), tdAttributes: Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0]) });
    const r = await codeOf(verifyTdx(q, opts({ policy: tdxPolicyFromJson({ mrTd: [h(48, 0x7d)], tdAttributes: { septVeDisable: true } }) })));
    expect(r.failures.sort()).toEqual(['TDX_POLICY_DEBUG', 'TDX_POLICY_MRTD', 'TDX_POLICY_TD_ATTRIBUTES']);
  });

  it('a rule the policy does not set is a recorded skip, and a rule it sets is not', async () => {
    const { tdxPolicyFromJson } = await import('./validate.ts');
    const q = await sim.quote();
    const rows = (r: Awaited<ReturnType<typeof verifyTdx>>) => Object.fromEntries(r.report.checks.filter((c) => c.id.startsWith('tdx.policy.')).map((c) => [c.id, c.status]));
    const bare = rows(await verifyTdx(q, opts()));
    for (const id of ['mrTd', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3', 'mrSeam', 'mrServiceTd', 'mrConfigId', 'mrOwner', 'mrOwnerConfig', 'tdAttributes', 'xfam', 'reportData', 'minTeeTcbSvn', 'maxCollateralAge'])
      expect([id, bare[`tdx.policy.${id}`]]).toEqual([id, 'skip']);
    expect(bare['tdx.policy.debug']).toBe('pass');
    const set = rows(await verifyTdx(q, opts({ policy: tdxPolicyFromJson({ rtmr2: [h(48, 0xa2)], maxCollateralAgeSeconds: 86400, tdAttributes: { septVeDisable: true } }) })));
    expect(set['tdx.policy.rtmr2']).toBe('pass');
    expect(set['tdx.policy.rtmr1']).toBe('skip');
    expect(set['tdx.policy.maxCollateralAge']).toBe('pass');
    expect(set['tdx.policy.tdAttributes.septVeDisable']).toBe('pass');
    expect(set['tdx.policy.tdAttributes']).toBeUndefined();
  });

  it('allowDebug turns the DEBUG rule into a recorded skip', async () => {
    const { tdxPolicyFromJson } = await import('./validate.ts');
    const { report } = await verifyTdx(await sim.quote({ tdAttributes: Uint8Array.from([1, 0, 0, 0x10, 0, 0, 0, 0]) }), opts({ policy: tdxPolicyFromJson({ tdAttributes: { allowDebug: true } }) }));
    expect(report.checks.find((c) => c.id === 'tdx.policy.debug')?.status).toBe('skip');
  });
});

describe.skipIf(!hasVectors)('byte flips over the real dcap-qvl quote', () => {
  const base = () => vector('tdx/dcap-qvl/tdx_quote');
  const SIG = 48 + 584 + 4; // start of the quote signature data
  const QE_REPORT = SIG + 64 + 64 + 6;
  const AUTH = QE_REPORT + 384 + 64 + 2;
  const run = async (q: Uint8Array) =>
    codeOf(verifyTdx(q, { now: new Date('2025-06-25T00:00:00Z'), trustStore: await trustStore(), collateral: collateralFromDcapQvl(vectorText('tdx/dcap-qvl/tdx_quote_collateral.json')) }));
  const flip = (q: Uint8Array, at: number) => {
    const c = new Uint8Array(q);
    c[at]! ^= at === 0 ? 0x02 : 0x01; // version 4 ^ 1 would be a valid 5
    return c;
  };

  it('unchanged, it verifies', async () => {
    expect((await run(base())).code).toBeUndefined();
  });
  for (const [region, at, code] of [
    ['signed body (MRTD)', 48 + 136 + 5, 'TDX_QUOTE_SIGNATURE'],
    ['signed body (REPORTDATA)', 48 + 520 + 63, 'TDX_QUOTE_SIGNATURE'],
    ['signed header (user data)', 40, 'TDX_QUOTE_SIGNATURE'],
    ['quote signature', SIG + 10, 'TDX_QUOTE_SIGNATURE'],
    ['QE report (MRENCLAVE)', QE_REPORT + 64, 'TDX_QE_REPORT_SIGNATURE'],
    ['QE report signature', QE_REPORT + 384 + 3, 'TDX_QE_REPORT_SIGNATURE'],
    ['QE auth data', AUTH + 1, 'TDX_QE_REPORT_DATA'],
    ['attestation key', SIG + 64 + 7, 'TDX_QE_REPORT_DATA'],
    ['header version', 0, 'TDX_QUOTE_VERSION'],
    ['certification data type', SIG + 128, 'TDX_QUOTE_CERT_TYPE'],
  ] as const) {
    it(`${region} → ${code}`, async () => {
      expect((await run(flip(base(), at))).code).toBe(code);
    });
  }

  /** Code (and kind) of verifyTdx over `q`, 'VERIFIED' when it passes. */
  const outcome = async (q: Uint8Array): Promise<{ code: string; kind?: string }> => {
    try {
      await verifyTdx(q, { now: new Date('2025-06-25T00:00:00Z'), trustStore: await trustStore(), collateral: dcapCollateral() });
      return { code: 'VERIFIED' };
    } catch (e) {
      if (!isGmError(e)) throw e;
      expect(e.report?.verified).toBe(false);
      return { code: e.code, kind: e.kind };
    }
  };
  let dcap: TdxCollateral | undefined;
  const dcapCollateral = () => (dcap ??= collateralFromDcapQvl(vectorText('tdx/dcap-qvl/tdx_quote_collateral.json')));
  /** Flips (XOR 0x01) every byte of [lo, hi) and tallies the codes; throws at the first byte whose code is not `want(offset)`. */
  const flipEach = async (lo: number, hi: number, want: (off: number) => string) => {
    const good = base();
    const tally: Record<string, number> = {};
    for (let off = lo; off < hi; off++) {
      const q = new Uint8Array(good);
      q[off]! ^= 0x01;
      const { code } = await outcome(q);
      if (code !== want(off)) throw new Error(`offset ${off}: expected ${want(off)}, got ${code}`);
      tally[code] = (tally[code] ?? 0) + 1;
    }
    return tally;
  };

  /**
   * Every byte of the signed region (header ‖ body, [0, 632)) flipped. The parser refuses what is not a known
   * layout; the TDX module identity (MRSIGNERSEAM, SEAMATTRIBUTES) is compared with the TCB info before the quote
   * signature is reported (Intel QVL order); every other flip fails the quote signature.
   *   0        VERSION 4 → 5: a v5 quote whose body descriptor is not a known one → TDX_QUOTE_BODY_TYPE
   *   1        VERSION ≥ 0x100 → TDX_QUOTE_VERSION
   *   2..3     attestation key type → TDX_QUOTE_KEY_TYPE;  4..7 TEE type → TDX_QUOTE_TEE_TYPE;  8..11 reserved → TDX_QUOTE_RESERVED
   *   12..27   QE_VENDOR_ID → TDX_QE_VENDOR (only Intel's QE is accepted)
   *   112..159 MRSIGNERSEAM, 160..167 SEAMATTRIBUTES → TDX_MODULE_MISMATCH
   *   else     TDX_QUOTE_SIGNATURE
   */
  it('each flipped byte of the signed region is rejected with the code its table names', async () => {
    expect(parseQuote(base()).signedData.length).toBe(632);
    const tally = await flipEach(0, 632, (off) =>
      off === 0 ? 'TDX_QUOTE_BODY_TYPE' : off === 1 ? 'TDX_QUOTE_VERSION' : off < 4 ? 'TDX_QUOTE_KEY_TYPE' : off < 8 ? 'TDX_QUOTE_TEE_TYPE' : off < 12 ? 'TDX_QUOTE_RESERVED'
        : off < 28 ? 'TDX_QE_VENDOR' : off >= 48 + 64 && off < 48 + 120 ? 'TDX_MODULE_MISMATCH' : 'TDX_QUOTE_SIGNATURE');
    expect(tally).toEqual({ TDX_QUOTE_BODY_TYPE: 1, TDX_QUOTE_VERSION: 1, TDX_QUOTE_KEY_TYPE: 2, TDX_QUOTE_TEE_TYPE: 4, TDX_QUOTE_RESERVED: 4, TDX_QE_VENDOR: 16, TDX_MODULE_MISMATCH: 56, TDX_QUOTE_SIGNATURE: 548 });
  }, 30_000);

  it('each flipped byte of the quote signature, attestation key, QE report, QE report signature and QE auth data has its region\'s code', async () => {
    const q = parseQuote(base());
    expect([q.certification.qeAuthData.length, q.certification.qeAuthData.byteOffset - q.signedData.byteOffset]).toEqual([32, AUTH]);
    expect(await flipEach(SIG, SIG + 64, () => 'TDX_QUOTE_SIGNATURE')).toEqual({ TDX_QUOTE_SIGNATURE: 64 });
    // The attestation key is bound by the QE report's REPORTDATA, checked before the quote signature.
    expect(await flipEach(SIG + 64, SIG + 128, () => 'TDX_QE_REPORT_DATA')).toEqual({ TDX_QE_REPORT_DATA: 64 });
    // SGX REPORT reserved ranges (20..31, 96..127, 160..191, 262..303) are refused by the parser.
    const reserved = (o: number) => (o >= 20 && o < 32) || (o >= 96 && o < 128) || (o >= 160 && o < 192) || (o >= 262 && o < 304);
    expect(await flipEach(QE_REPORT, QE_REPORT + 384, (off) => (reserved(off - QE_REPORT) ? 'TDX_QE_REPORT_INVALID' : 'TDX_QE_REPORT_SIGNATURE')))
      .toEqual({ TDX_QE_REPORT_INVALID: 118, TDX_QE_REPORT_SIGNATURE: 266 });
    expect(await flipEach(QE_REPORT + 384, QE_REPORT + 448, () => 'TDX_QE_REPORT_SIGNATURE')).toEqual({ TDX_QE_REPORT_SIGNATURE: 64 });
    expect(await flipEach(AUTH, AUTH + 32, () => 'TDX_QE_REPORT_DATA')).toEqual({ TDX_QE_REPORT_DATA: 32 });
  }, 30_000);

  it('each flipped byte of the PEM PCK chain is rejected as a chain or certificate error (line breaks and one known gap aside)', async () => {
    const good = base();
    const q = parseQuote(good);
    const pem = q.certification.pckCertChain;
    const start = pem.byteOffset - good.byteOffset;
    const ends = [...new TextDecoder('latin1').decode(pem).matchAll(/-----END CERTIFICATE-----/g)].map((m) => m.index + 25);
    expect(ends.length).toBe(3);
    const ders = pemDecodeAll(new TextDecoder('latin1').decode(pem.subarray(0, ends[2])));
    const allowed = new Set(['TDX_PCK_CHAIN_INVALID', 'CERT_SIGNATURE', 'CERT_ISSUER_MISMATCH', 'CERT_UNTRUSTED_ROOT', 'CERT_ALGORITHM', 'CERT_KEY_INVALID', 'CERT_NOT_CA',
      'CERT_NOT_YET_VALID', 'CERT_EXPIRED', 'DER_INVALID']);
    const signatureFails = [0, 0, 0];
    const accepted: string[] = [];
    let lineBreaks = 0;
    for (let i = 0; i < pem.length; i++) {
      const c = new Uint8Array(good);
      c[start + i]! ^= 0x01;
      const { code, kind } = await outcome(c);
      if (pem[i] === 0x0a) {
        // '\n' → '\v': the base64 text, hence every certificate byte, is unchanged (the chain is not itself signed).
        if (code !== 'VERIFIED') throw new Error(`PEM byte ${i} (line break): expected VERIFIED, got ${code}`);
        lineBreaks++;
        continue;
      }
      if (code === 'VERIFIED') {
        // Name what the flip changed in the certificates, to compare with the known gap below.
        const changed = pemDecodeAll(new TextDecoder('latin1').decode(c.subarray(start, start + ends[2]!)));
        for (const [k, d] of changed.entries()) {
          for (let j = 0; j < d.length; j++) {
            if (d[j] === ders[k]![j]) continue;
            const sigAt = d.length - parseCertificate(ders[k]!).signature.length;
            accepted.push(`cert ${k} DER byte ${j === sigAt ? 'ECDSA-Sig-Value tag' : j} ${ders[k]![j]!.toString(16)}->${d[j]!.toString(16)}`);
          }
        }
        continue;
      }
      if (!allowed.has(code) || (kind !== 'rejected' && kind !== 'protocol')) throw new Error(`PEM byte ${i}: unexpected ${code} (${kind})`);
      const cert = ends.findIndex((e) => i < e);
      if (code === 'CERT_SIGNATURE' && cert >= 0) signatureFails[cert]!++;
    }
    expect(lineBreaks).toBe([...pem].filter((b) => b === 0x0a).length);
    // Each of leaf, PCK CA and root has signed bytes whose flip breaks a signature.
    for (const n of signatureFails) expect(n).toBeGreaterThan(100);
    // The outer tag of each DER ECDSA-Sig-Value must be SEQUENCE: another constructed tag (same r, s) is refused too.
    expect(accepted).toEqual([]);
  }, 60_000); // ~3 700 verifications with a fresh PCK chain each

  it('PCK leaf signature bytes (inside the PEM) → CERT_SIGNATURE', async () => {
    const q = base();
    const text = new TextDecoder('latin1').decode(q);
    const end = text.indexOf('-----END CERTIFICATE-----');
    let at = end - 40;
    while (q[at] === 0x0a) at--;
    const c = new Uint8Array(q);
    c[at] = c[at] === 0x41 ? 0x42 : 0x41; // another base64 digit: same length, different signature bits
    const r = await run(c);
    expect(r.code).toBe('CERT_SIGNATURE');
    expect(r.failures).toEqual(['CERT_SIGNATURE']);
  });

  it('caches never alias the caller\'s buffer: mutating it after a verification changes nothing cached', async () => {
    const q = new Uint8Array(base());
    expect((await run(q)).code).toBeUndefined();
    const text = new TextDecoder('latin1').decode(q);
    const at = text.indexOf('-----END CERTIFICATE-----') - 40;
    const original = q[at]!;
    q[at] = original === 0x41 ? 0x42 : 0x41; // the same buffer, now with a different PCK leaf signature
    expect((await run(q)).code).toBe('CERT_SIGNATURE');
    expect((await run(base())).code).toBeUndefined(); // the cached verified chain is still the original one
  });

  it('a PCK chain that is not PEM → TDX_PCK_CHAIN_INVALID', async () => {
    const q = base();
    const text = new TextDecoder('latin1').decode(q);
    const c = new Uint8Array(q);
    c[text.indexOf('-----BEGIN CERTIFICATE-----') + 5] = 0x58;
    expect((await run(c)).code).toBe('TDX_PCK_CHAIN_INVALID');

  });

  it('non-zero bytes after the quote → TDX_QUOTE_TRAILING_BYTES', async () => {
    const q = new Uint8Array(base());
    q[q.length - 1] = 1;
    expect((await run(q)).code).toBe('TDX_QUOTE_TRAILING_BYTES');
  });
});
