/**
 * Routing bench, in the deployment shape: the dev-model, `gm worker`, `gm enclave` and the load generator each in
 * their own process, beside a plain Node reverse-proxy hop (node:http + undici Pool) and a plain two-hop chain of
 * them, all measured in the same run on the same machine.
 *
 * Per round, every variant runs the same closed loop (1 KiB non-streaming chat, c=16), one after the other in
 * alternating order, so load from elsewhere on a shared machine falls on all of them; figures are medians over the
 * rounds with their range. CPU per request is read per process from /proc/<pid>/stat (utime + stime of the process
 * and its live children, so a `--processes N` enclave counts whole) around each variant's run; the load generator
 * reports its own from process.cpuUsage.
 *
 * Rows (ratio and target each): enclave CPU vs a proxy hop (<= 3), worker CPU vs a proxy hop (<= 1.5), throughput vs
 * the two-hop chain (>= 0.35) and vs direct, added p50 at c=1 (<= 1 ms) and p50/p99 at c=16, `--processes 2`
 * aggregate vs one process (>= 1.6), the 64-byte chunk seal on the session (<= 5 µs), streaming time to last token
 * vs direct (<= 1.1).
 *
 * GM_BENCH_ROUNDS (default 3), GM_BENCH_REQUESTS per variant and round (default 2000).
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createCipheriv, createSecretKey } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { generateKeyConfig } from '../protocol/ohttp.ts';
import { KEM_MLKEM768_X25519 } from '../protocol/hpke.ts';
import { acceptSession, initiateSession } from '../protocol/session.ts';
import { gmProcess, type GmProcess } from '../test/stack/processes.ts';
import { atLeast, atMost, type BenchRow, medianUs } from './harness.ts';
import type { LoadRequest, RunResult, Variant } from './routing/loadgen.ts';

export const title = 'routing: client → enclave → worker → dev-model, each its own process, vs plain Node proxies';

const ROUNDS = Number(process.env.GM_BENCH_ROUNDS ?? 3);
const REQUESTS = Number(process.env.GM_BENCH_REQUESTS ?? 2000);
const C = 16;
const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim() || 100);

/** CPU time (µs) of a process and its live descendants, from /proc. */
function cpuTreeUs(pid: number): number {
  let ticks = 0;
  const visit = (p: number) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
      for (const t of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) visit(Number(t));
    } catch {
      // a process that just exited contributes nothing more
    }
  };
  visit(pid);
  return ticks * TICK_US;
}

function proxyProcess(upstream: string): Promise<GmProcess> {
  return new Promise((resolve, reject) => {
    const p = fork(fileURLToPath(new URL('./routing/plain-proxy.ts', import.meta.url)), [upstream], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let out = '';
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1]!, child: p, stop: async () => void (p.exitCode === null && p.kill('SIGTERM')) });
    });
    p.once('exit', (c) => reject(new Error(`plain proxy exited ${c}`)));
  });
}

class LoadGen {
  readonly #p: ChildProcess;
  #queue: ((x: unknown) => void)[] = [];
  constructor() {
    this.#p = fork(fileURLToPath(new URL('./routing/loadgen.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#p.on('message', (m) => this.#queue.shift()?.(m));
  }
  ask<T>(m: LoadRequest): Promise<T> {
    return new Promise((resolve, reject) => {
      this.#queue.push((x) => ((x as { error?: string }).error ? reject(new Error((x as { error: string }).error)) : resolve(x as T)));
      this.#p.send(m);
    });
  }
  stop(): void {
    this.#p.send({ op: 'exit' });
  }
}

