import { describe, expect, it } from 'vitest';
import { GmError } from '../../attestation/errors.ts';
import { parsePools } from './pools.ts';

describe('operator model pools file', () => {
  it('accepts named pools of 1..20 models in priority order', () => {
    expect(parsePools({ default: ['a', 'b'], fast: ['c'] })).toEqual({ default: ['a', 'b'], fast: ['c'] });
  });
  it('reports every violation together', () => {
    let e: unknown;
    try {
      parsePools({ 'bad:name': ['a'], empty: [], many: Array.from({ length: 21 }, (_, i) => `m${i}`), twice: ['a', 'a'], typed: ['a', 3] }, 'pools.json');
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(GmError);
    expect((e as GmError).code).toBe('POOLS_INVALID');
    const m = (e as GmError).message;
    for (const part of ['"bad:name" must be', '"empty" must list 1..20', '"many" must list 1..20', '"twice" names a model twice', '"typed": model ids must be']) expect(m).toContain(part);
    expect(() => parsePools(['a'])).toThrow(/JSON object/);
  });
});
