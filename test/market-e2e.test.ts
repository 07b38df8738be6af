/**
 * The market end to end through the real stack on loopback in sim mode: an
 * enclave whose router is the market (enclave/market/router.ts) with a ledger signed by the enclave's attested
 * receipt key, two workers in front of two dev-models serving the same model, each registering with signed offers
 * (Ed25519 worker key bound in its evidence + sr25519 hotkey), and the stack's OHTTP test client.
 *
 *  - max_price below every offer → the request fails clearly: 503 NO_ELIGIBLE_OFFER saying both offers were over
 *    max_price, and no worker saw a request;
 *  - sort: latency → the faster dev-model, chosen by live TTFT (the offers advertise the opposite, so only the
 *    measurement can pick right); the default (price) goes to the cheaper, slower one;
 *  - every answer carries a receipt signed by the attested receipt key that verifies against its signed offer, and
 *    the ledger's chain verifies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { equalBytes } from '../attestation/bytes.ts';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { verifyLedger } from '../enclave/ledger/verify.ts';
import { generateEnclaveKeys } from '../enclave/keys.ts';
import { createLogger } from '../enclave/log.ts';
import { createMarket } from '../enclave/market/index.ts';
import { marketRouter } from '../enclave/market/router.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { hotkeyFromSeed, signOffer, verifyOfferSignatures } from '../protocol/offer.ts';
import { checkReceiptAgainstOffer, parseReceiptEnvelope, parseReceiptHeader, verifyReceipt } from '../protocol/receipt.ts';
import { startWorker, type RunningWorker } from '../worker/agent.ts';
import { devModelApp } from '../worker/dev-model/server.ts';
import { simGpuSource } from '../worker/gpu.ts';
import { connect, readSse, type TestClient } from './stack/client.ts';
import { simVendors, simWorkerPolicy } from './stack/harness.ts';

const MODEL = 'gm-dev';
const logs: string[] = [];
let enclave: Enclave;
let enclaveServer: Served;
let ledger: SqliteLedger;
let client: TestClient;
const models: Served[] = [];
const workers: RunningWorker[] = [];
let seen = [0, 0];
let fast: RunningWorker;
let slow: RunningWorker;

beforeAll(async () => {
  const { amd, nvidia } = await simVendors();
  const sink = (l: string) => void logs.push(l);
  const log = (service: string) => createLogger({ service, sim: true, sink, level: 'debug' });
  const keys = await generateEnclaveKeys();
  ledger = SqliteLedger.open(':memory:', { signer: keys.receipt });
  const house = (await ledger.createAccount({ currency: 'USD', creditLimit: 1_000_000_000n }, Date.now())).account;
  const market = createMarket({ feeBasisPoints: 300 });
  const m = marketRouter({ market, ledger, enclaveSim: true, anonymous: house, log: log('market') });
  enclave = await createEnclave({
    tee: simProvider({ amd }),
    log: log('enclave'),
    keys,
    workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 10 * 60_000 },
    router: m.router,
    onWorkerChange: m.onWorkerChange,
    market: m.surface,
  });
  enclaveServer = await serve({ fetch: enclave.app.fetch });
  const nowS = Math.floor(Date.now() / 1000);
  // Worker 0: slow (40 ms per token) but cheap, and it advertises a 5 ms TTFT. Worker 1: fast, dearer, says 900 ms.
  const specs = [
    { tokenMs: 40, inPerM: 400_000n, outPerM: 800_000n, ttftMs: 5, seed: 11 },
    { tokenMs: 0, inPerM: 600_000n, outPerM: 1_200_000n, ttftMs: 900, seed: 12 },
  ];
  for (const [i, s] of specs.entries()) {
    const model = await serve({ fetch: devModelApp({ name: MODEL, tokenMs: s.tokenMs }).fetch });
    models.push(model);
    const hotkey = hotkeyFromSeed(new Uint8Array(32).fill(s.seed));
    const w = await startWorker({
      upstream: model.url,
      enclaves: [enclaveServer.url],
      tee: simProvider({ amd }),
      gpu: simGpuSource({ signer: nvidia }),
      fetch,
      now: () => new Date(),
      log: log(`worker-${i}`),
      offers: async (k) => [
        await signOffer(
          { v: 1, offerId: `${k.workerId}-dev`, sequence: 1, workerId: k.workerId, workerKey: k.signing.publicKey, hotkey: hotkey.address, model: MODEL, currency: 'USD', pricePerMInput: s.inPerM, pricePerMOutput: s.outPerM, terms: { kind: 'per-request' }, capacity: 8, ttftMs: s.ttftMs, tokensPerSecond: 50, validFrom: nowS - 60, validUntil: nowS + 3600 },
          k.signing.privateKey,
          hotkey.secretKey,
        ),
      ],
    });
    w.served.server.on('request', (req: { method?: string; url?: string }) => {
      if (req.method === 'POST' && req.url === '/v1/ohttp') seen[i]!++;
    });
    await w.registered;
    workers.push(w);
  }
  [slow, fast] = [workers[0]!, workers[1]!];
  client = await connect(enclaveServer.url);
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await enclave?.close();
  await enclaveServer?.close(200);
  await Promise.all(models.map((m) => m.close(200)));
  ledger?.close();
});

const ask = (extra: object) => client.post('/v1/chat/completions', { model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'which worker is fastest?' }], ...extra });

async function servedBy(res: { status: number; headers: Headers; body: ReadableStream<Uint8Array> }): Promise<{ workerId: string; signed: Uint8Array; offer: Uint8Array }> {
  expect(res.status).toBe(200);
  await new Response(res.body).arrayBuffer();
  const env = parseReceiptHeader(res.headers.get('gm-receipt')!);
  const v = await verifyReceipt(env.signed, enclave.keys.receipt.publicKey);
  checkReceiptAgainstOffer(v.receipt, await verifyOfferSignatures(env.offer!, {}));
  expect(v.receipt.sim).toBe(true);
  return { workerId: v.receipt.workerId, signed: env.signed, offer: env.offer! };
}

describe('market through the stack', () => {
  it('both workers registered their signed offers', () => {
    expect(enclave.registry.list().map((w) => w.id).sort()).toEqual([slow.id, fast.id].sort());
  });

  it('max_price below every offer fails clearly, before any worker is contacted', async () => {
    seen = [0, 0];
    const res = await ask({ provider: { max_price: { prompt: 0.1, completion: 0.1 } } });
    expect(res.status).toBe(503);
    const body = JSON.parse(await new Response(res.body).text()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('NO_ELIGIBLE_OFFER');
    expect(body.error.message).toBe(`no eligible offer for model "${MODEL}" among 2 offers: 2 over max_price`);
    expect(seen).toEqual([0, 0]);
    expect(logs.join('\n')).not.toContain('which worker is fastest?');
  });

  it('the default sort (price) picks the cheaper worker; sort: latency picks the faster one by live TTFT', async () => {
    expect((await servedBy(await ask({}))).workerId).toBe(slow.id);
    // One measured request to each (pinned with provider.order, no fallbacks) replaces the advertised TTFTs.
    expect((await servedBy(await ask({ provider: { order: [fast.id], allow_fallbacks: false } }))).workerId).toBe(fast.id);
    expect((await servedBy(await ask({ provider: { order: [slow.id], allow_fallbacks: false } }))).workerId).toBe(slow.id);
    for (let i = 0; i < 3; i++) expect((await servedBy(await ask({ provider: { sort: 'latency' } }))).workerId).toBe(fast.id);
  });

  it('streams end with a gm.receipt event before [DONE], and the ledger verifies end to end', async () => {
    const res = await ask({ stream: true, stream_options: { include_usage: true }, provider: { sort: 'latency' } });
    expect(res.status).toBe(200);
    const { events } = await readSse(res.body);
    const i = events.findIndex((e) => e.event === 'gm.receipt');
    expect(i).toBe(events.length - 2);
    expect(events.at(-1)!.data).toBe('[DONE]');
    const env = parseReceiptEnvelope(JSON.parse(events[i]!.data));
    const v = await verifyReceipt(env.signed, enclave.keys.receipt.publicKey);
    expect(v.receipt.workerId).toBe(fast.id);
    expect(v.receipt.outputTokens).toBe(8);
    expect(equalBytes(v.receipt.receiptKey, enclave.bootBundle.keys.receipt!)).toBe(true);
    // fee 3% on top of the worker cost, rounded up
    expect(v.receipt.fee).toBe((v.receipt.workerCost * 300n + 9_999n) / 10_000n);
  });
});

describe('the ledger behind it', () => {
  it('holds one receipt per served request, chained, priced by the signed offers, balances agreeing', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = `${fs.mkdtempSync(`${os.tmpdir()}/gm-e2e-`)}/ledger.sqlite`;
    ledger.db.exec(`VACUUM INTO '${path}'`);
    const h = await ledger.signedHead(Date.now());
    const head = new TextEncoder().encode(JSON.stringify({ type: 'gm.ledger-head', v: 1, head: Buffer.from(h.signed).toString('base64url') }));
    const report = await verifyLedger(path, [enclave.keys.receipt.publicKey], { head });
    expect(report.checks.filter((c) => c.status !== 'pass')).toEqual([]);
    expect(report.checks.find((c) => c.id === 'receipts.decode+signature')!.detail).toBe('7 receipt(s)');
    fs.rmSync(path.replace(/\/ledger\.sqlite$/, ''), { recursive: true, force: true });
  });
});
