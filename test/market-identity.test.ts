/**
 * Attested model identity through the whole sim stack: each worker states what serves its model (weights digest,
 * quantization, engine) in a model manifest bound in its REPORT_DATA and repeats it in its signed offer. A request
 * with provider.quantizations ["fp8"] goes to the fp8 worker although a bf16 one is cheaper, and its signed receipt
 * names the weights digest, quantization and engine; a worker whose offer claims an identity its evidence does not
 * state has that offer refused, so it never serves an identity-constrained request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBase64, hex } from '../attestation/bytes.ts';
import { main } from '../cli/main.ts';
import { nodeIo } from '../cli/io.ts';
import { verifyOfferSignatures } from '../protocol/offer.ts';
import { checkReceiptAgainstOffer, parseReceiptHeader, verifyReceipt } from '../protocol/receipt.ts';
import { testIdentity } from './market-fixtures.ts';
import { connect, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const MODEL = 'gm-dev';
const fp8 = testIdentity('fp8', { engineVersion: '0.7.1', contextLength: 65_536 });
const bf16 = testIdentity('bf16');
let stack: Stack;
let client: TestClient;

beforeAll(async () => {
  stack = await startStack({
    workers: [
      { model: { name: MODEL }, identity: fp8, offer: { pricePerMInput: 300_000n, pricePerMOutput: 600_000n } },
      { model: { name: MODEL }, identity: bf16, offer: { pricePerMInput: 100_000n, pricePerMOutput: 200_000n } },
      // Cheapest, and its offer claims fp8 while its evidence states bf16.
      { model: { name: MODEL }, identity: bf16, offerIdentity: fp8, offer: { pricePerMInput: 10_000n, pricePerMOutput: 20_000n } },
    ],
  });
  client = await connect(stack.enclaveUrl);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

const ask = (extra: object) => client.post('/v1/chat/completions', { model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'hello' }], ...extra });

async function receiptOf(extra: object) {
  const res = await ask(extra);
  expect(res.status).toBe(200);
  await new Response(res.body).arrayBuffer();
  const env = parseReceiptHeader(res.headers.get('gm-receipt')!);
  const v = await verifyReceipt(env.signed, stack.enclave.keys.receipt.publicKey);
  checkReceiptAgainstOffer(v.receipt, await verifyOfferSignatures(env.offer!, {}));
  return v.receipt;
}

describe('attested model identity through the stack', () => {
  it("the lying worker's offer is refused (OFFER_IDENTITY_UNATTESTED); the honest ones are in the book", () => {
    const liar = stack.workers[2]!.worker.id;
    expect(stack.logs.some((l) => l.includes('market.offer_refused') && l.includes(liar) && l.includes('OFFER_IDENTITY_UNATTESTED'))).toBe(true);
    expect(stack.market!.book.size).toBe(2);
  });

  it('a request with provider.quantizations ["fp8"] is routed only to the fp8 offer and its receipt names the weights digest', async () => {
    const fp8Worker = stack.workers[0]!.worker.id;
    for (let i = 0; i < 3; i++) {
      const r = await receiptOf({ provider: { quantizations: ['fp8'] } });
      expect(r.workerId).toBe(fp8Worker);
      expect(hex(r.weightsDigest!)).toBe(hex(fp8.weightsDigest));
      expect(r.quantization).toBe('fp8');
      expect(r.engine).toBe('vllm/0.7.1');
    }
    // Unconstrained, price decides: the bf16 worker, and its receipt says bf16.
    const cheap = await receiptOf({});
    expect(cheap.workerId).toBe(stack.workers[1]!.worker.id);
    expect(cheap.quantization).toBe('bf16');
  });

  it('a live receipt is proven against the public listing by gm receipts prove (best execution)', async () => {
    const res = await ask({ provider: { quantizations: ['fp8', 'bf16'] } });
    expect(res.status).toBe(200);
    await new Response(res.body).arrayBuffer();
    const env = JSON.parse(new TextDecoder().decode(fromBase64(res.headers.get('gm-receipt')!, 'header'))) as object;
    const listing = await (await fetch(`${stack.enclaveUrl}/v1/market/offers`)).text();
    const dir = mkdtempSync(join(tmpdir(), 'gm-prove-stack-'));
    try {
      writeFileSync(join(dir, 'receipt.json'), JSON.stringify(env));
      writeFileSync(join(dir, 'offers.json'), listing);
      let out = '';
      const code = await main(['receipts', 'prove', '--receipt', join(dir, 'receipt.json'), '--offers', join(dir, 'offers.json'), '--key', hex(stack.enclave.keys.receipt.publicKey), '--json'], { ...nodeIo, out: (s) => void (out += s), err: (s) => void (out += s) });
      expect(code).toBe(0);
      expect(JSON.parse(out)).toMatchObject({ proven: true, rank: 0, considered: 2, eligible: 2, better: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('/v1/models shows the attested context length and quantizations', async () => {
    const res = await client.get(`/v1/models/${MODEL}`);
    const card = JSON.parse(await new Response(res.body).text()) as { context_length: number; quantizations: string[] };
    expect(card.context_length).toBe(65_536);
    expect(card.quantizations).toEqual(['bf16', 'fp8']);
  });

  it('a quantization nobody attests is 503 NO_ELIGIBLE_OFFER naming the constraint', async () => {
    const res = await ask({ provider: { quantizations: ['int4'] } });
    expect(res.status).toBe(503);
    const body = JSON.parse(await new Response(res.body).text()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('NO_ELIGIBLE_OFFER');
    expect(body.error.message).toContain('2 quantization or weights not requested');
  });
});
