/**
 * Payments through the real stack (docs/market.md "Payments and the ledger"): accounts identified by an API key
 * carried inside the encrypted request; the debit is checked before dispatch, 402 with a clear code when it cannot
 * be covered; settled on the receipt. The API key travels as `Authorization: Bearer gm_...` inside the binary HTTP request, so only the
 * enclave sees it. Checked at the HTTP level (status and code the client gets) and at the workers' sockets (a
 * request that cannot be paid for reaches no worker).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchTransport, sendPlain } from '../enclave/ohttp/client.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { parseReceiptHeader, verifyReceipt } from '../protocol/receipt.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { connect, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const PROMPT = 'PAYMENT-CANARY: who pays for this answer?';
let s: Stack;
let client: TestClient;

beforeAll(async () => {
  s = await startStack();
  client = await connect(s.enclaveUrl);
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

/** A chat completion with the API key inside the encrypted request. */
function ask(apiKey: string, model: string) {
  const body = new TextEncoder().encode(JSON.stringify({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 6 }));
  const req = bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json'], ['authorization', `Bearer ${apiKey}`]], body);
  return sendPlain(fetchTransport(`${s.enclaveUrl}/v1/ohttp`), client.config, req);
}

const atWorkers = () => s.workers.reduce((n, w) => n + w.requestsAtSocket(), 0);

describe('payments through the stack', () => {
  it('402 PAYMENT_INSUFFICIENT_FUNDS before dispatch when the prepaid balance cannot cover the request', async () => {
    const { apiKey, account } = await s.ledger!.createAccount({ currency: 'USD', prepaid: 0n }, Date.now());
    const before = atWorkers();
    const r = await ask(apiKey, s.workers[0]!.modelName);
    expect(r.status).toBe(402);
    const j = (await new Response(r.body).json()) as { error: { code: string; message: string } };
    expect(j.error.code).toBe('PAYMENT_INSUFFICIENT_FUNDS');
    expect(j.error.message).not.toContain('PAYMENT-CANARY');
    expect(atWorkers()).toBe(before);
    expect((await s.ledger!.account(account.id)).balance).toBe(0n);
  });

  it('401 ACCOUNT_UNKNOWN for a key this ledger never issued, also before dispatch', async () => {
    const before = atWorkers();
    const r = await ask('gm_this-key-was-never-issued-by-the-ledger', s.workers[0]!.modelName);
    expect(r.status).toBe(401);
    expect(((await new Response(r.body).json()) as { error: { code: string } }).error.code).toBe('ACCOUNT_UNKNOWN');
    expect(atWorkers()).toBe(before);
  });

  it('a funded account is served and debited exactly the signed receipt total', async () => {
    const opening = 1_000_000n;
    const { apiKey, account } = await s.ledger!.createAccount({ currency: 'USD', prepaid: opening }, Date.now());
    const model = s.workers[1]!.modelName;
    const r = await ask(apiKey, model);
    expect(r.status).toBe(200);
    const j = (await new Response(r.body).json()) as { choices: { message: { content: string } }[] };
    expect(j.choices[0]!.message.content).toBe(devAnswer(model, 6));
    const v = await verifyReceipt(parseReceiptHeader(r.headers.get('gm-receipt')!).signed, s.enclave.keys.receipt.publicKey);
    expect(v.receipt.total).toBeGreaterThan(0n);
    expect((await s.ledger!.account(account.id)).balance).toBe(opening - v.receipt.total);
    expect(s.logs.join('')).not.toContain('PAYMENT-CANARY');
    expect(s.logs.join('')).not.toContain(apiKey);
  });
});
