/** verifyTdx with `collateral: null`: every signature checked, TCB unknown, the policy decides (real Phala quote). */
import { describe, expect, it } from 'vitest';
import { fromHex } from '../bytes.ts';
import { isGmError } from '../errors.ts';
import { hasTrustAnchors, hasVectors, trustStore, vectorText } from '../../test/vectors.ts';
import { tdxPolicyFromJson, verifyTdx } from './index.ts';

const NOW = new Date('2025-09-01T00:00:00Z');
const quote = () => fromHex(vectorText('tdx/teekit/tdx-v4-phala.hex').trim().slice(2));

describe.skipIf(!hasVectors || !hasTrustAnchors)('verifyTdx without collateral', () => {
  it('default policy: TDX_POLICY_VIOLATION after every signature row passed; the TCB rows are skips saying why', async () => {
    const e = await verifyTdx(quote(), { now: NOW, trustStore: await trustStore(), collateral: null }).catch((x: unknown) => x);
    expect(isGmError(e, 'TDX_POLICY_VIOLATION')).toBe(true);
    const rows = (e as { report: { checks: { id: string; status: string; detail?: string; code?: string }[] } }).report.checks;
    const status = (id: string) => rows.find((r) => r.id === id)?.status;
    for (const id of ['tdx.quote.parse', 'tdx.pck.chain', 'tdx.qe.signature', 'tdx.qe.reportData', 'tdx.quote.signature']) expect(status(id), id).toBe('pass');
    for (const id of ['tdx.collateral.get', 'tdx.revocation.root', 'tdx.revocation.pck', 'tdx.collateral.tcbInfo', 'tdx.collateral.qeIdentity', 'tdx.tcb.status']) {
      expect(status(id), id).toBe('skip');
      expect(rows.find((r) => r.id === id)!.detail, id).toContain('no collateral');
    }
    expect(rows.find((r) => r.id === 'tdx.policy.tcbStatus')).toMatchObject({ status: 'fail', code: 'TDX_POLICY_TCB_STATUS' });
  });

  it('allowUnknownTcbStatus accepts it with tcbStatus Unknown; a collateral-age rule still refuses', async () => {
    const trust = await trustStore();
    const ok = await verifyTdx(quote(), { now: NOW, trustStore: trust, collateral: null, policy: tdxPolicyFromJson({ allowUnknownTcbStatus: true }) });
    expect(ok.claims.tcbStatus).toBe('Unknown');
    expect(ok.claims.tcbDate).toBeUndefined();
    expect(ok.report.verified).toBe(true);
    const aged = await verifyTdx(quote(), { now: NOW, trustStore: trust, collateral: null, policy: tdxPolicyFromJson({ allowUnknownTcbStatus: true, maxCollateralAgeSeconds: 86400 }) }).catch((x: unknown) => x);
    expect(isGmError(aged, 'TDX_POLICY_VIOLATION')).toBe(true);
    expect((aged as { report: { checks: { id: string; code?: string }[] } }).report.checks.find((r) => r.id === 'tdx.policy.maxCollateralAge')?.code).toBe('TDX_POLICY_COLLATERAL_AGE');
  });

  it('a tampered quote still fails its signature without collateral', async () => {
    const q = quote();
    q[48 + 200]! ^= 1;
    const e = await verifyTdx(q, { now: NOW, trustStore: await trustStore(), collateral: null, policy: tdxPolicyFromJson({ allowUnknownTcbStatus: true }) }).catch((x: unknown) => x);
    expect(isGmError(e, 'TDX_QUOTE_SIGNATURE')).toBe(true);
  });

  it('allowUnknownTcbStatus must be a boolean', () => {
    expect(() => tdxPolicyFromJson({ allowUnknownTcbStatus: 'yes' })).toThrow();
  });
});
