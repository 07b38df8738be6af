import { describe, expect, it } from 'vitest';
import { MAX_EVENT_BYTES, SseSplitter } from './sse.ts';

const te = new TextEncoder();

describe('SseSplitter', () => {
  it('splits whole events across chunk boundaries, including a CRLF terminator cut in two, and holds back [DONE]', () => {
    const s = new SseSplitter();
    expect(s.push(te.encode('data: {"a":1}\r\n\r'))).toEqual([]);
    expect(s.push(te.encode('\ndata: {"b"'))).toEqual([{ text: 'data: {"a":1}', data: '{"a":1}' }]);
    expect(s.push(te.encode(':2}\n\nevent: x\ndata: 1\ndata: 2\n\ndata: [DONE]\n\n'))).toEqual([
      { text: 'data: {"b":2}', data: '{"b":2}' },
      { text: 'event: x\ndata: 1\ndata: 2', data: '1\n2' },
    ]);
    expect(s.done).toBe(true);
  });

  it('refuses an event that never ends once it passes 1 MiB (WORKER_EVENT_TOO_LARGE), holding no more than that', () => {
    const s = new SseSplitter();
    const piece = te.encode('x'.repeat(64 * 1024));
    let pushed = 0;
    let code: string | undefined;
    try {
      for (; pushed < 64; pushed++) s.push(piece);
    } catch (e) {
      code = (e as { code?: string }).code;
    }
    expect(code).toBe('WORKER_EVENT_TOO_LARGE');
    expect(pushed * piece.length).toBeLessThanOrEqual(MAX_EVENT_BYTES);
  });

  it('accepts an event just under the bound, split into single bytes', () => {
    const s = new SseSplitter(4096);
    const ev = `data: ${'y'.repeat(4000)}`;
    const out = [];
    for (const b of te.encode(`${ev}\n\n`)) out.push(...s.push(Uint8Array.of(b)));
    expect(out).toEqual([{ text: ev, data: 'y'.repeat(4000) }]);
  });
});
