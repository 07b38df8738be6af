/**
 * The demo's stack (docs/design.md §7): on loopback, in sim mode, in this process: an enclave, two dev-models, two
 * workers in front of them (registered and verified by the enclave), and the host shim whose gate verifies the
 * enclave before it relays. Every server listens on an ephemeral loopback port; `stop()` closes all of them.
 * Logs go to memory (shown with --verbose); they never contain payloads.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNvidiaSimSigner } from '../attestation/nvidia/sim.ts';
import { DEFAULT_POLICY } from '../attestation/sevsnp/index.ts';
import { createSimAmd } from '../attestation/sevsnp/sim.ts';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { generateEnclaveKeys } from '../enclave/keys.ts';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { createMarket } from '../enclave/market/index.ts';
import { marketRouter } from '../enclave/market/router.ts';
import { offerSigner } from '../worker/offers.ts';
import { createLogger } from '../enclave/log.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { SIM_MEASUREMENT, simProvider } from '../enclave/tee/sim.ts';
import { startHost, type RunningHost } from '../host/main.ts';
import { startWorker, type RunningWorker } from '../worker/agent.ts';
import { devModelApp } from '../worker/dev-model/server.ts';
import { simGpuSource } from '../worker/gpu.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';

export interface DemoStack {
  readonly enclaveUrl: string;
  readonly relayUrl: string;
  readonly models: readonly string[];
  /** API key of a prepaid sim account (100 USD) in the stack's ledger. */
  readonly apiKey: string;
  readonly host: RunningHost;
  readonly enclave: Enclave;
  readonly logs: string[];
  stop(): Promise<void>;
}

export interface DemoStackOptions {
  readonly workers?: number;
  /** Milliseconds between streamed tokens, so streaming is visible. */
  readonly tokenMs?: number;
  readonly progress?: (s: string) => void;
  readonly observe?: Parameters<typeof startHost>[0]['observe'];
}

export async function startDemoStack(o: DemoStackOptions = {}): Promise<DemoStack> {
  const say = o.progress ?? (() => {});
  const logs: string[] = [];
  const log = (service: string) => createLogger({ service, sim: true, sink: (l) => void logs.push(l), level: 'info' });
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    say('generating the simulated AMD and NVIDIA vendor chains (sim mode: NOT backed by hardware)...');
    const [amd, nvidia] = await Promise.all([createSimAmd({ product: 'Genoa' }), createNvidiaSimSigner({ now: new Date() })]);
    // The market routes by the workers' signed offers and signs a receipt per request into an in-memory ledger.
    const keys = await generateEnclaveKeys();
    const ledger = SqliteLedger.open(':memory:', { signer: keys.receipt });
    stops.push(async () => ledger.close());
    const house = (await ledger.createAccount({ currency: 'USD', creditLimit: 1_000_000_000_000n }, Date.now())).account;
    // A prepaid sim account whose key the demo uses and prints, so `gm chat` against a kept stack can use it too.
    const { apiKey } = await ledger.createAccount({ currency: 'USD', prepaid: 100_000_000n }, Date.now());
    const book = createMarket({});
    const market = marketRouter({ market: book, ledger, enclaveSim: true, anonymous: house, log: log('market') });
    const enclave = await createEnclave({
      tee: simProvider({ amd }),
      log: log('enclave'),
      keys,
      router: market.router,
      onWorkerChange: market.onWorkerChange,
      market: market.surface,
      settings: { openAccess: true, ledger: 'memory' },
      workerPolicy: { policy: { 'sev-snp': { ...DEFAULT_POLICY, measurements: [SIM_MEASUREMENT] } }, allowSim: true, freshnessMs: 10 * 60_000 },
    });
    stops.push(() => enclave.close());
    const enclaveServer: Served = await serve({ fetch: enclave.app.fetch });
    stops.push(() => enclaveServer.close(200));
    say(`enclave listening at ${enclaveServer.url}`);

    const models: string[] = [];
    for (let i = 1; i <= (o.workers ?? 2); i++) {
      const name = `gm-dev-${i}`;
      const model = await serve({ fetch: devModelApp({ name, tokenMs: o.tokenMs ?? 25 }).fetch });
      stops.push(() => model.close(200));
      const worker: RunningWorker = await startWorker({
        upstream: model.url, enclaves: [enclaveServer.url], tee: simProvider({ amd }), gpu: simGpuSource({ signer: nvidia }), log: log(`worker-${i}`),
        fetch: (u, init) => fetch(u, init), now: () => new Date(),
        offers: offerSigner({
          currency: 'USD', pricePerMInput: 100_000n * BigInt(i), pricePerMOutput: 200_000n * BigInt(i), terms: { kind: 'per-request' },
          capacity: 64, ttftMs: 300 * i, tokensPerSecond: 50, hotkeySeed: new Uint8Array(32).fill(i),
        }),
      });
      stops.push(() => worker.stop());
      await worker.registered;
      models.push(name);
      say(`worker ${i} (${name}, sim H100 in CC mode, signed offer ${0.1 * i} / ${0.2 * i} USD per M tokens) registered and verified by the enclave`);
    }

    const cacheDir = await mkdtemp(join(tmpdir(), 'gm-demo-collateral-'));
    stops.push(() => rm(cacheDir, { recursive: true, force: true }));
    const host = await startHost({
      enclave: enclaveServer.url, policy: parseClientPolicy(simPolicyDoc(), 'sim policy'), allowSim: true, trust: undefined, cacheDir,
      checkIntervalMs: 60_000, log: log('host'), ...(o.observe ? { observe: o.observe } : {}),
      // The status page reads GET /v1/workers and GET /v1/market/offers from the enclave, as in front of `gm enclave`,
      // and checks each offer's signatures itself.
    });
    stops.push(() => host.close());
    say(`host shim (relay) listening at ${host.url}: gate ${host.gate.status.state.toUpperCase()}${host.gate.status.error ? ` (${host.gate.status.error.code})` : ''}`);
    return { enclaveUrl: enclaveServer.url, relayUrl: host.url, models, apiKey, host, enclave, logs, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
