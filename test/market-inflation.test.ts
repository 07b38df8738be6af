/**
 * A worker that inflates its usage, through the sim stack: its dev-model reports ten times the tokens it streamed.
 * The enclave charges its own bound, logs the over-report (the metric is counted in enclave/market/router.test.ts)
 * and demotes the worker's offer, so the next request goes to the honest (dearer) worker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReceiptHeader, verifyReceipt } from '../protocol/receipt.ts';
import { connect, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const MODEL = 'gm-dev';
let stack: Stack;
let client: TestClient;

beforeAll(async () => {
  stack = await startStack({
    workers: [
      { model: { name: MODEL, inflateUsage: 10 }, offer: { pricePerMInput: 100_000n, pricePerMOutput: 200_000n } },
      { model: { name: MODEL }, offer: { pricePerMInput: 300_000n, pricePerMOutput: 600_000n } },
    ],
  });
  client = await connect(stack.enclaveUrl);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

async function served(): Promise<{ workerId: string; outputTokens: number }> {
  const res = await client.post('/v1/chat/completions', { model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'count' }] });
  expect(res.status).toBe(200);
  await new Response(res.body).arrayBuffer();
  const r = (await verifyReceipt(parseReceiptHeader(res.headers.get('gm-receipt')!).signed)).receipt;
  return { workerId: r.workerId, outputTokens: r.outputTokens };
}

describe('an inflating worker', () => {
  it('is charged the enclave bound, flagged, and its offer demoted for the next request', async () => {
    const [inflating, honest] = [stack.workers[0]!.worker.id, stack.workers[1]!.worker.id];
    const first = await served();
    expect(first.workerId).toBe(inflating);
    // 50 tokens streamed, 500 reported: the charge stays within the enclave's own count.
    expect(first.outputTokens).toBeLessThan(500);
    expect(stack.logs.some((l) => l.includes('market.usage_inflated') && l.includes(inflating))).toBe(true);
    expect((await served()).workerId).toBe(honest);
  });
});
