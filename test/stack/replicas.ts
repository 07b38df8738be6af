/**
 * Several enclave replicas as `gm enclave --tee sim --ledger postgres://...` processes on loopback behind one host
 * shim, sharing one real PostgreSQL ledger (test/support/postgres.ts), each on its own receipt chain, with sim workers
 * registered with every replica (used by test/replicas-stack.test.ts and bench/scale.bench.ts).
 *
 * The ledger key reaches the replicas the production way: each one starts with `--join` and obtains it by mutual
 * attestation (enclave/replication/) from a member. The member is a sim enclave in this process holding the key, so
 * the test can open accounts through its own connection to the ledger; it serves no traffic.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Agent, fetch as undiciFetch } from 'undici';
import { decodeBundle } from '../../attestation/bundle.ts';
import type { FetchLike } from '../../client/attest.ts';
import { parseClientPolicy, simPolicyDoc } from '../../client/policy.ts';
import { createEnclave, type Enclave } from '../../enclave/app.ts';
import { generateEnclaveReceiptKey } from '../../enclave/ledger/signer.ts';
import { PostgresLedger } from '../../enclave/ledger/postgres.ts';
import { createLogger } from '../../enclave/log.ts';
import { simWorkerPolicyDoc } from '../../enclave/policy.ts';
import { serve, type Served } from '../../enclave/serve.ts';
import { simProvider } from '../../enclave/tee/sim.ts';
import { type RunningHost, startHost } from '../../host/main.ts';
import { startWorker, type RunningWorker } from '../../worker/agent.ts';
import { devModelApp } from '../../worker/dev-model/server.ts';
import { simGpuSource } from '../../worker/gpu.ts';
import { offerSigner } from '../../worker/offers.ts';
import type { PgServer } from '../support/postgres.ts';
import { simVendors } from './harness.ts';

const GM = new URL('../../bin/gm.js', import.meta.url).pathname;

export interface ReplicaProcess {
  readonly url: string;
  /** Its receipt public key (from its boot bundle): it also signs the accounts it opens (sim house and sim account). */
  readonly receiptKey: Uint8Array;
  readonly proc: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** The process's CPU time so far (user + system, microseconds), from /proc. */
  cpuMicros(): Promise<number>;
}

