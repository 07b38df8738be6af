/** TDX policy documents are read strictly: a typo or a wrong length is a configuration error, never a skipped check. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_TDX_POLICY, tdxPolicyFromJson } from './validate.ts';

const code = (doc: unknown): string | undefined => {
  try {
    tdxPolicyFromJson(doc);
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
};

describe('tdxPolicyFromJson', () => {
  it('an empty document is the default policy (UpToDate only, no advisories, DEBUG forbidden)', () => {
    expect(tdxPolicyFromJson({})).toMatchObject({ allowedTcbStatuses: DEFAULT_TDX_POLICY.allowedTcbStatuses, allowedAdvisoryIds: [], allowDebug: false });
  });
  it('reads every field', () => {
    const h = (n: number) => 'ab'.repeat(n);
    const p = tdxPolicyFromJson({
      allowedTcbStatuses: ['UpToDate', 'SWHardeningNeeded', 'TDRelaunchAdvised'], allowedAdvisoryIds: ['INTEL-SA-00837'], mrTd: [h(48)], rtmr2: [h(48), h(48)],
      mrSeam: [h(48)], mrServiceTd: [h(48)], mrConfigId: h(48), mrOwner: h(48), mrOwnerConfig: h(48), tdAttributes: { allowDebug: true, septVeDisable: true, perfmon: false },
      xfam: h(8), reportData: h(64), minTeeTcbSvn: h(16), maxCollateralAgeSeconds: 86400, $comment: 'ignored',
    });
    expect(p.rtmr?.[2]?.length).toBe(2);
    expect(p.rtmr?.[0]).toBeUndefined();
    expect(p.tdAttributes).toEqual({ septVeDisable: true, perfmon: false });
    expect(p.allowDebug).toBe(true);
    expect(p.maxCollateralAgeSeconds).toBe(86400);
  });
  it('rejects unknown fields, wrong lengths, unknown statuses and wrong types', () => {
    expect(code({ mrtd: ['00'] })).toBe('POLICY_UNKNOWN_FIELD');
    expect(code({ tdAttributes: { debug: false } })).toBe('POLICY_UNKNOWN_FIELD');
    expect(code({ mrTd: ['00'] })).toBe('POLICY_INVALID');
    expect(code({ reportData: 'ab'.repeat(32) })).toBe('POLICY_INVALID');
    expect(code({ allowedTcbStatuses: ['Fine'] })).toBe('POLICY_INVALID');
    expect(code({ maxCollateralAgeSeconds: -1 })).toBe('POLICY_INVALID');
    expect(code({ tdAttributes: { septVeDisable: 'yes' } })).toBe('POLICY_INVALID');
    expect(code([])).toBe('POLICY_INVALID');
  });
});
