/**
 * The routing benches' processes (bench/routing.bench.ts, rate-sweep.ts): a plain Node proxy hop, the load generator
 * (./loadgen.ts, asked over IPC), and a process tree's CPU time from /proc.
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { GmProcess } from '../../test/stack/processes.ts';
import type { LoadRequest } from './loadgen.ts';

const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim() || 100);

/** CPU time (µs) of a process and its live descendants, from /proc. */
export function cpuTreeUs(pid: number): number {
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

export function proxyProcess(upstream: string): Promise<GmProcess> {
  return new Promise((resolve, reject) => {
    const p = fork(fileURLToPath(new URL('./plain-proxy.ts', import.meta.url)), [upstream], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let out = '';
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1]!, child: p, stop: async () => void (p.exitCode === null && p.kill('SIGTERM')) });
    });
    p.once('exit', (c) => reject(new Error(`plain proxy exited ${c}`)));
  });
}

export class LoadGen {
  readonly #p: ChildProcess;
  #queue: ((x: unknown) => void)[] = [];
  constructor() {
    this.#p = fork(fileURLToPath(new URL('./loadgen.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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
