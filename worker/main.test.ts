import { describe, expect, it } from 'vitest';
import { termsFromFlags } from './main.ts';

const code = (f: Parameters<typeof termsFromFlags>[0]) => {
  try {
    return termsFromFlags(f);
  } catch (e) {
    return (e as { code?: string }).code;
  }
};

describe('gm worker --terms', () => {
  it('per-request by default; prepaid; postpaid with its credit limit and settlement period', () => {
    expect(termsFromFlags({})).toEqual({ kind: 'per-request' });
    expect(termsFromFlags({ terms: 'prepaid' })).toEqual({ kind: 'prepaid' });
    expect(termsFromFlags({ terms: 'postpaid', 'credit-limit': '5000000', 'settlement-seconds': '86400' })).toEqual({ kind: 'postpaid', creditLimit: 5_000_000n, settlementPeriodSeconds: 86400 });
  });

  it('refuses incomplete, out-of-range or meaningless combinations as usage errors', () => {
    expect(code({ terms: 'postpaid' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '1' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '-1', 'settlement-seconds': '60' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '1.5', 'settlement-seconds': '60' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '9007199254740992', 'settlement-seconds': '60' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '1', 'settlement-seconds': '0' })).toBe('USAGE');
    expect(code({ terms: 'prepaid', 'credit-limit': '1' })).toBe('USAGE');
    expect(code({ terms: 'monthly' })).toBe('USAGE');
  });
});
