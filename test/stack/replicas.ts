/**
 * Several enclave replicas as processes on loopback behind one host shim, one shared ledger file (each replica on its
 * own receipt chain), sim workers registered with every replica (used by test/replicas-stack.test.ts and
 * bench/scale.bench.ts). Accounts are opened by the test through its own connection to the ledger.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Agent, fetch as undiciFetch } from 'undici';
import { parseClientPolicy, simPolicyDoc } from '../../client/policy.ts';
import type { FetchLike } from '../../client/attest.ts';
import { SqliteLedger } from '../../enclave/ledger/sqlite.ts';
import { createLogger } from '../../enclave/log.ts';
import { serve, type Served } from '../../enclave/serve.ts';
import { simProvider } from '../../enclave/tee/sim.ts';
import { type RunningHost, startHost } from '../../host/main.ts';
import { startWorker, type RunningWorker } from '../../worker/agent.ts';
import { devModelApp } from '../../worker/dev-model/server.ts';
import { simGpuSource } from '../../worker/gpu.ts';
import { offerSigner } from '../../worker/offers.ts';
import { simVendors } from './harness.ts';

const CHILD = new URL('./replica-child.ts', import.meta.url).pathname;

export interface ReplicaProcess {
  readonly url: string;
  readonly chain: string;
  readonly proc: ChildProcess;
  /** The process's CPU time so far (user + system, microseconds). */
  cpuMicros(): Promise<number>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
}

export async function spawnReplica(ledgerPath: string, chain: string): Promise<ReplicaProcess> {
  const proc = spawn(process.execPath, [CHILD, ledgerPath, chain], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const lines = createInterface({ input: proc.stdout! });
  const waiting: ((l: string) => void)[] = [];
  lines.on('line', (l) => waiting.shift()?.(l));
  const next = () => new Promise<string>((resolve, reject) => {
    waiting.push(resolve);
    void exited.then(() => reject(new Error(`replica ${chain} exited`)));
  });
  const { url } = JSON.parse(await next()) as { url: string };
  return {
    url,
    chain,
    proc,
    exited,
    async cpuMicros() {
      const p = next();
      proc.stdin!.write('cpu\n');
      return (JSON.parse(await p) as { cpu: number }).cpu;
    },
  };
}

export interface ReplicaStack {
  readonly dir: string;
  readonly ledgerPath: string;
  readonly replicas: readonly ReplicaProcess[];
  readonly host: RunningHost;
  readonly workers: readonly RunningWorker[];
  readonly models: readonly Served[];
  /** Node's fetch through a bounded pool (the relay caps sockets per source). */
  readonly fetch: FetchLike;
  /** A prepaid USD account in the shared ledger; its API key. */
  account(prepaid: bigint): Promise<{ id: string; apiKey: string }>;
  stop(): Promise<void>;
}

export const MODEL = 'gm-dev-replicas';

/**
 * `n` replicas, `workers` sim workers (each with its own dev-model) registered with all of them, one relay. Input
 * tokens are free and output tokens cost `pricePerMOutput`, so a request with max_tokens k costs exactly its bound.
 */
export async function startReplicaStack(o: { n: number; workers?: number; pricePerMOutput?: bigint }): Promise<ReplicaStack> {
  const { amd, nvidia } = await simVendors();
  const dir = await mkdtemp(join(tmpdir(), 'gm-replicas-'));
  const ledgerPath = join(dir, 'ledger.db');
  const admin = SqliteLedger.open(ledgerPath, { chainId: 'admin' });
  const replicas = await Promise.all(Array.from({ length: o.n }, (_, i) => spawnReplica(ledgerPath, `replica-${i + 1}`)));
  const log = createLogger({ service: 'replicas-test', sim: true, level: 'error', sink: () => {} });
  const models: Served[] = [];
  const workers: RunningWorker[] = [];
  const pool = new Agent({ connections: 32 });
  const relayPool = new Agent({ connections: 64 });
  const stopAll = async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(models.map((m) => m.close(100)));
    for (const r of replicas) {
      r.proc.stdin!.end();
      r.proc.kill('SIGKILL');
    }
    await Promise.all(replicas.map((r) => r.exited));
    await admin.close();
    await pool.close();
    await relayPool.close();
    await rm(dir, { recursive: true, force: true });
  };
  let host: RunningHost | undefined;
  try {
    for (let i = 0; i < (o.workers ?? 2); i++) {
      const model = await serve({ fetch: devModelApp({ name: MODEL, tokenMs: 0 }).fetch });
      models.push(model);
      const worker = await startWorker({
        upstream: model.url,
        enclaves: replicas.map((r) => r.url),
        tee: simProvider({ amd }),
        gpu: simGpuSource({ signer: nvidia }),
        log,
        maxConcurrentStreams: 4096,
        offers: offerSigner({ currency: 'USD', pricePerMInput: 0n, pricePerMOutput: o.pricePerMOutput ?? 1_000_000n, terms: { kind: 'per-request' }, capacity: 1024, ttftMs: 500, tokensPerSecond: 50, hotkeySeed: new Uint8Array(32).fill(i + 1) }),
      });
      workers.push(worker);
      await worker.registered;
    }
    host = await startHost({
      enclave: replicas[0]!.url, replicas: replicas.slice(1).map((r) => r.url), policy: parseClientPolicy(simPolicyDoc()), allowSim: true, trust: undefined,
      cacheDir: join(dir, 'cache'), checkIntervalMs: 3_600_000, rateLimit: { perSecond: 100_000, burst: 100_000 }, dispatcher: relayPool,
    });
  } catch (e) {
    await stopAll();
    throw e;
  }
  const h = host;
  return {
    dir,
    ledgerPath,
    replicas,
    host: h,
    workers,
    models,
    fetch: ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher: pool })) as unknown as FetchLike,
    async account(prepaid) {
      const { account, apiKey } = await admin.createAccount({ currency: 'USD', prepaid }, Date.now());
      return { id: account.id, apiKey };
    },
    async stop() {
      await h.close();
      await stopAll();
    },
  };
}
