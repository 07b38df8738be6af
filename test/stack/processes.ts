/**
 * `gm` subcommands as child processes, as an operator starts them (used by the process-level stack test and by
 * bench/routing.bench.ts): resolves once the process prints what `ready` matches, with the URL it is listening on.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface GmProcess {
  readonly url: string;
  readonly child: ChildProcess;
  /** SIGTERM (or the given signal); resolves when the process has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function gmProcess(args: readonly string[], ready: RegExp = /listening on (http:\/\/\S+)/, stderr: 'inherit' | 'ignore' = 'inherit'): Promise<GmProcess> {
  const bin = fileURLToPath(new URL('../../bin/gm.js', import.meta.url));
  const p = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', stderr] });
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  let url = '';
  await new Promise<void>((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      url ||= /listening on (http:\/\/\S+)/.exec(out)?.[1] ?? '';
      if (ready.test(out)) resolve();
    });
    p.once('exit', (c) => reject(new Error(`gm ${args[0]} exited ${c}`)));
  });
  return {
    url,
    child: p,
    stop: async (signal = 'SIGTERM') => {
      if (p.exitCode === null && p.signalCode === null) p.kill(signal);
      await exited;
    },
  };
}
