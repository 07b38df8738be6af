/** `gm-sent-at` parsing (docs/protocol.md §13): once, as canonical Unix seconds, under any case of its name. */
import { describe, expect, it } from 'vitest';
import { parseRequestTime } from './request-time.ts';

const code = (f: () => unknown) => {
  try {
    f();
    return 'OK';
  } catch (e) {
    return (e as { code?: string }).code;
  }
};

describe('parseRequestTime', () => {
  it('reads the field under any case of its name, among others, as milliseconds; absent is undefined', () => {
    expect(parseRequestTime([['content-type', 'application/json'], ['GM-Sent-At', '1764780000']])).toBe(1_764_780_000_000);
    expect(parseRequestTime([['gm-sent-at', '0']])).toBe(0);
    expect(parseRequestTime([['content-type', 'application/json'], ['gm-sent-atx', '1']])).toBeUndefined();
    expect(parseRequestTime([])).toBeUndefined();
  });

  it('refuses the field twice (whatever the case of either), and any value that is not canonical seconds', () => {
    expect(code(() => parseRequestTime([['gm-sent-at', '1'], ['GM-SENT-AT', '1']]))).toBe('REQUEST_TIME_INVALID');
    expect(code(() => parseRequestTime([['gm-sent-at', '1'], ['x', 'y'], ['gm-sent-at', '2']]))).toBe('REQUEST_TIME_INVALID');
    for (const v of ['01', '', ' 1', '1.5', '-1', '1e3', '1234567890123']) expect(code(() => parseRequestTime([['gm-sent-at', v]]))).toBe('REQUEST_TIME_INVALID');
  });
});
