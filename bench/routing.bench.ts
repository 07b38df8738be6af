/**
 * Routing path benchmark: the same load at the dev-model directly and through
 * client → enclave → worker → dev-model (OHTTP both legs, sim TEE), in one run on the same machine.
 * - non-streaming chat, 1 KiB prompts, concurrency 16: throughput ratio (target >= 0.35 of direct),
 *   added p50 latency (target <= 1.5 ms), p99 reported;
 * - streaming: a 1,000-token answer at 1 ms per token, time to last token through gm (target <= 1.1x direct).
 * Placement (GM_BENCH_ROUTING_PLACEMENT, printed with the figures): `inprocess` (default) runs client, enclave and
 * workers on this one event loop (the stack-test harness), so every gm figure pays the client's, the enclave's and the
 * worker's CPU on one core: a conservative setting. `processes` runs the enclave and each worker as their own `gm`
 * processes, as deployed (different machines or VMs), with the client in this one; on a 2-core machine that also
 * runs other load, each of the ~6 cross-process hand-offs per request waits for a CPU, so it measured slower there
 * (188 vs 274 req/s, c=1 added p50 4.3 vs 2.5 ms); it is the placement to use on a machine with a core per process.
 * The dev-models always run in their own processes (their token timers must not share gm's event loop).
 */
import { Pool } from 'undici';
import { atLeast, atMost, type BenchRow } from './harness.ts';
import type { Transport } from '../enclave/ohttp/client.ts';
import { connect } from '../test/stack/client.ts';
import { startStack } from '../test/stack/harness.ts';
import { gmProcess } from '../test/stack/processes.ts';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';

export const title = 'routing: client → enclave → worker → dev-model vs direct';

const PROMPT = 'x'.repeat(1024);
const CONCURRENCY = 16;
const REQUESTS = Number(process.env.GM_BENCH_ROUTING_REQUESTS ?? 3000);

function undiciTransport(url: string): { send: Transport; close(): Promise<void> } {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: CONCURRENCY * 2 });
  return {
    send: async (body, contentType, signal) => {
      const r = await pool.request({ path: u.pathname, method: 'POST', headers: { 'content-type': contentType }, body, ...(signal ? { signal } : {}) });
      return {
        status: r.statusCode,
        contentType: String(r.headers['content-type'] ?? '').split(';')[0]!.trim(),
        body: (async function* () {
          for await (const c of r.body) yield new Uint8Array(c as Buffer);
        })(),
        cancel: () => void r.body.destroy(),
      };
    },
    close: () => pool.close(),
  };
}

async function load(one: () => Promise<void>, n: number, concurrency = CONCURRENCY): Promise<{ rps: number; lat: number[] }> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const s = performance.now();
        await one();
        lat.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { rps: n / secs, lat };
}
const pct = (a: number[], p: number) => a[Math.min(a.length - 1, Math.floor(a.length * p))]!;

/** A dev-model in its own process (as in a deployment): its token timer does not share an event loop with gm. */
const devModelProcess = (name: string, tokenMs: number) => gmProcess(['dev-model', '--listen', '127.0.0.1:0', '--name', name, '--token-ms', String(tokenMs)]);

/**
 * The deployed placement: `gm enclave --tee sim --router first` and one `gm worker --tee sim` per upstream, each its
 * own process (logs at their default level, to /dev/null: the JSON lines are still built and written).
 */
