/**
 * Usage counted with the model family's tokenizer, through the sim stack: two workers serve `gpt-oss-20b` (the
 * o200k_harmony family, enclave/market/tokenizers.ts) from OpenAI-like upstreams that answer 60 words, well short of
 * the 1000 tokens the hold allows. The cheaper one reports 1.5 times the answer's tokens: far below the byte bound
 * and the hold, so only the enclave's token count catches it: it is flagged, charged the token bound and demoted.
 * The honest one reports the answer's tokens plus the format tokens a Harmony answer generates, and is charged that.
 */
import { Hono } from 'hono';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_harmony';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SPECIAL_TOKENS_PER_CHOICE, utf8Length } from '../enclave/market/metering.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { parseReceiptEnvelope, parseReceiptHeader, verifyReceipt } from '../protocol/receipt.ts';
import { connect, readSse, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const MODEL = 'gpt-oss-20b';
const ANSWER = ' The quick enclave routes sealed tokens to attested workers, and nobody else reads them.'.repeat(4);
const TOKENS = countTokens(ANSWER, { disallowedSpecial: new Set() });
/** <|channel|>final<|message|> before the answer and <|return|> after it. */
const FORMAT_TOKENS = 4;
let stack: Stack;
let client: TestClient;
const upstreams: Served[] = [];

/** An OpenAI-like upstream answering ANSWER (streamed word by word when asked) and reporting `completion` tokens. */
function upstream(completion: number): Hono {
  const app = new Hono();
  app.get('/v1/models', (c) => c.json({ object: 'list', data: [{ id: MODEL, object: 'model', created: 0, owned_by: 'test' }] }));
  app.post('/v1/chat/completions', async (c) => {
    const b = (await c.req.json()) as { stream?: boolean };
    const usage = { prompt_tokens: 3, completion_tokens: completion, total_tokens: 3 + completion };
    if (b.stream !== true) return c.json({ id: 'x', object: 'chat.completion', created: 0, model: MODEL, choices: [{ index: 0, message: { role: 'assistant', content: ANSWER }, finish_reason: 'stop' }], usage });
    const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
    const words = ANSWER.split(/(?= )/).map((w) => ev({ id: 'x', object: 'chat.completion.chunk', created: 0, model: MODEL, choices: [{ index: 0, delta: { content: w }, finish_reason: null }] }));
    const tail = ev({ id: 'x', object: 'chat.completion.chunk', created: 0, model: MODEL, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) + ev({ id: 'x', object: 'chat.completion.chunk', created: 0, model: MODEL, choices: [], usage });
    return new Response(`${words.join('')}${tail}data: [DONE]\n\n`, { headers: { 'content-type': 'text/event-stream' } });
  });
  return app;
}

beforeAll(async () => {
  for (const completion of [Math.round(TOKENS * 1.5), TOKENS + FORMAT_TOKENS]) upstreams.push(await serve({ fetch: upstream(completion).fetch as never }));
  stack = await startStack({
    workers: [
      { upstream: upstreams[0]!.url, model: { name: MODEL }, offer: { pricePerMInput: 100_000n, pricePerMOutput: 200_000n } },
      { upstream: upstreams[1]!.url, model: { name: MODEL }, offer: { pricePerMInput: 300_000n, pricePerMOutput: 600_000n } },
    ],
  });
  client = await connect(stack.enclaveUrl);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
  for (const u of upstreams) await u.close(100);
});

const ask = (stream: boolean) => client.post('/v1/chat/completions', { model: MODEL, max_tokens: 1000, stream, messages: [{ role: 'user', content: 'count' }] }, { stream });

describe('usage checked with the tokenizer', () => {
  it('flags a worker inflating within the byte bound and the hold, charges it the token bound; the honest worker is charged its report', async () => {
    const [inflating, honest] = [stack.workers[0]!.worker.id, stack.workers[1]!.worker.id];
    // The premise: the inflated report is within the byte bound and the hold, so only the token count can catch it.
    expect(Math.round(TOKENS * 1.5)).toBeLessThan(Math.min(utf8Length(ANSWER), 1000));
    const res = await ask(false);
    expect(res.status).toBe(200);
    await new Response(res.body).arrayBuffer();
    const first = (await verifyReceipt(parseReceiptHeader(res.headers.get('gm-receipt')!).signed)).receipt;
    expect(first.workerId).toBe(inflating);
    expect(first.outputTokens).toBe(TOKENS + SPECIAL_TOKENS_PER_CHOICE);
    expect(stack.logs.filter((l) => l.includes('market.usage_inflated') && l.includes(inflating))).toHaveLength(1);
    // Demoted: the next request, streamed, goes to the honest worker, which is charged exactly its report.
    const r2 = await ask(true);
    const { events } = await readSse(r2.body);
    const env = parseReceiptEnvelope(JSON.parse(events.find((e) => e.event === 'gm.receipt')!.data));
    const second = (await verifyReceipt(env.signed)).receipt;
    expect(second.workerId).toBe(honest);
    expect(second.outputTokens).toBe(TOKENS + FORMAT_TOKENS);
    expect(stack.logs.some((l) => l.includes('market.usage_inflated') && l.includes(honest))).toBe(false);
  });
});
