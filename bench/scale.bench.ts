/**
 * Replica scaling (docs/design.md §10.2): 1, 2 and 4 `gm enclave --tee sim --ledger postgres://...` replicas as
 * processes behind one relay, sharing one private PostgreSQL server (test/stack/replicas.ts, the same stack the
 * replica tests run), two sim workers registered with every replica, and a client in this process spreading
 * non-streamed chat completions over 64 accounts across the verified replicas. Each replica gets the same load
 * whatever N: 100 warm-up requests, then per round 200 measured requests with 16 in flight, per replica. The three
 * deployments run side by side and are measured in three alternating rounds; each figure is a median.
 *
 * Rows, each against the one-replica figure of the same run:
 *  - throughput (requests/s) with N replicas: on this 2-core machine the client, relay, workers, dev-models,
 *    PostgreSQL and every replica share the same cores, so the ratio says what adding replicas costs, not what they
 *    would add on their own machines (target >= 0.8: replicas must not slow the deployment down);
 *  - CPU per request per replica, from a second, paced phase (12 requests/s and 100 requests per replica, whatever N,
 *    below the machine's saturation, so that no configuration batches more work per wake-up than another): µs of
 *    user + system from /proc/<pid>/stat summed over the replicas, minus what the same replicas burn idle over the
 *    same time (timers, worker health checks; measured for 2 s just before), divided by the requests: what one request costs a replica, which must not grow with N by more than 10%
 *    (target <= 1.10). The note gives the figure without the idle correction. N machines then serve N times what one
 *    replica's CPU allows.
 * Skipped (with a note) where no PostgreSQL server binaries are installed.
 */
import { createClient } from '../client/index.ts';
import { MODEL, type ReplicaStack, startReplicaStack } from '../test/stack/replicas.ts';
import { startPostgres } from '../test/support/postgres.ts';
import { atLeast, atMost, type BenchRow } from './harness.ts';

export const title = 'scale: replicas behind one relay on one PostgreSQL';

const INFLIGHT_PER_REPLICA = 16;
const REQUESTS_PER_REPLICA = 200;
const WARMUP_PER_REPLICA = 100;
const IDLE_MS = 2000;
const ACCOUNTS = 64;
/** The paced phase: requests per second and requests per replica. */
const PACED_RATE_PER_REPLICA = 12;
const PACED_PER_REPLICA = 100;
const ROUNDS = 3;
const COUNTS = [1, 2, 4] as const;

interface Sample {
  readonly perSec: number;
  /** Net of the idle rate. */
  readonly cpuUsPerRequest: number;
  readonly grossCpuUsPerRequest: number;
}

interface Loaded {
  readonly n: number;
  warm(): Promise<void>;
  sample(): Promise<Sample>;
}

async function load(s: ReplicaStack): Promise<Loaded> {
  const c = await createClient({ url: s.replicas[0]!.url, relay: s.host.url, allowSim: true, fetch: s.fetch });
  // Many accounts, as in a real deployment: one shared account would make every replica's debit wait on one row.
  const accounts = await Promise.all(Array.from({ length: ACCOUNTS }, () => s.account(1n << 50n)));
  let k = 0;
  const one = async () => {
    const acct = accounts[k++ % ACCOUNTS]!;
    const r = await c.fetch(`${c.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${acct.apiKey}` },
      body: JSON.stringify({ model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'scale' }] }),
    });
    if (r.status !== 200) throw new Error(`scale bench: HTTP ${r.status}`);
    await r.arrayBuffer();
  };
  const n = s.replicas.length;
  const inflight = INFLIGHT_PER_REPLICA * n;
  const run = async (count: number) => {
    let next = 0;
    await Promise.all(Array.from({ length: inflight }, async () => {
      while (next++ < count) await one();
    }));
  };
  const cpu = async () => (await Promise.all(s.replicas.map((r) => r.cpuMicros()))).reduce((a, b) => a + b, 0);
  return {
    n,
    warm: () => run(WARMUP_PER_REPLICA * n),
    async sample() {
      // Throughput: closed loop, every process saturating the shared cores.
      const requests = REQUESTS_PER_REPLICA * n;
      const t0 = process.hrtime.bigint();
      await run(requests);
      const perSec = requests / (Number(process.hrtime.bigint() - t0) / 1e9);
      // CPU per request: the same paced load on each replica whatever N, below what the machine saturates at, so no
      // configuration batches more work per wake-up than another; net of what the replicas burn idle meanwhile.
      const idle0 = await cpu();
      const i0 = process.hrtime.bigint();
      await new Promise((r) => setTimeout(r, IDLE_MS));
      const idleRate = (await cpu() - idle0) / (Number(process.hrtime.bigint() - i0) / 1e9);
      const paced = PACED_PER_REPLICA * n;
      const cpu0 = await cpu();
      const p0 = process.hrtime.bigint();
      const sent: Promise<void>[] = [];
      await new Promise<void>((done) => {
        const timer = setInterval(() => {
          sent.push(one());
          if (sent.length === paced) {
            clearInterval(timer);
            done();
          }
        }, 1000 / (PACED_RATE_PER_REPLICA * n));
      });
      await Promise.all(sent);
      const secs = Number(process.hrtime.bigint() - p0) / 1e9;
      const gross = (await cpu()) - cpu0;
      return { perSec, cpuUsPerRequest: (gross - idleRate * secs) / paced, grossCpuUsPerRequest: gross / paced };
    },
  };
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

export async function run(): Promise<BenchRow[]> {
  const pgServer = await startPostgres();
  if (!pgServer) return [{ name: 'scale', value: 0, unit: '-', floorName: '-', floor: 1, ratio: 0, target: '-', ok: true, note: 'skipped: no PostgreSQL server binaries' }];
  const stacks: ReplicaStack[] = [];
  const samples = new Map<number, Sample[]>();
  try {
    // All three deployments up at once, measured in alternating rounds: load from other processes on a shared
    // machine falls on each alike, and each figure is the median of its rounds.
    for (const n of COUNTS) stacks.push(await startReplicaStack(pgServer, { n, workers: 2 }));
    const loaded = await Promise.all(stacks.map(load));
    for (const l of loaded) await l.warm();
    for (let round = 0; round < ROUNDS; round++) {
      for (const l of loaded) samples.set(l.n, [...(samples.get(l.n) ?? []), await l.sample()]);
    }
  } finally {
    for (const s of stacks) await s.stop();
    await pgServer.close();
  }
  const fig = (n: number, f: (x: Sample) => number) => median(samples.get(n)!.map(f));
  const rows: BenchRow[] = [];
  for (const n of COUNTS.slice(1)) {
    rows.push(atLeast(`throughput, ${n} replicas`, fig(n, (x) => x.perSec), 'req/s', '1 replica', fig(1, (x) => x.perSec), 0.8, `${INFLIGHT_PER_REPLICA * n} in flight; median of ${ROUNDS} rounds; one 2-core machine for everything`));
  }
  for (const n of COUNTS.slice(1)) {
    const gross = fig(n, (x) => x.grossCpuUsPerRequest);
    const gross1 = fig(1, (x) => x.grossCpuUsPerRequest);
    rows.push(atMost(`CPU per request per replica, ${n} replicas`, fig(n, (x) => x.cpuUsPerRequest), 'µs', '1 replica', fig(1, (x) => x.cpuUsPerRequest), 1.1, `median of ${ROUNDS} rounds; without the idle correction ${gross.toFixed(0)} µs against ${gross1.toFixed(0)} µs (ratio ${(gross / gross1).toFixed(3)})`));
  }
  return rows;
}
