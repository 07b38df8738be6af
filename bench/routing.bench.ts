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
 * gm is measured with two load generators that send the same requests (bench/routing/loadgen.ts): `live`, gm's
 * client sealing each request as it sends it (what a client does, and what the load generator's CPU then competes
 * with), and `pre-encapsulated`, the same client with each run's requests sealed before the run starts (each still a
 * fresh encapsulation with its request time, each answer still opened and checked), so that during the run the
 * cores go to the enclave, the worker and the dev-model. Each gm row is printed for both, marked [live] and [pre].
 *
 * Rows (ratio and target each): enclave CPU vs a proxy hop (<= 3) and worker CPU vs a proxy hop (<= 1.5), both
 * paced at one rate (0.6 of gm's unpaced rate in the round), and beside them each unpaced at its own rate (the proxy
 * then runs 3-4 times faster, and a process's CPU per request falls as its rate rises); throughput vs
 * the two-hop chain (>= 0.35) and vs direct, added p50 at c=1 (<= 1 ms) and p50/p99 at c=16, `--processes 2`
 * aggregate vs one process (>= 1.6) with the ceiling this machine allows it (from CPU per request), the 64-byte chunk
 * seal on the session (<= 5 µs), streaming time to last token vs direct (<= 1.1), and what settlement costs: the enclave's
 * CPU and throughput with the market router and a disk ledger beside `--router first` (informational).
 *
 * GM_BENCH_ROUNDS (default 3), GM_BENCH_REQUESTS per variant and round (default 2000), GM_BENCH_WARMUP requests per
 * variant before the first round (default 2000: V8's optimizing compiler is still busy with gm's longer path after a
 * few hundred requests, and a server is measured in its steady state).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createCipheriv, createSecretKey } from 'node:crypto';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { generateKeyConfig } from '../protocol/ohttp.ts';
import { KEM_MLKEM768_X25519 } from '../protocol/hpke.ts';
import { acceptSession, initiateSession } from '../protocol/session.ts';
import { gmProcess, type GmProcess } from '../test/stack/processes.ts';
import { atLeast, atMost, type BenchRow, interleavedMedians } from './harness.ts';
import type { RunResult, Variant } from './routing/loadgen.ts';
import { cpuTreeUs, LoadGen, proxyProcess } from './routing/processes.ts';

export const title = 'routing: client → enclave → worker → dev-model, each its own process, vs plain Node proxies';

const ROUNDS = Number(process.env.GM_BENCH_ROUNDS ?? 3);
const REQUESTS = Number(process.env.GM_BENCH_REQUESTS ?? 2000);
const WARMUP = Number(process.env.GM_BENCH_WARMUP ?? 2000);
const C = 16;
/** The CPU rows' common pace, as a share of the gm mode's unpaced rate in the same round: below what gm and the proxy hop can each carry. */
const PACE = 0.6;
/** The two ways gm is loaded, by their load generator variant. */
const MODES = [
  { mode: 'live', variant: 'gm' },
  { mode: 'pre', variant: 'gm-pre' },
] as const;

