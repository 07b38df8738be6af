/**
 * A worker that fails after the first token, through the real stack (enclave, sim worker, dev model or an
 * OpenAI-like upstream; docs/market.md "Metering"): the client keeps what it was sent, so it is charged for exactly
 * that, once, with a signed receipt whose status is `failed`, sent in the stream before the error event and covering
 * the stream chain the client computed; the rest of the hold is released; a retry is a request of its own; and the
 * receipt file and the ledger pass `gm receipts verify` (signature, chain, offer, rows, credits, head, audit).
 *
 * Two ways to fail: the dev model drops its TCP connection after 5 tokens (WORKER_FAILED_MID_STREAM), and an
 * upstream ends its stream cleanly after 3 tokens and a usage chunk, but without `[DONE]` (WORKER_STREAM_INCOMPLETE).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stripReceiptEvents } from '../client/receipts.ts';
import { verifyLedger, verifyReceiptFile } from '../enclave/ledger/verify.ts';
import { utf8Length } from '../enclave/market/metering.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { parseReceiptEnvelope, type Receipt, verifyReceipt } from '../protocol/receipt.ts';
import { checkStreamCommitment } from '../protocol/stream-chain.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { connect, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const DIES = 'dies-mid-stream';
const UNFINISHED = 'ends-unfinished';
let upstream: Served;
let s: Stack;
let client: TestClient;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(`${tmpdir()}/gm-midstream-`);
  const app = new Hono();
  app.get('/v1/models', (c) => c.json({ object: 'list', data: [{ id: UNFINISHED, object: 'model', created: 0, owned_by: 'test' }] }));
  app.post('/v1/chat/completions', async (c) => {
    await c.req.json();
    const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
    const chunk = (content: string) => ev({ id: 'x', object: 'chat.completion.chunk', created: 0, model: UNFINISHED, choices: [{ index: 0, delta: { content }, finish_reason: null }] });
    // Three tokens and the worker's usage report, then the stream closes without [DONE].
    const body = chunk(' one') + chunk(' two') + chunk(' three') + ev({ id: 'x', object: 'chat.completion.chunk', created: 0, model: UNFINISHED, choices: [], usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 } });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  });
  upstream = await serve({ fetch: app.fetch as never });
  s = await startStack({ workers: [{ model: { name: DIES, failAfter: 5, tokenMs: 2 } }, { upstream: upstream.url, model: { name: UNFINISHED } }] });
  client = await connect(s.enclaveUrl);
}, 60_000);

afterAll(async () => {
  await s?.stop();
  await upstream?.close(100);
  rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  readonly text: string;
  readonly events: { event?: string; data: string }[];
  readonly receipt: Receipt;
  readonly envelope: string;
}

/** Streams one request as the SDK reads it: receipt events stripped and checked against the chain the client saw. */
async function streamOnce(model: string): Promise<Outcome> {
  const r = await client.post('/v1/chat/completions', { model, stream: true, max_tokens: 50, messages: [{ role: 'user', content: 'go' }] }, { stream: true });
  expect(r.status).toBe(200);
  let receipt: Receipt | undefined;
  let envelope = '';
  const raw = await new Response(
    r.body.pipeThrough(
      stripReceiptEvents(async (data, received) => {
        envelope = data;
        const v = await verifyReceipt(parseReceiptEnvelope(JSON.parse(data)).signed, s.enclave.keys.receipt.publicKey);
        checkStreamCommitment(v.receipt.stream, received);
        receipt = v.receipt;
      }),
    ),
  ).text();
  const events = raw.split('\n\n').filter((e) => e.trim()).map((e) => {
    const lines = e.split('\n');
    const event = lines.find((l) => l.startsWith('event:'))?.slice(6).trim();
    const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
    return event ? { event, data } : { data };
  });
  let text = '';
  for (const e of events) if (!e.event && e.data.startsWith('{')) text += (JSON.parse(e.data) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '';
  expect(receipt).toBeDefined();
  return { text, events, receipt: receipt!, envelope };
}

const receiptCount = () => (s.ledger!.db.prepare('SELECT COUNT(*) AS n FROM receipts').get() as { n: number }).n;

describe('a worker that fails mid-stream', () => {
  it('dropping its connection: the client is charged once for the 5 tokens it was sent, with a failed receipt before the error', async () => {
    const before = receiptCount();
    const o = await streamOnce(DIES);
    expect(o.text).toBe(devAnswer(DIES, 5));
    expect(o.events.at(-1)!.event).toBe('error');
    expect(JSON.parse(o.events.at(-1)!.data).error.code).toBe('WORKER_FAILED_MID_STREAM');
    expect(o.events.some((e) => e.data === '[DONE]')).toBe(false);
    expect(o.receipt.status).toBe('failed');
    expect(o.receipt.workerId).toBe(s.workers[0]!.worker.id);
    // No usage report arrived before the drop: the enclave's estimate of what it sent, ceil(bytes / 4).
    expect(o.receipt.outputTokens).toBe(Math.ceil(utf8Length(devAnswer(DIES, 5)) / 4));
    expect(o.receipt.stream!.chunks).toBe(5);
    expect(receiptCount()).toBe(before + 1);
    const a = await s.ledger!.account(o.receipt.account);
    // Nothing else holds this account's funds: the rest of the hold was released.
    expect(await s.ledger!.available(o.receipt.account)).toBe(a.balance + a.creditLimit);
    // A retry is a new request: its own receipt; the first is not charged again.
    const retry = await streamOnce(DIES);
    expect(retry.receipt.requestId).not.toBe(o.receipt.requestId);
    expect(receiptCount()).toBe(before + 2);
    const after = await s.ledger!.account(o.receipt.account);
    expect(a.balance - after.balance).toBe(retry.receipt.total);
    // `gm receipts verify FILE` accepts the envelope the client received.
    const file = await verifyReceiptFile(new TextEncoder().encode(o.envelope), 'receipt.json', [s.enclave.keys.receipt.publicKey]);
    expect(file.checks.filter((c) => c.status === 'fail')).toEqual([]);
  }, 30_000);

  it('ending its stream without [DONE]: charged its own report of the 3 tokens, with a failed receipt', async () => {
    const o = await streamOnce(UNFINISHED);
    expect(o.text).toBe(' one two three');
    expect(JSON.parse(o.events.at(-1)!.data).error.code).toBe('WORKER_STREAM_INCOMPLETE');
    expect([o.receipt.status, o.receipt.outputTokens, o.receipt.inputTokens]).toEqual(['failed', 3, 4]);
    expect(o.receipt.workerId).toBe(s.workers[1]!.worker.id);
  }, 30_000);

  it('the ledger with its failed receipts passes every audit (rows, credits, head, balances)', async () => {
    const path = `${dir}/ledger.sqlite`;
    s.ledger!.db.exec(`VACUUM INTO '${path}'`);
    const h = await s.ledger!.signedHead(Date.now());
    const head = new TextEncoder().encode(JSON.stringify({ type: 'gm.ledger-head', v: 1, head: Buffer.from(h.signed).toString('base64url') }));
    const report = await verifyLedger(path, [s.enclave.keys.receipt.publicKey], { head });
    expect(report.checks.filter((c) => c.status !== 'pass')).toEqual([]);
    expect(report.checks.find((c) => c.id === 'receipts.decode+signature')!.detail).toBe('3 receipt(s)');
    expect(report.verified).toBe(true);
  }, 30_000);
});