async function processStack(upstreams: readonly string[]): Promise<{ enclaveUrl: string; stop(): Promise<void> }> {
  const enclave = await gmProcess(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0'], undefined, 'ignore');
  const workers: { stop(): Promise<void> }[] = [];
  try {
    for (const u of upstreams) workers.push(await gmProcess(['worker', '--tee', 'sim', '--upstream', u, '--enclave', enclave.url, '--listen', '127.0.0.1:0'], /registered with/, 'ignore'));
  } catch (e) {
    for (const w of workers) await w.stop();
    await enclave.stop();
    throw e;
  }
  return {
    enclaveUrl: enclave.url,
    stop: async () => {
      for (const w of workers) await w.stop();
      await enclave.stop();
    },
  };
}

export async function run(): Promise<BenchRow[]> {
  const placement = process.env.GM_BENCH_ROUTING_PLACEMENT ?? 'inprocess';
  if (placement !== 'processes' && placement !== 'inprocess') throw new Error('GM_BENCH_ROUTING_PLACEMENT must be processes or inprocess');
  // The bench client is a Node process: node:crypto HPKE, as the in-process placement always had (createEnclave installs it).
  setDefaultBackend(nodeBackend);
  const [m1, m2] = await Promise.all([devModelProcess('bench', 0), devModelProcess('bench-stream', 1)]);
  // The routing path alone (first verified worker): receipts and the ledger are the market's own benchmark.
  const stack =
    placement === 'processes'
      ? await processStack([m1.url, m2.url])
      : await startStack({ router: 'first', workers: [{ model: { name: 'bench' }, upstream: m1.url }, { model: { name: 'bench-stream' }, upstream: m2.url }] });
  const where = placement === 'processes' ? 'placement: client | enclave | worker in separate processes' : 'placement: client+enclave+worker in one process';
  const direct = new Pool(m1.url, { connections: CONCURRENCY * 2 });
  const t = undiciTransport(`${stack.enclaveUrl}/v1/ohttp`);
  try {
    const client = await connect(stack.enclaveUrl, { transport: t.send });
    const body = { model: 'bench', messages: [{ role: 'user', content: PROMPT }], max_tokens: 16 };
    const json = JSON.stringify(body);
    const viaDirect = async () => {
      const r = await direct.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body: json });
      if (r.statusCode !== 200) throw new Error(`direct ${r.statusCode}`);
      await r.body.arrayBuffer();
    };
    const viaGm = async () => {
      const r = await client.post('/v1/chat/completions', body);
      if (r.status !== 200) throw new Error(`gm ${r.status}`);
      await new Response(r.body).arrayBuffer();
    };
    // warm both paths (JIT, pools, key caches), then alternate runs so neither gets a warmer machine
    await load(viaDirect, 300);
    await load(viaGm, 300);
    const d = await load(viaDirect, REQUESTS);
    const g = await load(viaGm, REQUESTS);
    // Unloaded (one request at a time): what gm adds to one request, without the queueing that a closed loop of 16
    // adds at c=16 (there p50 is about 16 / throughput, so it follows the throughput ratio).
    const d1 = await load(viaDirect, 300, 1);
    const g1 = await load(viaGm, 300, 1);

    // Streaming: 1000 tokens at 1 ms/token; time to the last byte, median of 3.
    const sbody = { model: 'bench-stream', stream: true, messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000 };
    const streamDirect = async () => {
      const s = performance.now();
      const r = await new Pool(m2.url).request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sbody) });
      await r.body.text();
      return performance.now() - s;
    };
    const streamGm = async () => {
      const s = performance.now();
      const r = await client.post('/v1/chat/completions', sbody, { stream: true });
      await new Response(r.body).text();
      return performance.now() - s;
    };
    const med = async (f: () => Promise<number>) => {
      const xs = [await f(), await f(), await f()].sort((a, b) => a - b);
      return xs[1]!;
    };
    const sd = await med(streamDirect);
    const sg = await med(streamGm);
    const p50d = pct(d.lat, 0.5);
    const p50g = pct(g.lat, 0.5);
    const addedP50 = p50g - p50d;
    return [
      atLeast('non-streaming chat throughput via gm (1 KiB prompt, c=16)', g.rps, 'req/s', 'dev-model direct', d.rps, 0.35, where),
      { name: 'added p50 latency via gm (c=16)', value: addedP50, unit: 'ms', floorName: 'direct p50', floor: p50d, ratio: p50g / p50d, target: 'added <= 1.5 ms', ok: addedP50 <= 1.5, note: `p50 gm ${p50g.toFixed(2)} ms, p99 gm ${pct(g.lat, 0.99).toFixed(2)} ms vs direct ${pct(d.lat, 0.99).toFixed(2)} ms` },
      {
        name: 'added p50 latency via gm, unloaded (c=1)', value: pct(g1.lat, 0.5) - pct(d1.lat, 0.5), unit: 'ms', floorName: 'direct p50 (c=1)', floor: pct(d1.lat, 0.5), ratio: pct(g1.lat, 0.5) / pct(d1.lat, 0.5),
        target: 'none (informational)', ok: true, note: `p99 gm ${pct(g1.lat, 0.99).toFixed(2)} ms vs direct ${pct(d1.lat, 0.99).toFixed(2)} ms; ${where}`,
      },
      atMost('streaming 1000 tokens @1 ms: time to last token via gm', sg, 'ms', 'dev-model direct', sd, 1.1),
    ];
  } finally {
    await t.close();
    await direct.close();
    await stack.stop();
    await m1.stop();
    await m2.stop();
  }
}