const med = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const range = (xs: readonly number[], d = 0) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`;

interface Measured {
  rps: number[];
  p50: number[];
  p99: number[];
  cpu: Record<string, number[]>;
}

/** `gm enclave --processes n` (the worker runs one process) and one `gm worker` per upstream. */
async function stackOf(upstreams: readonly string[], processes: number): Promise<{ enclave: GmProcess; workers: GmProcess[] }> {
  const enclave = await gmProcess(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0', '--log-level', 'warn', '--processes', String(processes)], undefined, 'ignore');
  const workers: GmProcess[] = [];
  for (const u of upstreams) workers.push(await gmProcess(['worker', '--tee', 'sim', '--upstream', u, '--enclave', enclave.url, '--listen', '127.0.0.1:0', '--log-level', 'warn'], /registered with/, 'ignore'));
  return { enclave, workers };
}

/** The 64-byte chunk seal on a session (the worker's per-token cost), beside a bare node:crypto AES-128-GCM seal. */
async function chunkSeal(): Promise<[number, number]> {
  const key = await generateKeyConfig(1, undefined, { kemId: KEM_MLKEM768_X25519, backend: nodeBackend });
  const cred = new Uint8Array(32).fill(1);
  const h = await initiateSession(key.config, 'w', cred, { kid: '00', backend: nodeBackend });
  const a = await acceptSession([key], 'w', cred, '00', h.init, { backend: nodeBackend });
  const s = await h.finish(a.reply);
  const { message } = await s.seal(new Uint8Array(10), true);
  const { response } = await a.responder.open(message);
  const chunk = new Uint8Array(64);
  const seal = await medianUs(() => response.seal(chunk), 20_000, 2_000);
  const k = createSecretKey(new Uint8Array(16));
  const nonce = new Uint8Array(12);
  const bare = await medianUs(() => {
    const c = createCipheriv('aes-128-gcm', k, nonce);
    c.update(chunk);
    c.final();
    return c.getAuthTag();
  }, 20_000, 2_000);
  return [seal, bare];
}

export async function run(): Promise<BenchRow[]> {
  setDefaultBackend(nodeBackend);
  const [sealUs, bareUs] = await chunkSeal();
  const [m1, m2] = await Promise.all([gmProcess(['dev-model', '--listen', '127.0.0.1:0', '--name', 'bench', '--token-ms', '0']), gmProcess(['dev-model', '--listen', '127.0.0.1:0', '--name', 'bench-stream', '--token-ms', '1'])]);
  const p1 = await proxyProcess(m1.url);
  const p2 = await proxyProcess(p1.url);
  // One process each, so CPU per request compares with one proxy process.
  const stack = await stackOf([m1.url, m2.url], 1);
  const load = new LoadGen();
  const procs = { enclave: stack.enclave.child.pid!, worker: stack.workers[0]!.child.pid!, 'dev-model': m1.child.pid!, 'proxy hop': p1.child.pid!, 'chain first hop': p2.child.pid! };
  const rows: BenchRow[] = [];
  try {
    await load.ask({ op: 'setup', urls: { direct: m1.url, proxy: p1.url, chain: p2.url, gm: stack.enclave.url }, model: 'bench', streamModel: 'bench-stream', streamUrl: m2.url });
    const variants: Variant[] = ['direct', 'proxy', 'chain', 'gm'];
    const m = Object.fromEntries(variants.map((v): [Variant, Measured] => [v, { rps: [], p50: [], p99: [], cpu: {} }])) as Record<Variant, Measured>;
    for (const v of variants) await load.ask({ op: 'run', variant: v, n: 300, c: C }); // warm JIT, pools, sessions
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate the order each round so no variant always runs on a warmer or quieter machine.
      for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
        const before = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuTreeUs(pid)]));
        const x = await load.ask<RunResult>({ op: 'run', variant: v, n: REQUESTS, c: C });
        for (const [k, pid] of Object.entries(procs)) (m[v].cpu[k] ??= []).push((cpuTreeUs(pid) - before[k]!) / REQUESTS);
        (m[v].cpu['load generator'] ??= []).push(x.cpuUs);
        m[v].rps.push(x.rps);
        m[v].p50.push(x.p50);
        m[v].p99.push(x.p99);
      }
    }
    // CPU per request by process, per variant (only the processes on that variant's path).
    const onPath: Record<Variant, string[]> = { direct: ['dev-model'], proxy: ['proxy hop', 'dev-model'], chain: ['chain first hop', 'proxy hop', 'dev-model'], gm: ['enclave', 'worker', 'dev-model'] };
    const notes = variants.map((v) => `${v}: ${med(m[v].rps).toFixed(0)} req/s (${range(m[v].rps)}); CPU µs/req ${[...onPath[v], 'load generator'].map((k) => `${k} ${med(m[v].cpu[k]!).toFixed(0)} (${range(m[v].cpu[k]!)})`).join(', ')}`);
    for (const n of notes) console.log(`  ${n}`);
    const hop = med(m.proxy.cpu['proxy hop']!);
    rows.push(
      atMost('enclave CPU per request', med(m.gm.cpu.enclave!), 'µs', 'plain Node proxy hop', hop, 3, `range ${range(m.gm.cpu.enclave!)} µs over ${ROUNDS} rounds`),
      atMost('worker CPU per request', med(m.gm.cpu.worker!), 'µs', 'plain Node proxy hop', hop, 1.5, `range ${range(m.gm.cpu.worker!)} µs`),
      atLeast('throughput via gm (c=16, 1 KiB chat)', med(m.gm.rps), 'req/s', 'plain two-hop proxy chain', med(m.chain.rps), 0.35, `gm ${range(m.gm.rps)}, chain ${range(m.chain.rps)} req/s`),
      atLeast('throughput via gm (c=16), vs direct', med(m.gm.rps), 'req/s', 'dev-model direct', med(m.direct.rps), 0, `informational: the load generator's HPKE (${med(m.gm.cpu['load generator']!).toFixed(0)} µs/req) shares these cores`),
    );
    const p50g = med(m.gm.p50);
    const p50d = med(m.direct.p50);
    rows.push({ name: 'p50 / p99 latency via gm at c=16', value: p50g, unit: 'ms', floorName: 'direct p50', floor: p50d, ratio: p50g / p50d, target: 'reported (Little: c / throughput)', ok: true, note: `p99 gm ${med(m.gm.p99).toFixed(2)} ms vs direct ${med(m.direct.p99).toFixed(2)} ms; chain p50 ${med(m.chain.p50).toFixed(2)} ms` });
    // Unloaded: one request at a time, alternating.
    const c1: Record<'direct' | 'gm' | 'chain', number[]> = { direct: [], gm: [], chain: [] };
    const c1p99: Record<'direct' | 'gm' | 'chain', number[]> = { direct: [], gm: [], chain: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of ['direct', 'chain', 'gm'] as const) {
        const x = await load.ask<RunResult>({ op: 'run', variant: v, n: 300, c: 1 });
        c1[v].push(x.p50);
        c1p99[v].push(x.p99);
      }
    }
    const added = med(c1.gm) - med(c1.direct);
    rows.push({ name: 'added p50 latency via gm, unloaded (c=1)', value: added, unit: 'ms', floorName: 'direct p50 (c=1)', floor: med(c1.direct), ratio: med(c1.gm) / med(c1.direct), target: 'added <= 1 ms', ok: added <= 1, note: `gm p50 ${range(c1.gm, 2)} ms, p99 ${med(c1p99.gm).toFixed(2)} ms; chain adds ${(med(c1.chain) - med(c1.direct)).toFixed(2)} ms` });
    // Streaming: 1000 tokens at 1 ms; alternating, median of 3 each.
    const sd: number[] = [];
    const sg: number[] = [];
    for (let i = 0; i < 3; i++) {
      sd.push((await load.ask<{ ms: number }>({ op: 'stream', variant: 'direct', tokens: 1000 })).ms);
      sg.push((await load.ask<{ ms: number }>({ op: 'stream', variant: 'gm', tokens: 1000 })).ms);
    }
    rows.push(atMost('streaming 1000 tokens @1 ms: time to last token via gm', med(sg), 'ms', 'dev-model direct', med(sd), 1.1, `gm ${range(sg)} ms, direct ${range(sd)} ms`));
    rows.push({ name: '64-byte chunk seal on the session', value: sealUs, unit: 'µs', floorName: 'bare node:crypto AES-128-GCM seal', floor: bareUs, ratio: sealUs / bareUs, target: 'value <= 5 µs', ok: sealUs <= 5 });
  } finally {
    load.stop();
    for (const w of stack.workers) await w.stop();
    await stack.enclave.stop();
    await p2.stop();
    await p1.stop();
  }
  rows.push(...(await multiProcess(m1.url)));
  await m1.stop();
  await m2.stop();
  return rows;
}

