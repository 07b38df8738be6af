/** The SSE pass-through that takes the `gm.receipt` event out of the stream (client/receipts.ts), under any chunking. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stripReceiptEvents } from '../client/receipts.ts';

async function pass(chunks: readonly Uint8Array[]): Promise<{ out: string; receipts: string[]; firstAt: number }> {
  const receipts: string[] = [];
  const t = stripReceiptEvents(async (d) => void receipts.push(d));
  const w = t.writable.getWriter();
  const r = t.readable.getReader();
  let out = '';
  let firstAt = -1;
  let written = 0;
  const reading = (async () => {
    for (;;) {
      const { done, value } = await r.read();
      if (done) break;
      if (firstAt < 0) firstAt = written;
      out += new TextDecoder().decode(value);
    }
  })();
  for (const c of chunks) {
    await w.write(c);
    written++;
  }
  await w.close();
  await reading;
  return { out, receipts, firstAt };
}

const split = (b: Uint8Array, cuts: number[]): Uint8Array[] => {
  const at = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let p = 0;
  for (const c of at) {
    out.push(b.subarray(p, c));
    p = c;
  }
  out.push(b.subarray(p));
  return out.filter((x) => x.length > 0);
};

describe('stripReceiptEvents', () => {
  it('removes exactly the gm.receipt event, under any chunking and line ending, and keeps every other byte', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !/[\r\n]/.test(s)), { minLength: 1, maxLength: 8 }),
      fc.constantFrom('\n', '\r\n'),
      fc.array(fc.nat(400), { maxLength: 12 }),
      async (tokens, nl, cuts) => {
        const ev = (d: string) => `data: ${JSON.stringify({ choices: [{ delta: { content: d } }] })}${nl}${nl}`;
        const receipt = `{"type":"gm.receipt","v":1,"receipt":"abc"}`;
        const before = tokens.map(ev).join('');
        const after = `data: [DONE]${nl}${nl}`;
        const all = new TextEncoder().encode(`${before}event: gm.receipt${nl}data: ${receipt}${nl}${nl}${after}`);
        const r = await pass(split(all, cuts));
        expect(r.out).toBe(before + after);
        expect(r.receipts).toEqual([receipt]);
      },
    ), { numRuns: 200 });
  });

  it('forwards each event as soon as it is complete', async () => {
    const te = new TextEncoder();
    const r = await pass([te.encode('data: 1\n\n'), te.encode('data: 2\n'), te.encode('\n')]);
    expect(r.firstAt).toBe(0);
    expect(r.out).toBe('data: 1\n\ndata: 2\n\n');
  });

  it('errors the stream when the receipt handler refuses the receipt', async () => {
    const t = stripReceiptEvents(async () => {
      throw Object.assign(new Error('bad'), { code: 'RECEIPT_SIGNATURE' });
    });
    const w = t.writable.getWriter();
    const reading = new Response(t.readable).text();
    await w.write(new TextEncoder().encode('event: gm.receipt\ndata: {}\n\n')).catch(() => undefined);
    await w.close().catch(() => undefined);
    await expect(reading).rejects.toMatchObject({ code: 'RECEIPT_SIGNATURE' });
  });
});