/** `gm enclave --tee sim --ledger URL --join MEMBER`; resolves once it prints its URL. */
export async function spawnReplica(ledgerUrl: string, member: string): Promise<ReplicaProcess> {
  const args = [GM, 'enclave', '--tee', 'sim', '--ledger', ledgerUrl, '--join', member, '--listen', '127.0.0.1:0', '--max-streams', '4096', '--log-level', 'error', '--json'];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GM_TRUST_DIR: '/nonexistent' } });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => void (err = (err + d.toString()).slice(-4096)));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (l) => {
      const j = JSON.parse(l) as { event?: string; url?: string };
      if (j.event === 'listening' && j.url) resolve(j.url);
    });
    void exited.then(() => reject(new Error(`gm enclave exited before listening: ${err}`)));
  });
  const boot = decodeBundle(new Uint8Array(await (await fetch(`${url}/v1/attestation`)).arrayBuffer()));
  const tick = 1_000_000 / 100; // USER_HZ: clock ticks of /proc/<pid>/stat are 1/100 s on Linux
  return {
    url,
    receiptKey: boot.keys.receipt!,
    proc,
    exited,
    async cpuMicros() {
      const stat = await readFile(`/proc/${proc.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) * tick; // utime, stime (fields 14 and 15)
    },
  };
}

export interface ReplicaStack {
  readonly ledgerUrl: string;
  readonly ledgerKey: Uint8Array;
  readonly creditKey: Uint8Array;
  readonly replicas: readonly ReplicaProcess[];
  readonly host: RunningHost;
  readonly workers: readonly RunningWorker[];
  /** Node's fetch through a bounded pool (the relay caps sockets per source). */
  readonly fetch: FetchLike;
  /** A prepaid USD account in the shared ledger; its id and API key. */
  account(prepaid: bigint): Promise<{ id: string; apiKey: string }>;
  balance(id: string): Promise<{ balance: bigint; reserved: bigint }>;
  /** Receipts stored per chain (the counts PostgreSQL sees; the bodies are sealed). */
  receiptCounts(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

export const MODEL = 'gm-dev-replicas';

/**
 * `n` replicas, `workers` sim workers (each with its own dev-model) registered with all of them, one relay. Input
 * tokens are free and output tokens cost `pricePerMOutput`, so a request with max_tokens k costs exactly its bound.
 */
export async function startReplicaStack(pgServer: PgServer, o: { n: number; workers?: number; pricePerMOutput?: bigint }): Promise<ReplicaStack> {
  const { amd, nvidia } = await simVendors();
  const dir = await mkdtemp(join(tmpdir(), 'gm-replicas-'));
  const ledgerUrl = await pgServer.database('replicas');
  const ledgerKey = crypto.getRandomValues(new Uint8Array(32));
  const credit = generateEnclaveReceiptKey();
  const admin = await PostgresLedger.open(ledgerUrl, { ledgerKey, chainId: 'admin', creditSigner: credit, poolSize: 2 });
  const log = createLogger({ service: 'replicas-test', sim: true, level: 'error', sink: () => {} });
  // The member the replicas join: the same sim image and settings as `gm enclave --tee sim --ledger postgres://...`.
  const member: Enclave = await createEnclave({
    tee: simProvider({ amd }), log, settings: { openAccess: true, ledger: 'postgres' },
    workerPolicy: { ...simWorkerPolicyDoc(), allowSim: true },
    replication: { ledgerKey, policy: parseClientPolicy(simPolicyDoc()), allowSim: true },
  });
  const memberServer = await serve({ fetch: member.app.fetch });
  const replicas: ReplicaProcess[] = [];
  const models: Served[] = [];
  const workers: RunningWorker[] = [];
  const pool = new Agent({ connections: 32 });
  const relayPool = new Agent({ connections: 64 });
  let host: RunningHost | undefined;
  const stopAll = async () => {
    await host?.close();
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(models.map((m) => m.close(100)));
    for (const r of replicas) r.proc.kill('SIGKILL');
    await Promise.all(replicas.map((r) => r.exited));
    await member.close();
    await memberServer.close(100);
    await admin.close();
    await pool.close();
    await relayPool.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < o.n; i++) replicas.push(await spawnReplica(ledgerUrl, memberServer.url));
    for (let i = 0; i < (o.workers ?? 2); i++) {
      const model = await serve({ fetch: devModelApp({ name: MODEL, tokenMs: 0 }).fetch });
      models.push(model);
      const worker = await startWorker({
        upstream: model.url,
        enclaves: replicas.map((r) => r.url),
        tee: simProvider({ amd }),
        gpu: simGpuSource({ signer: nvidia }),
        fetch,
        now: () => new Date(),
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
  return {
    ledgerUrl,
    ledgerKey,
    creditKey: credit.publicKey,
    replicas,
    host: host!,
    workers,
    fetch: ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher: pool })) as unknown as FetchLike,
    async account(prepaid) {
      const { account, apiKey } = await admin.createAccount({ currency: 'USD', prepaid }, Date.now());
      return { id: account.id, apiKey };
    },
    async balance(id) {
      const a = await admin.account(id);
      return { balance: a.balance, reserved: a.balance + a.creditLimit - (await admin.available(id)) };
    },
    async receiptCounts() {
      const r = await admin.pool.query<{ chain: string; n: string }>('SELECT chain, count(*)::text AS n FROM gm_receipts GROUP BY chain');
      return new Map(r.rows.map((x) => [x.chain, Number(x.n)]));
    },
    stop: stopAll,
  };
}
