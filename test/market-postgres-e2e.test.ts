/**
 * The enclave's market on a PostgreSQL ledger, through the real stack (enclave, sim worker, dev model; docs/design.md
 * §6.1): a paid request gets its receipt and moves the balance; while PostgreSQL restarts the enclave answers 503
 * LEDGER_UNAVAILABLE inside the encrypted response and keeps running, and serves again once the server is back; the
 * database never holds the prompt, the API key, the account id or the model in clear.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { generateEnclaveKeys } from '../enclave/keys.ts';
import { PostgresLedger } from '../enclave/ledger/postgres.ts';
import { createLogger } from '../enclave/log.ts';
import { createMarket } from '../enclave/market/index.ts';
import { marketRouter } from '../enclave/market/router.ts';
import { fetchTransport, sendPlain } from '../enclave/ohttp/client.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { hotkeyFromSeed, signOffer } from '../protocol/offer.ts';
import { parseReceiptHeader, verifyReceipt } from '../protocol/receipt.ts';
import { startWorker, type RunningWorker } from '../worker/agent.ts';
import { devModelApp } from '../worker/dev-model/server.ts';
import { simGpuSource } from '../worker/gpu.ts';
import { connect, type TestClient } from './stack/client.ts';
import { simVendors, simWorkerPolicy } from './stack/harness.ts';
import { type PgServer, startPostgres } from './support/postgres.ts';

const MODEL = 'pg-canary-model';
const PROMPT = 'POSTGRES-CANARY: a prompt the ledger database must never hold';
let server: PgServer | undefined;
let url: string;
let ledger: PostgresLedger;
let enclave: Enclave;
let enclaveServer: Served;
let model: Served;
let worker: RunningWorker;
let client: TestClient;

beforeAll(async () => {
  server = await startPostgres();
  if (!server) return;
  url = await server.database('e2e');
  const { amd, nvidia } = await simVendors();
  const log = (service: string) => createLogger({ service, sim: true, sink: () => undefined, level: 'warn' });
  const keys = await generateEnclaveKeys();
  ledger = await PostgresLedger.open(url, { signer: keys.receipt, ledgerKey: randomBytes(32) });
  const m = marketRouter({ market: createMarket({ feeBasisPoints: 100 }), ledger, enclaveSim: true, log: log('market') });
  enclave = await createEnclave({ tee: simProvider({ amd }), log: log('enclave'), keys, workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 10 * 60_000 }, router: m.router, onWorkerChange: m.onWorkerChange, market: m.surface });
  enclaveServer = await serve({ fetch: enclave.app.fetch });
  model = await serve({ fetch: devModelApp({ name: MODEL }).fetch });
  const hotkey = hotkeyFromSeed(new Uint8Array(32).fill(21));
  const nowS = Math.floor(Date.now() / 1000);
  worker = await startWorker({
    upstream: model.url,
    enclaves: [enclaveServer.url],
    tee: simProvider({ amd }),
    gpu: simGpuSource({ signer: nvidia }),
    fetch,
    now: () => new Date(),
    log: log('worker'),
    offers: async (k) => [await signOffer({ v: 1, offerId: `${k.workerId}-pg`, sequence: 1, workerId: k.workerId, workerKey: k.signing.publicKey, hotkey: hotkey.address, model: MODEL, currency: 'USD', pricePerMInput: 500_000n, pricePerMOutput: 900_000n, terms: { kind: 'per-request' }, capacity: 8, ttftMs: 50, tokensPerSecond: 50, validFrom: nowS - 60, validUntil: nowS + 3600 }, k.signing.privateKey, hotkey.secretKey)],
  });
  await worker.registered;
  client = await connect(enclaveServer.url);
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await enclave?.close();
  await enclaveServer?.close(200);
  await model?.close(200);
  await ledger?.close();
  await server?.close();
});

function ask(apiKey: string) {
  const body = new TextEncoder().encode(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: PROMPT }], max_tokens: 6 }));
  const req = bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json'], ['authorization', `Bearer ${apiKey}`]], body);
  return sendPlain(fetchTransport(`${enclaveServer.url}/v1/ohttp`), client.config, req);
}

describe('market on a PostgreSQL ledger', () => {
  it('charges, answers 503 LEDGER_UNAVAILABLE while PostgreSQL restarts, serves again after, and leaks nothing to the database', async (ctx) => {
    if (!server) return ctx.skip();
    const { apiKey, account } = await ledger.createAccount({ currency: 'USD', prepaid: 5_000_000n }, Date.now());
    const first = await ask(apiKey);
    expect(first.status).toBe(200);
    await new Response(first.body).arrayBuffer();
    const r1 = await verifyReceipt(parseReceiptHeader(first.headers.get('gm-receipt')!).signed, enclave.keys.receipt.publicKey);
    expect((await ledger.account(account.id)).balance).toBe(5_000_000n - r1.receipt.total);

    await server.stop();
    const down = await ask(apiKey);
    expect(down.status).toBe(503);
    expect((JSON.parse(await new Response(down.body).text()) as { error: { code: string } }).error.code).toBe('LEDGER_UNAVAILABLE');
    await server.start();

    const again = await ask(apiKey);
    expect(again.status).toBe(200);
    await new Response(again.body).arrayBuffer();
    const r2 = await verifyReceipt(parseReceiptHeader(again.headers.get('gm-receipt')!).signed, enclave.keys.receipt.publicKey);
    expect(r2.receipt.prev).toEqual(r1.hash);
    expect((await ledger.account(account.id)).balance).toBe(5_000_000n - r1.receipt.total - r2.receipt.total);

    const dump = server.dump(url);
    for (const secret of [PROMPT, 'POSTGRES-CANARY', apiKey, account.id, MODEL, worker.id]) expect(dump).not.toContain(secret);
  });
});