/**
 * `gm enclave --processes 2` vs one process: the same stack started with each in turn (one worker process), the
 * same c=16 load, alternating; aggregate throughput ratio. The worker, the dev-model and the load generator share the
 * same cores, so on a 2-core machine this measures what a second enclave process gains from what they leave.
 */
async function multiProcess(upstream: string): Promise<BenchRow[]> {
  const rps: Record<1 | 2, number[]> = { 1: [], 2: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const n of r % 2 === 0 ? ([1, 2] as const) : ([2, 1] as const)) {
      let s: Awaited<ReturnType<typeof stackOf>> | undefined;
      const load = new LoadGen();
      try {
        s = await stackOf([upstream], n);
        await load.ask({ op: 'setup', urls: { direct: upstream, proxy: upstream, chain: upstream, gm: s.enclave.url }, model: 'bench', streamModel: 'bench', streamUrl: upstream });
        await load.ask({ op: 'run', variant: 'gm', n: 300, c: C });
        rps[n].push((await load.ask<RunResult>({ op: 'run', variant: 'gm', n: REQUESTS, c: C })).rps);
      } catch (e) {
        return [{ name: 'aggregate throughput, gm enclave --processes 2', value: 0, unit: 'req/s', floorName: 'one process', floor: 1, ratio: 0, target: 'ratio >= 1.6', ok: false, note: `not measured: ${(e as Error).message.split('\n')[0]}` }];
      } finally {
        load.stop();
        if (s) {
          for (const w of s.workers) await w.stop();
          await s.enclave.stop();
        }
      }
    }
  }
  return [atLeast('aggregate throughput, gm enclave --processes 2', med(rps[2]), 'req/s', '--processes 1', med(rps[1]), 1.6, `2: ${range(rps[2])}, 1: ${range(rps[1])} req/s`)];
}
