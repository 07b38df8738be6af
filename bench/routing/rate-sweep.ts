/**
 * CPU per request against request rate (docs/performance.md): the pre-encapsulated gm path (dev-model, `gm worker`,
 * `gm enclave`, one process each) and a plain Node proxy hop, each paced at a list of rates and then unpaced, in
 * alternating rounds. Prints, per process and rate, CPU µs per request (/proc utime + stime) and the voluntary
 * context switches per request (/proc/<pid>/task/<tid>/status: how often it went to sleep and was woken).
 *
 *   node bench/routing/rate-sweep.ts [requests=3000] [rounds=3] [rates=500,1000] [C=16]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { gmProcess } from '../../test/stack/processes.ts';
import type { RunResult } from './loadgen.ts';
import { cpuTreeUs, LoadGen, proxyProcess } from './processes.ts';

const N = Number(process.argv[2] ?? 3000);
const ROUNDS = Number(process.argv[3] ?? 3);
const RATES = (process.argv[4] ?? '500,1000').split(',').filter(Boolean).map(Number);
const C = Number(process.argv[5] ?? 16);

interface Reading {
  readonly cpuUs: number;
  readonly sleeps: number;
}
/** CPU time and voluntary context switches over all threads. */
function read(pid: number): Reading {
  let sleeps = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    sleeps += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'))?.[1] ?? 0);
  }
  return { cpuUs: cpuTreeUs(pid), sleeps };
}

const model = await gmProcess(['dev-model', '--listen', '127.0.0.1:0', '--name', 'bench', '--token-ms', '0']);
const enclave = await gmProcess(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0', '--log-level', 'warn', '--processes', '1'], undefined, 'ignore');
const worker = await gmProcess(['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0', '--log-level', 'warn', '--processes', '1'], /registered with/, 'ignore');
const proxy = await proxyProcess(model.url);
const load = new LoadGen();

await load.ask({ op: 'setup', urls: { direct: model.url, proxy: proxy.url, chain: proxy.url, gm: enclave.url }, model: 'bench', streamModel: 'bench', streamUrl: model.url });
await load.ask({ op: 'run', variant: 'gm', n: 2000, c: C }); // warm-up, as the bench
await load.ask({ op: 'run', variant: 'proxy', n: 2000, c: C });

const procs: Record<'gm-pre' | 'proxy', Record<string, number>> = {
  'gm-pre': { enclave: enclave.child.pid!, worker: worker.child.pid! },
  proxy: { 'proxy hop': proxy.child.pid! },
};
type Key = `${string}@${string}`;
const out = new Map<Key, { cpu: number[]; sleeps: number[]; rps: number[] }>();
for (let r = 0; r < ROUNDS; r++) {
  const paces = r % 2 === 0 ? [...RATES, 0] : [0, ...RATES].reverse();
  for (const rps of paces) {
    for (const v of r % 2 === 0 ? (['gm-pre', 'proxy'] as const) : (['proxy', 'gm-pre'] as const)) {
      if (v === 'gm-pre') await load.ask({ op: 'prepare', n: N });
      const before = Object.fromEntries(Object.entries(procs[v]).map(([k, pid]) => [k, read(pid)]));
      const x = await load.ask<RunResult>({ op: 'run', variant: v, n: N, c: C, ...(rps ? { rps } : {}) });
      for (const [k, pid] of Object.entries(procs[v])) {
        const now = read(pid);
        const row = out.get(`${k}@${rps || 'unpaced'}`) ?? { cpu: [], sleeps: [], rps: [] };
        row.cpu.push((now.cpuUs - before[k]!.cpuUs) / N);
        row.sleeps.push((now.sleeps - before[k]!.sleeps) / N);
        row.rps.push(x.rps);
        out.set(`${k}@${rps || 'unpaced'}`, row);
      }
    }
  }
}
load.stop();
await proxy.stop();
await worker.stop();
await enclave.stop();
await model.stop();

const med = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const span = (xs: readonly number[], d = 0) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`;
console.log(`${N} requests per run at c=${C}, ${ROUNDS} rounds; medians (range)`);
const order = (k: string) => [k.split('@')[0]!, Number(k.split('@')[1]) || Infinity] as const;
const byRate = ([a]: [string, unknown], [b]: [string, unknown]) => order(a)[0].localeCompare(order(b)[0]) || order(a)[1] - order(b)[1];
for (const [key, row] of [...out].sort(byRate)) {
  console.log(`${key.padEnd(20)} ${med(row.rps).toFixed(0).padStart(5)} req/s  CPU ${med(row.cpu).toFixed(0).padStart(4)} µs/req (${span(row.cpu)})  sleeps ${med(row.sleeps).toFixed(2)}/req (${span(row.sleeps, 2)})`);
}
