/**
 * Money through the real stack against a vLLM-like upstream that can lie (docs/market.md "Metering"): the enclave
 * caps the forwarded request from the hold, never lets a charge pass the hold or a prepaid balance go below zero,
 * always asks a streaming worker for its usage, charges a client that hangs up for what it was sent, and treats
 * out-of-range usage as a worker fault (a coded error, the prompt never re-sent, the worker demoted).
 *
 * The upstream behaves like vLLM: it honours `n` and `max_tokens` (10,000 tokens per choice when none is set), and
 * sends a usage chunk only when `stream_options.include_usage` asks for one. The first message's content selects a
 * misbehaviour; every token is the 4-byte text " tok".
 */
import { Hono } from 'hono';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeCharge, decodeReceipt, parseReceiptHeader, type Receipt, verifyReceipt } from '../protocol/receipt.ts';
import { decodeDeterministic } from '../protocol/market-cbor.ts';
import { fetchTransport, sendChunked, sendPlain } from '../enclave/ohttp/client.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { verifyHead } from '../enclave/ledger/records.ts';
import { parseHeadJson } from '../enclave/ledger/verify.ts';
import { connect, readSse, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const MODEL = 'vllm-like';
let upstream: Served;
let s: Stack;
let client: TestClient;
const seen: Record<string, unknown>[] = [];
let slowClosed = 0;

function usageFor(mode: string, prompt: number, completion: number): Record<string, unknown> {
  if (mode === 'INFLATE') return { prompt_tokens: prompt, completion_tokens: 1e12, total_tokens: prompt + 1e12 };
  if (mode === 'USAGE_HUGE') return { prompt_tokens: 2 ** 53, completion_tokens: completion };
  if (mode === 'USAGE_NEG') return { prompt_tokens: prompt, completion_tokens: -1 };
  if (mode === 'USAGE_FRAC') return { prompt_tokens: prompt, completion_tokens: completion + 0.5 };
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

beforeAll(async () => {
  const app = new Hono<{ Bindings: { outgoing: ServerResponse } }>();
  app.get('/v1/models', (c) => c.json({ object: 'list', data: [{ id: MODEL, object: 'model', created: 0, owned_by: 'test' }] }));
  app.post('/v1/chat/completions', async (c) => {
    const b = (await c.req.json()) as Record<string, unknown> & { messages: { content: string }[]; stream_options?: { include_usage?: boolean } };
    seen.push(b);
    const mode = b.messages[0]!.content.split(':')[0]!;
    const n = typeof b.n === 'number' ? b.n : 1;
    const per = Number(b.max_completion_tokens ?? b.max_tokens ?? 10_000);
    const usage = usageFor(mode, 7, n * per);
    if (b.stream !== true) {
      const choices = Array.from({ length: n }, (_, index) => ({ index, message: { role: 'assistant', content: ' tok'.repeat(per) }, finish_reason: 'length' }));
      return c.json({ id: 'x', object: 'chat.completion', created: 0, model: MODEL, choices, usage });
    }
    const te = new TextEncoder();
    const out = c.env.outgoing;
    if (mode === 'SLOW') out.on('close', () => void (out.writableFinished || slowClosed++));
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (i < per) {
          if (mode === 'SLOW' && i > 0) await new Promise((r) => setTimeout(r, 20));
          ctl.enqueue(te.encode(`data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 0, model: MODEL, choices: [{ index: 0, delta: { content: ' tok' }, finish_reason: null }] })}\n\n`));
          i++;
          return;
        }
        // The bad usage arrives well after the tokens, as at the end of a real answer.
        if (mode.startsWith('USAGE')) await new Promise((r) => setTimeout(r, 100));
        let tail = '';
        if (b.stream_options?.include_usage === true) tail += `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 0, model: MODEL, choices: [], usage })}\n\n`;
        ctl.enqueue(te.encode(`${tail}data: [DONE]\n\n`));
        ctl.close();
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  });
  upstream = await serve({ fetch: app.fetch as never });
  // Two workers in front of the same upstream: a failover would show as a second request there.
  s = await startStack({ workers: [{ upstream: upstream.url, model: { name: MODEL } }, { upstream: upstream.url, model: { name: MODEL } }] });
  client = await connect(s.enclaveUrl);
}, 60_000);
afterAll(async () => {
  await s?.stop();
  await upstream?.close(100);
});

/** A request with the account's API key inside the encrypted request. */
function ask(apiKey: string, body: Record<string, unknown>, o: { signal?: AbortSignal } = {}) {
  const req = bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json'], ['authorization', `Bearer ${apiKey}`]], new TextEncoder().encode(JSON.stringify({ model: MODEL, ...body })));
  const t = fetchTransport(`${s.enclaveUrl}/v1/ohttp`);
  return body.stream === true ? sendChunked(t, client.config, req, o.signal) : sendPlain(t, client.config, req, o.signal);
}

const account = (prepaid: bigint) => s.ledger!.createAccount({ currency: 'USD', prepaid }, Date.now());
const msg = (content: string) => [{ role: 'user', content }];
/** Every receipt the ledger holds for an account, decoded from its signed bytes. */
function receiptsOf(id: string): Receipt[] {
  const rows = s.ledger!.db.prepare('SELECT signed FROM receipts WHERE account = ? ORDER BY seq').all(id) as { signed: Uint8Array }[];
  return rows.map((r) => decodeReceipt((decodeDeterministic(new Uint8Array(r.signed)) as { receipt: Uint8Array }).receipt));
}
/** The stack's offers: 100,000 / 200,000 µUSD per million tokens in / out, no fee. */
const cost = (input: number, output: number) => computeCharge({ pricePerMInput: 100_000n, pricePerMOutput: 200_000n }, 0, input, output).total;

describe('billing cannot be inflated past the hold', () => {
  it('a worker reporting 10^12 output tokens is charged what it delivered; the prepaid balance stays above zero', async () => {
    const { apiKey, account: a } = await account(1000n);
    const r = await ask(apiKey, { messages: msg('INFLATE: go'), max_tokens: 5 });
    expect(r.status).toBe(200);
    const v = await verifyReceipt(parseReceiptHeader(r.headers.get('gm-receipt')!).signed, s.enclave.keys.receipt.publicKey);
    expect(v.receipt.outputTokens).toBeLessThanOrEqual(5);
    expect((await s.ledger!.account(a.id)).balance).toBe(1000n - v.receipt.total);
    expect((await s.ledger!.account(a.id)).balance).toBeGreaterThanOrEqual(0n);
  });

  it('n multiplies the hold: n=50 cannot be bought with the funds for one 100-token choice, and is forwarded capped', async () => {
    const content = 'N: fifty';
    const oneChoice = cost(content.length + 16 + 8, 100);
    const poor = await account(oneChoice);
    const before = seen.length;
    const r = await ask(poor.apiKey, { messages: msg(content), max_tokens: 100, n: 50 });
    expect(r.status).toBe(402);
    expect(seen.length).toBe(before);
    expect((await s.ledger!.account(poor.account.id)).balance).toBe(oneChoice);

    const hold = cost(content.length + 16 + 8, 5000);
    const rich = await account(hold);
    const ok = await ask(rich.apiKey, { messages: msg(content), max_tokens: 100, n: 50 });
    expect(ok.status).toBe(200);
    expect(seen.at(-1)).toMatchObject({ n: 50, max_tokens: 100, max_completion_tokens: 100 });
    const v = await verifyReceipt(parseReceiptHeader(ok.headers.get('gm-receipt')!).signed);
    expect(v.receipt.outputTokens).toBe(5000);
    expect(v.receipt.total).toBeLessThanOrEqual(hold);
    expect((await s.ledger!.account(rich.account.id)).balance).toBe(hold - v.receipt.total);
  });

  it('a request without max_tokens is forwarded with the 4096-token bound its hold covers', async () => {
    const { apiKey, account: a } = await account(10_000n);
    const r = await ask(apiKey, { messages: msg('DEFAULT: no bound') });
    expect(r.status).toBe(200);
    expect(seen.at(-1)).toMatchObject({ max_tokens: 4096, n: 1 });
    const v = await verifyReceipt(parseReceiptHeader(r.headers.get('gm-receipt')!).signed);
    expect(v.receipt.outputTokens).toBe(4096);
    expect((await s.ledger!.account(a.id)).balance).toBe(10_000n - v.receipt.total);
  });
});

describe('streams are always metered', () => {
  it('a stream without include_usage is billed its output tokens, and the client does not see the usage chunk', async () => {
    const { apiKey, account: a } = await account(10_000n);
    const r = await ask(apiKey, { messages: msg('PLAIN: stream'), max_tokens: 7, stream: true });
    expect(r.status).toBe(200);
    const { text, events } = await readSse(r.body);
    expect(text).toBe(' tok'.repeat(7));
    expect(seen.at(-1)).toMatchObject({ stream_options: { include_usage: true } });
    expect(events.some((e) => e.data.includes('"usage"'))).toBe(false);
    const [rc] = receiptsOf(a.id);
    expect([rc!.inputTokens, rc!.outputTokens, rc!.status]).toEqual([7, 7, undefined]);
  });

  it('a client that asked for usage still gets its usage chunk', async () => {
    const { apiKey } = await account(10_000n);
    const r = await ask(apiKey, { messages: msg('PLAIN: stream'), max_tokens: 3, stream: true, stream_options: { include_usage: true } });
    const { events } = await readSse(r.body);
    expect(events.filter((e) => e.data.includes('"usage"') && !e.event).length).toBe(1);
  });
});

describe('a client that hangs up mid-stream', () => {
  it('is charged for what it was sent, with a cancelled receipt, and the cancel does not count against the worker', async () => {
    const { apiKey, account: a } = await account(100_000n);
    const ac = new AbortController();
    const r = await ask(apiKey, { messages: msg('SLOW: long'), max_tokens: 2000, stream: true }, { signal: ac.signal });
    expect(r.status).toBe(200);
    const reader = r.body.getReader();
    let got = '';
    while ((got.match(/ tok/g) ?? []).length < 5) {
      const x = await reader.read();
      got += new TextDecoder().decode(x.value);
    }
    ac.abort();
    await reader.cancel().catch(() => undefined);
    await expect.poll(() => receiptsOf(a.id).length, { timeout: 15_000, interval: 20 }).toBe(1);
    const rc = receiptsOf(a.id)[0]!;
    expect(rc.status).toBe('cancelled');
    expect(rc.outputTokens).toBeGreaterThanOrEqual(1);
    expect(rc.outputTokens).toBeLessThan(2000);
    expect((await s.ledger!.account(a.id)).balance).toBe(100_000n - rc.total);
    expect(await s.ledger!.available(a.id)).toBe(100_000n - rc.total);
    await expect.poll(() => slowClosed, { timeout: 15_000, interval: 20 }).toBe(1);
    for (const e of s.market!.book.offers(Date.now())) {
      expect(e.stats.inFlight).toBe(0);
      expect(e.stats.errorRate).toBe(0);
    }
  });
});

describe('out-of-range usage is a worker fault', () => {
  const unhealthy = () => [...s.market!.book.offers(Date.now())].filter((e) => e.stats.unhealthy(Date.now())).map((e) => e.offer.workerId);

  for (const mode of ['USAGE_HUGE', 'USAGE_NEG', 'USAGE_FRAC']) {
    it(`${mode}: a non-streamed answer is a coded 502, the prompt reaches one worker, nothing is charged, the worker is demoted`, async () => {
      for (const e of s.market!.book.offers(Date.now())) e.stats.errorRate = 0, e.stats.samples = 0, e.stats.lastErrorAt = -Infinity;
      const { apiKey, account: a } = await account(10_000n);
      const before = seen.length;
      const r = await ask(apiKey, { messages: msg(`${mode}: x`), max_tokens: 4 });
      expect(r.status).toBe(502);
      expect(((await new Response(r.body).json()) as { error: { code: string } }).error.code).toBe('WORKER_USAGE_INVALID');
      expect(seen.length - before).toBe(1);
      expect((await s.ledger!.account(a.id)).balance).toBe(10_000n);
      expect(await s.ledger!.available(a.id)).toBe(10_000n);
      expect(unhealthy().length).toBe(1);
    });
  }

  it('a streamed answer with negative usage ends with a coded error event, uncharged, and the worker is demoted', async () => {
    for (const e of s.market!.book.offers(Date.now())) e.stats.errorRate = 0, e.stats.samples = 0, e.stats.lastErrorAt = -Infinity;
    const { apiKey, account: a } = await account(10_000n);
    const before = seen.length;
    const r = await ask(apiKey, { messages: msg('USAGE_NEG: s'), max_tokens: 4, stream: true });
    expect(r.status).toBe(200);
    const { events } = await readSse(r.body);
    expect(events.at(-1)).toMatchObject({ event: 'error' });
    expect(JSON.parse(events.at(-1)!.data).error.code).toBe('WORKER_USAGE_INVALID');
    expect(events.some((e) => e.event === 'gm.receipt')).toBe(false);
    expect(seen.length - before).toBe(1);
    expect(await s.ledger!.available(a.id)).toBe(10_000n);
    expect(unhealthy().length).toBe(1);
  });
});

describe('the signed chain head', () => {
  it('is served at /v1/ledger/head, signed by the attested receipt key', async () => {
    const r = await fetch(`${s.enclaveUrl}/v1/ledger/head`);
    expect(r.status).toBe(200);
    const h = await verifyHead(parseHeadJson(new Uint8Array(await r.arrayBuffer())));
    expect(Buffer.from(h.signer).equals(Buffer.from(s.enclave.keys.receipt.publicKey))).toBe(true);
    expect(h.seq).toBeLessThanOrEqual(s.ledger!.head.seq);
    expect(s.logs.some((l) => l.includes('"ledger.head"'))).toBe(true);
  });
});