const med = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const range = (xs: readonly number[], d = 0) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`;
/** Each round's own ratio (a round's variants run minutes apart at most, so a ratio within one round shares its load). */
const paired = (a: readonly number[], b: readonly number[]) => a.map((x, i) => x / b[i]!);

/**
 * A row whose ratio is the median of the rounds' own ratios (the machine's load moves both sides of a round alike,
 * and a noisy reference in one round then moves one ratio, not all of them); the medians of each side are shown.
 */
function pairedRow(name: string, a: readonly number[], unit: string, floorName: string, b: readonly number[], target: number, most: boolean, note: string): BenchRow {
  const rs = paired(a, b);
  const ratio = med(rs);
  return { name, value: med(a), unit, floorName, floor: med(b), ratio, target: `median of the rounds' ratios ${most ? '<=' : '>='} ${target}`, ok: most ? ratio <= target : ratio >= target, note: `rounds' ratios ${range(rs, 2)}; ${note}` };
}

interface Measured {
  rps: number[];
  p50: number[];
  p99: number[];
  cpu: Record<string, number[]>;
}

/**
 * `gm enclave --processes n` (the worker runs one process) and one `gm worker` per upstream; `--router first` unless
 * `router` gives other flags.
 */
async function stackOf(upstreams: readonly string[], processes: number, router: readonly string[] = ['--router', 'first']): Promise<{ enclave: GmProcess; workers: GmProcess[] }> {
  const enclave = await gmProcess(['enclave', '--tee', 'sim', ...router, '--listen', '127.0.0.1:0', '--log-level', 'warn', '--processes', String(processes)], undefined, 'ignore');
  const workers: GmProcess[] = [];
  for (const u of upstreams) workers.push(await gmProcess(['worker', '--tee', 'sim', '--upstream', u, '--enclave', enclave.url, '--listen', '127.0.0.1:0', '--log-level', 'warn', '--processes', '1'], /registered with/, 'ignore'));
  return { enclave, workers };
}

/** A stack (`stackOf`, one upstream) with a load generator of its own, set up for it; `stop` ends both. */
interface LoadedStack {
  readonly stack: Awaited<ReturnType<typeof stackOf>>;
  readonly load: LoadGen;
  stop(): Promise<void>;
}

async function loadedStack(upstream: string, processes: number, router?: readonly string[]): Promise<LoadedStack> {
  const stack = await stackOf([upstream], processes, router);
  const load = new LoadGen();
  const stop = async () => {
    load.stop();
    for (const w of stack.workers) await w.stop();
    await stack.enclave.stop();
  };
  try {
    await load.ask({ op: 'setup', urls: { direct: upstream, proxy: upstream, chain: upstream, gm: stack.enclave.url }, model: 'bench', streamModel: 'bench', streamUrl: upstream });
  } catch (e) {
    await stop();
    throw e;
  }
  return { stack, load, stop };
}

/** The 64-byte chunk seal on a session as the worker makes it per token (`sealNow`), beside a bare node:crypto AES-128-GCM seal. */
async function chunkSeal(): Promise<[number, number]> {
  const key = await generateKeyConfig(1, undefined, { kemId: KEM_MLKEM768_X25519, backend: nodeBackend });
  const cred = new Uint8Array(32).fill(1);
  const h = await initiateSession(key.config, 'w', cred, { kid: '00', backend: nodeBackend });
  const a = await acceptSession([key], 'w', cred, '00', h.init, { backend: nodeBackend });
  const s = await h.finish(a.reply);
  const { message } = await s.seal(new Uint8Array(10), true);
  const { response } = await a.responder.open(message);
  const chunk = new Uint8Array(64);
  const k = createSecretKey(new Uint8Array(16));
  const nonce = new Uint8Array(12);
  // Timed in alternating blocks, so that the machine's other load falls on both alike.
  const [seal, bare] = await interleavedMedians([
    () => response.sealNow(chunk),
    () => {
      const c = createCipheriv('aes-128-gcm', k, nonce);
      c.update(chunk);
      c.final();
      return c.getAuthTag();
    },
  ], 20, 1_000);
  return [seal!, bare!];
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
    const variants: Variant[] = ['direct', 'proxy', 'chain', 'gm', 'gm-pre'];
    const m = Object.fromEntries(variants.map((v): [Variant, Measured] => [v, { rps: [], p50: [], p99: [], cpu: {} }])) as Record<Variant, Measured>;
    for (const v of variants) await runOn(load, v, WARMUP, C); // warm JIT, pools, sessions
    const paced: Partial<Record<'gm' | 'gm-pre', { rps: number[]; cpu: Record<string, number[]> }>> = {};
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate the order each round so no variant always runs on a warmer or quieter machine.
      for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
        if (v === 'gm-pre') await load.ask({ op: 'prepare', n: REQUESTS }); // untimed, and outside the CPU readings
        const before = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuTreeUs(pid)]));
        const x = await load.ask<RunResult>({ op: 'run', variant: v, n: REQUESTS, c: C });
        for (const [k, pid] of Object.entries(procs)) (m[v].cpu[k] ??= []).push((cpuTreeUs(pid) - before[k]!) / REQUESTS);
        (m[v].cpu['load generator'] ??= []).push(x.cpuUs);
        m[v].rps.push(x.rps);
        m[v].p50.push(x.p50);
        m[v].p99.push(x.p99);
      }
      // Each gm mode and the proxy hop again, both paced at one rate below either's capacity (0.6 of that gm mode's
      // rate just measured): a process's CPU per request falls as its rate rises (more requests share each wake-up
      // and event-loop turn, docs/performance.md), and unpaced the proxy runs at 3-4 times gm's rate on these cores.
      for (const { variant: v } of MODES) {
        const rps = PACE * m[v].rps[r]!;
        for (const which of r % 2 === 0 ? (['gm', 'proxy'] as const) : (['proxy', 'gm'] as const)) {
          const on = which === 'gm' ? { enclave: procs.enclave, worker: procs.worker } : { 'proxy hop': procs['proxy hop'] };
          if (which === 'gm' && v === 'gm-pre') await load.ask({ op: 'prepare', n: REQUESTS });
          const before = Object.fromEntries(Object.entries(on).map(([k, pid]) => [k, cpuTreeUs(pid)]));
          await load.ask<RunResult>({ op: 'run', variant: which === 'gm' ? v : 'proxy', n: REQUESTS, c: C, rps });
          const p = (paced[v] ??= { rps: [], cpu: {} });
          for (const [k, pid] of Object.entries(on)) (p.cpu[k] ??= []).push((cpuTreeUs(pid) - before[k]!) / REQUESTS);
          if (which === 'gm') p.rps.push(rps);
        }
      }
    }
    // CPU per request by process, per variant (only the processes on that variant's path).
    const onPath: Record<Variant, string[]> = { direct: ['dev-model'], proxy: ['proxy hop', 'dev-model'], chain: ['chain first hop', 'proxy hop', 'dev-model'], gm: ['enclave', 'worker', 'dev-model'], 'gm-pre': ['enclave', 'worker', 'dev-model'], 'gm-raw': ['enclave'] };
    const notes = variants.map((v) => `${v}: ${med(m[v].rps).toFixed(0)} req/s (${range(m[v].rps)}); CPU µs/req ${[...onPath[v], 'load generator'].map((k) => `${k} ${med(m[v].cpu[k]!).toFixed(0)} (${range(m[v].cpu[k]!)})`).join(', ')}`);
    for (const n of notes) console.log(`  ${n}`);
    const hop = m.proxy.cpu['proxy hop']!;
    for (const { mode, variant: v } of MODES) {
      const g = m[v];
      const pc = paced[v]!;
      const own = `gm ${range(g.rps)} req/s, proxy hop ${range(m.proxy.rps)} req/s`;
      rows.push(
        pairedRow(`enclave CPU per request, both paced at one rate [${mode}]`, pc.cpu.enclave!, 'µs', 'plain Node proxy hop at that rate', pc.cpu['proxy hop']!, 3, true, `enclave ${range(pc.cpu.enclave!)} µs, proxy hop ${range(pc.cpu['proxy hop']!)} µs at ${range(pc.rps)} req/s over ${ROUNDS} rounds`),
        pairedRow(`worker CPU per request, both paced at one rate [${mode}]`, pc.cpu.worker!, 'µs', 'plain Node proxy hop at that rate', pc.cpu['proxy hop']!, 1.5, true, `worker ${range(pc.cpu.worker!)} µs`),
        {
          ...pairedRow(`enclave CPU per request, each at its own rate [${mode}]`, g.cpu.enclave!, 'µs', 'plain Node proxy hop, unpaced', hop, 3, true, `enclave ${range(g.cpu.enclave!)} µs, proxy hop ${range(hop)} µs; ${own}`),
          target: 'informational (unequal rates: the proxy runs 3-4 times faster on the same cores)',
          ok: true,
        },
        {
          ...pairedRow(`worker CPU per request, each at its own rate [${mode}]`, g.cpu.worker!, 'µs', 'plain Node proxy hop, unpaced', hop, 1.5, true, `worker ${range(g.cpu.worker!)} µs`),
          target: 'informational (unequal rates: the proxy runs 3-4 times faster on the same cores)',
          ok: true,
        },
        pairedRow(`throughput via gm (c=16, 1 KiB chat) [${mode}]`, g.rps, 'req/s', 'plain two-hop proxy chain', m.chain.rps, 0.35, false, `gm ${range(g.rps)}, chain ${range(m.chain.rps)} req/s; load generator ${med(g.cpu['load generator']!).toFixed(0)} µs/req during the run (chain ${med(m.chain.cpu['load generator']!).toFixed(0)})`),
        atLeast(`throughput via gm (c=16), vs direct [${mode}]`, med(g.rps), 'req/s', 'dev-model direct', med(m.direct.rps), 0, 'informational: the load generator and every hop share these cores'),
      );
      rows.push({ name: `p50 / p99 latency via gm at c=16 [${mode}]`, value: med(g.p50), unit: 'ms', floorName: 'direct p50', floor: med(m.direct.p50), ratio: med(g.p50) / med(m.direct.p50), target: 'reported (Little: c / throughput)', ok: true, note: `p99 gm ${med(g.p99).toFixed(2)} ms vs direct ${med(m.direct.p99).toFixed(2)} ms; chain p50 ${med(m.chain.p50).toFixed(2)} ms` });
    }
    // Unloaded: one request at a time, alternating.
    const c1Variants = ['direct', 'chain', 'gm', 'gm-pre'] as const;
    const c1 = Object.fromEntries(c1Variants.map((v) => [v, [] as number[]])) as Record<(typeof c1Variants)[number], number[]>;
    const c1p99 = Object.fromEntries(c1Variants.map((v) => [v, [] as number[]])) as Record<(typeof c1Variants)[number], number[]>;
    // CPU per request at c=1 of each process on gm's path: at c=1 the latency is their sum plus the wake-ups.
    const c1cpu: Record<'gm' | 'gm-pre' | 'chain', Record<string, number[]>> = { gm: {}, 'gm-pre': {}, chain: {} };
    const c1procs: Record<'gm' | 'gm-pre' | 'chain', Record<string, number>> = {
      gm: { enclave: procs.enclave, worker: procs.worker, 'dev-model': procs['dev-model'] },
      'gm-pre': { enclave: procs.enclave, worker: procs.worker, 'dev-model': procs['dev-model'] },
      chain: { 'chain first hop': procs['chain first hop'], 'proxy hop': procs['proxy hop'] },
    };
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of r % 2 === 0 ? c1Variants : [...c1Variants].reverse()) {
        if (v === 'gm-pre') await load.ask({ op: 'prepare', n: 300 }); // untimed, and outside the CPU readings
        const on = v === 'direct' ? {} : c1procs[v];
        const before = Object.fromEntries(Object.entries(on).map(([k, pid]) => [k, cpuTreeUs(pid)]));
        const x = await load.ask<RunResult>({ op: 'run', variant: v, n: 300, c: 1 });
        if (v !== 'direct') {
          for (const [k, pid] of Object.entries(on)) (c1cpu[v][k] ??= []).push((cpuTreeUs(pid) - before[k]!) / 300);
          (c1cpu[v]['load generator'] ??= []).push(x.cpuUs);
        }
        c1[v].push(x.p50);
        c1p99[v].push(x.p99);
      }
    }
    const cpuAt1 = (v: 'gm' | 'gm-pre' | 'chain') => Object.entries(c1cpu[v]).map(([k, xs]) => `${k} ${med(xs).toFixed(0)}`).join(', ');
    for (const { mode, variant: v } of MODES) {
      const added = med(c1[v]) - med(c1.direct);
      rows.push({ name: `added p50 latency via gm, unloaded (c=1) [${mode}]`, value: added, unit: 'ms', floorName: 'direct p50 (c=1)', floor: med(c1.direct), ratio: med(c1[v]) / med(c1.direct), target: 'added <= 1 ms', ok: added <= 1, note: `gm p50 ${range(c1[v], 2)} ms, p99 ${med(c1p99[v]).toFixed(2)} ms; chain adds ${(med(c1.chain) - med(c1.direct)).toFixed(2)} ms; CPU µs per request at c=1: ${cpuAt1(v)} (chain: ${cpuAt1('chain')})` });
    }
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
  rows.push(...(await multiProcess(m1.url, m1.child.pid!)));
  rows.push(...(await settlement(m1.url)));
  await m1.stop();
  await m2.stop();
  return rows;
}

/** A run of `n` requests at concurrency `c`; for `gm-pre`, its requests are sealed first (not timed). */
async function runOn(load: LoadGen, variant: Variant, n: number, c: number): Promise<RunResult> {
  if (variant === 'gm-pre') await load.ask({ op: 'prepare', n });
  return load.ask<RunResult>({ op: 'run', variant, n, c });
}

/**
 * `gm enclave --processes 2` vs one process: two stacks (each with one worker process, both on the dev-model
 * `upstream`) running side by side and loaded in turn, alternating, with the same c=16 load in both modes; aggregate
 * throughput ratio, with the ratio of each turn's pair. CPU per request is read
 * for every process of the machine's load (the enclave with its processes, the worker, the dev-model, the load
 * generator), which gives two ceilings: one enclave process can serve at most 1 s / (its CPU per request), and the
 * machine at most (cores × 1 s) / (the CPU per request of all processes together). If the cores were the bench's
 * alone, a second process could add no more than the machine's ceiling leaves above the first's: that ratio is
 * printed beside the measured one, with how close one process came to its ceiling and the cores 1.6 would need.
 * A third load, `enclave-only`, is where the enclave is the bottleneck: pre-encapsulated `GET /v1/models`, which the
 * enclave answers itself (decapsulation, request time and replay check, the inner surface, the response seal), sent
 * on lean keep-alive connections (the enclave's lane connection) so that neither a worker, a dev-model nor undici's client
 * API shares the cores; it shows what a second process adds to the enclave's own work.
 */
async function multiProcess(upstream: string, upstreamPid: number): Promise<BenchRow[]> {
  type Cell = { rps: number[]; enclave: number[]; all: number[] };
  type Mode = 'live' | 'pre' | 'enclave-only';
  const cell = (): Cell => ({ rps: [], enclave: [], all: [] });
  const x: Record<1 | 2, Record<Mode, Cell>> = { 1: { live: cell(), pre: cell(), 'enclave-only': cell() }, 2: { live: cell(), pre: cell(), 'enclave-only': cell() } };
  const loads: readonly { readonly mode: Mode; readonly variant: Variant; readonly request?: 'models' }[] = [...MODES, { mode: 'enclave-only', variant: 'gm-raw', request: 'models' }];
  // Both stacks run side by side (an idle stack costs nothing) and take turns, so load from elsewhere on a shared
  // machine falls on both alike; each turn gives one paired ratio.
  const stacks: Partial<Record<1 | 2, LoadedStack>> = {};
  const paired: Record<Mode, number[]> = { live: [], pre: [], 'enclave-only': [] };
  try {
    for (const n of [1, 2] as const) {
      const { load } = (stacks[n] = await loadedStack(upstream, n));
      for (const { variant } of MODES) await runOn(load, variant, WARMUP, C); // warm JIT, pools, sessions
      await load.ask({ op: 'prepare', n: WARMUP, request: 'models' });
      await load.ask<RunResult>({ op: 'run', variant: 'gm-raw', n: WARMUP, c: C });
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const { mode, variant, request } of r % 2 === 0 ? loads : [...loads].reverse()) {
        const got: Partial<Record<1 | 2, number>> = {};
        for (const n of (r + loads.findIndex((l) => l.mode === mode)) % 2 === 0 ? ([1, 2] as const) : ([2, 1] as const)) {
          const { stack: s, load } = stacks[n]!;
          if (variant === 'gm-pre' || variant === 'gm-raw') await load.ask({ op: 'prepare', n: REQUESTS, ...(request ? { request } : {}) });
          const pids = { enclave: s.enclave.child.pid!, worker: s.workers[0]!.child.pid!, model: upstreamPid };
          const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuTreeUs(pid)]));
          const res = await load.ask<RunResult>({ op: 'run', variant, n: REQUESTS, c: C });
          const per = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, (cpuTreeUs(pid) - before[k]!) / REQUESTS]));
          x[n][mode].rps.push(res.rps);
          x[n][mode].enclave.push(per.enclave!);
          x[n][mode].all.push(per.enclave! + per.worker! + per.model! + res.cpuUs);
          got[n] = res.rps;
        }
        paired[mode].push(got[2]! / got[1]!);
      }
    }
  } catch (e) {
    return [{ name: 'aggregate throughput, gm enclave --processes 2', value: 0, unit: 'req/s', floorName: 'one process', floor: 1, ratio: 0, target: 'ratio >= 1.6', ok: false, note: `not measured: ${(e as Error).message.split('\n')[0]}` }];
  } finally {
    for (const n of [1, 2] as const) await stacks[n]?.stop();
  }
  const cores = availableParallelism();
  const rows: BenchRow[] = [];
  for (const { mode } of loads) {
    const one = x[1][mode];
    const two = x[2][mode];
    if (mode === 'enclave-only') {
      rows.push(atLeast('aggregate throughput, gm enclave --processes 2 [enclave-only: pre-encapsulated GET /v1/models]', med(two.rps), 'req/s', '--processes 1', med(one.rps), 1.6, `2: ${range(two.rps)}, 1: ${range(one.rps)} req/s; paired ratios ${range(paired[mode], 2)}; enclave ${med(one.enclave).toFixed(0)} / ${med(two.enclave).toFixed(0)} µs CPU per request (with a core per process it could serve ×${((2 * med(one.enclave)) / med(two.enclave)).toFixed(2)}), busy ${((med(one.enclave) * med(one.rps)) / 1e6).toFixed(2)} / ${((med(two.enclave) * med(two.rps)) / 1e6).toFixed(2)} cores; load generator ${(med(two.all) - med(two.enclave)).toFixed(0)} µs per request`));
      continue;
    }
    // Ceilings from CPU per request (medians): one enclave process (a core), and the whole machine with two.
    const enclaveCeiling = 1e6 / med(one.enclave);
    const machineCeiling = (cores * 1e6) / med(two.all);
    const bound = Math.min(2 * enclaveCeiling, machineCeiling) / Math.min(enclaveCeiling, (cores * 1e6) / med(one.all));
    const busy = (c: Cell) => ((med(c.enclave) * med(c.rps)) / 1e6).toFixed(2);
    rows.push(atLeast(`aggregate throughput, gm enclave --processes 2 [${mode}]`, med(two.rps), 'req/s', '--processes 1', med(one.rps), 1.6, `2: ${range(two.rps)}, 1: ${range(one.rps)} req/s; paired ratios ${range(paired[mode], 2)}; enclave busy ${busy(one)} cores with 1 process, ${busy(two)} with 2; all processes ${med(one.all).toFixed(0)} / ${med(two.all).toFixed(0)} µs CPU per request`));
    // 1.6 needs the machine's ceiling at 1.6 × one enclave process's: cores >= 1.6 × (all processes' CPU) / (the enclave's).
    const needed = (1.6 * med(two.all)) / med(one.enclave);
    const reached = (100 * med(one.rps)) / Math.min(enclaveCeiling, (cores * 1e6) / med(one.all));
    rows.push({ name: `--processes 2 ÷ 1 allowed by the CPU ceilings on ${cores} cores [${mode}]`, value: bound, unit: '×', floorName: 'ceilings from CPU per request', floor: 1, ratio: bound, target: 'informational (if these cores were the bench\'s alone)', ok: true, note: `one enclave process ${enclaveCeiling.toFixed(0)} req/s (1 s / ${med(one.enclave).toFixed(0)} µs); the machine ${machineCeiling.toFixed(0)} req/s (${cores} s / ${med(two.all).toFixed(0)} µs of all processes); one process reached ${reached.toFixed(0)}% of its ceiling (below 100%: the machine's other load set the measured ratio); 1.6 needs ${needed.toFixed(1)} cores; with a core per enclave process, ×${((2 * med(one.enclave)) / med(two.enclave)).toFixed(2)} (2 × ${med(one.enclave).toFixed(0)} / ${med(two.enclave).toFixed(0)} µs)` });
  }
  return rows;
}

