/**
 * A real uvicorn server (Debian's python3-uvicorn, with python3-h11 and python3-httptools: the ASGI server and HTTP
 * parsers vLLM's and SGLang's OpenAI front ends run on) serving the OpenAI-shaped app of openai_asgi.py, one per
 * call, stopped by `stop()`. Python is GM_PYTHON or /usr/bin/python3 (Debian's, where apt installs the modules).
 * Without those modules `uvicornAvailable()` is false (the caller skips), unless GM_REQUIRE_UVICORN=1, when it throws:
 * CI must not pass by skipping.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PYTHON = process.env.GM_PYTHON ?? '/usr/bin/python3';
const APP = fileURLToPath(new URL('./openai_asgi.py', import.meta.url));

export function uvicornAvailable(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import uvicorn, h11, httptools'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.GM_REQUIRE_UVICORN === '1') throw new Error(`GM_REQUIRE_UVICORN=1 but ${PYTHON} cannot import uvicorn, h11 and httptools (Debian: python3-uvicorn python3-h11 python3-httptools)`);
    return false;
  }
}

export interface Uvicorn {
  readonly url: string;
  /** Chat requests served so far, and the distinct client connections they arrived on. */
  stats(): Promise<{ requests: number; connections: number }>;
  stop(): Promise<void>;
}

/** uvicorn with the given HTTP/1.1 implementation, closing connections idle for `keepAliveS` seconds. */
export function startUvicorn(http: 'h11' | 'httptools', keepAliveS: number): Promise<Uvicorn> {
  const p: ChildProcess = spawn(PYTHON, [APP, http, String(keepAliveS)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (!m) return;
      const url = m[1]!;
      resolve({
        url,
        async stats() {
          return (await (await fetch(`${url}/stats`)).json()) as { requests: number; connections: number };
        },
        stop: () =>
          new Promise<void>((done) => {
            if (p.exitCode !== null) return done();
            p.once('exit', () => done());
            p.kill('SIGTERM');
          }),
      });
    });
    p.once('exit', (code) => reject(new Error(`uvicorn exited ${code}: ${err}`)));
  });
}
