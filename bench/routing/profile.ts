/**
 * CPU profile of the routing path (docs/performance.md): dev-model, `gm worker` and `gm enclave` as their own
 * processes, the enclave and the worker under `node --cpu-prof`, the routing bench's load generator at c=16 (or C), then
 * each profile's self time per request grouped by where it was spent (the file, or the native function).
 *
 *   node bench/routing/profile.ts [requests=3000] [out dir=/tmp/gm-prof] [C=16]
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gmProcess } from '../../test/stack/processes.ts';
import type { LoadRequest, RunResult } from './loadgen.ts';

const N = Number(process.argv[2] ?? 3000);
const dir = process.argv[3] ?? '/tmp/gm-prof';
const C = Number(process.argv[4] ?? 16);
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const bin = fileURLToPath(new URL('../../bin/gm.js', import.meta.url));

function profiled(name: string, args: string[], ready: RegExp): Promise<{ url: string; child: ChildProcess }> {
  const p = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${join(dir, name)}`, bin, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m && ready.test(out)) resolve({ url: m[1]!, child: p });
    });
    p.once('exit', (c) => reject(new Error(`${name} exited ${c}`)));
  });
}

const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim() || 100);
/** utime + stime of a process, µs (/proc/<pid>/stat fields 14 and 15). */
function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_US;
}

interface Node {
  id: number;
  callFrame: { functionName: string; url: string };
}

/**
 * Self time per group from a .cpuprofile, only for samples inside the measured run (`fromEndUs`..`toEndUs` before
 * the profile's end), as shares of the sampled non-idle time.
 */
function summarize(file: string, fromEndUs: number, toEndUs: number): [string, number][] {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; endTime: number };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const stamps: number[] = [];
  let t = p.endTime;
  for (let i = p.samples.length - 1; i >= 0; i--) {
    stamps[i] = t;
    t -= p.timeDeltas[i] ?? 0;
  }
  for (let i = 0; i < p.samples.length; i++) {
    const age = p.endTime - stamps[i]!;
    if (age > fromEndUs || age < toEndUs) continue;
    const n = byId.get(p.samples[i]!)!;
    const { url, functionName } = n.callFrame;
    let g: string;
    if (functionName === '(idle)' || functionName === '(program)' || functionName === '(garbage collector)') g = functionName;
    else if (!url) g = `native ${functionName || '(anonymous)'}`;
    else if (url.startsWith('node:')) g = url;
    else if (url.includes('/node_modules/')) g = `npm ${url.split('/node_modules/')[1]!.split('/').slice(0, url.includes('/node_modules/@') ? 2 : 1).join('/')}`;
    else g = url.replace(/^.*\/(attestation|protocol|enclave|worker|cli|bench|test)\//, '$1/');
    self.set(g, (self.get(g) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const busy = [...self].filter(([g]) => g !== '(idle)');
  const total = busy.reduce((a, [, us]) => a + us, 0);
  return busy.map(([g, us]): [string, number] => [g, us / total]).sort((a, b) => b[1] - a[1]);
}

const model = await gmProcess(['dev-model', '--listen', '127.0.0.1:0', '--name', 'bench', '--token-ms', '0']);
const enclave = await profiled('enclave', ['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0', '--log-level', 'warn', ...(process.env.GM_PROFILE_BEFORE ? [] : ['--processes', '1'])], /listening/);
const worker = await profiled('worker', ['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0', '--log-level', 'warn', '--processes', '1'], /registered with/);
const load = fork(fileURLToPath(new URL('./loadgen.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const ask = <T>(m: LoadRequest) => new Promise<T>((resolve) => {
  load.once('message', (x) => resolve(x as T));
  load.send(m);
});
await ask({ op: 'setup', urls: { direct: model.url, proxy: model.url, chain: model.url, gm: enclave.url }, model: 'bench', streamModel: 'bench', streamUrl: model.url });
await ask({ op: 'run', variant: 'gm', n: 2000, c: C }); // warm-up, as the bench
const cpu0 = { enclave: cpuUs(enclave.child.pid!), worker: cpuUs(worker.child.pid!) };
const tStart = performance.now();
const r = await ask<RunResult>({ op: 'run', variant: 'gm', n: N, c: C });
const tEnd = performance.now();
const perReq = { enclave: (cpuUs(enclave.child.pid!) - cpu0.enclave) / N, worker: (cpuUs(worker.child.pid!) - cpu0.worker) / N };
console.log(`gm: ${r.rps.toFixed(0)} req/s at c=${C} over ${N} requests, p50 ${r.p50.toFixed(2)} ms; CPU per request: enclave ${perReq.enclave.toFixed(0)} µs, worker ${perReq.worker.toFixed(0)} µs (/proc), load generator ${r.cpuUs.toFixed(0)} µs`);
load.send({ op: 'exit' });
const exitedAt: Record<string, number> = {};
for (const [name, p] of [['worker', worker.child], ['enclave', enclave.child]] as const) {
  const exited = new Promise((res) => p.once('exit', res));
  p.kill('SIGTERM');
  await exited;
  exitedAt[name] = performance.now();
}
await model.stop();
for (const name of ['enclave', 'worker']) {
  const f = readdirSync(join(dir, name)).find((x) => x.endsWith('.cpuprofile'));
  if (!f) continue;
  // The profile ends at the process's exit: keep the samples of the measured run only (a 50 ms margin each side).
  const end = exitedAt[name]!;
  const rows = summarize(join(dir, name, f), (end - tStart - 50) * 1000, (end - tEnd + 50) * 1000);
  const total = perReq[name as 'enclave' | 'worker'];
  console.log(`\n${name}: ${total.toFixed(0)} µs CPU per request (/proc), split by the profile's self time in the measured run`);
  for (const [g, share] of rows.slice(0, 22)) console.log(`  ${(share * total).toFixed(1).padStart(7)} µs  ${(100 * share).toFixed(1).padStart(5)}%  ${g}`);
}