/**
 * What settlement costs the enclave: a stack with the market router and a ledger on disk (SQLite in a temporary
 * directory: the hold, the receipt signed and group-committed with synchronous=FULL before the answer leaves) beside
 * one with `--router first` (no ledger), both pre-encapsulated at c=16, loaded in turn and alternating. Per round:
 * the enclave's CPU per request and the throughput of each, as paired ratios.
 */
async function settlement(upstream: string): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gm-bench-ledger-'));
  const kinds = { first: ['--router', 'first'], market: ['--router', 'market', '--ledger', join(dir, 'ledger.db')] } as const;
  type Kind = keyof typeof kinds;
  const stacks: Partial<Record<Kind, LoadedStack>> = {};
  const cpu: Record<Kind, number[]> = { first: [], market: [] };
  const rps: Record<Kind, number[]> = { first: [], market: [] };
  try {
    for (const k of ['first', 'market'] as const) {
      const { load } = (stacks[k] = await loadedStack(upstream, 1, kinds[k]));
      await runOn(load, 'gm-pre', WARMUP, C);
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of r % 2 === 0 ? (['first', 'market'] as const) : (['market', 'first'] as const)) {
        const { stack, load } = stacks[k]!;
        const pid = stack.enclave.child.pid!;
        await load.ask({ op: 'prepare', n: REQUESTS });
        const before = cpuTreeUs(pid);
        const x = await load.ask<RunResult>({ op: 'run', variant: 'gm-pre', n: REQUESTS, c: C });
        cpu[k].push((cpuTreeUs(pid) - before) / REQUESTS);
        rps[k].push(x.rps);
      }
    }
  } catch (e) {
    return [{ name: 'enclave CPU per request with settlement', value: 0, unit: 'µs', floorName: '--router first', floor: 1, ratio: 0, target: 'informational', ok: false, note: `not measured: ${(e as Error).message.split('\n')[0]}` }];
  } finally {
    for (const k of ['first', 'market'] as const) await stacks[k]?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const info = 'informational (what settlement adds: hold, receipt, group commit to disk)';
  return [
    { ...pairedRow('enclave CPU per request, market router + disk ledger [pre]', cpu.market, 'µs', '--router first (no ledger)', cpu.first, 1, true, `market ${range(cpu.market)} µs, first ${range(cpu.first)} µs over ${ROUNDS} rounds`), target: info, ok: true },
    { ...pairedRow('throughput at c=16, market router + disk ledger [pre]', rps.market, 'req/s', '--router first (no ledger)', rps.first, 1, false, `market ${range(rps.market)}, first ${range(rps.first)} req/s`), target: info, ok: true },
  ];
}
