/**
 * Probes for tests that run gm in several processes (test/enclave-processes.test.ts, test/worker-processes.test.ts):
 * bounded waits, a raw keep-alive connection that asks /healthz which process answered, and the kernel's view of a
 * process's children and death (/proc). Every wait is bounded and says what it waited for.
 */
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';

/** Rejects with `what` unless `p` settles within `ms` (a test never waits on the runner's timeout). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}

export interface RawConnection<H> {
  /** GET /healthz on this connection, its JSON answer. */
  health(): Promise<H>;
  /** Settles when the other side closes the connection. */
  readonly closed: Promise<void>;
  close(): void;
}

/** A raw keep-alive connection, open (so accepted by the primary, in order) once this resolves. */
export async function raw<H>(url: string): Promise<RawConnection<H>> {
  const { hostname, port } = new URL(url);
  const socket: Socket = tcpConnect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let got = Buffer.alloc(0);
  let waiting: { resolve(h: H): void; reject(e: Error): void } | undefined;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined); // a reset shows as the close
  void closed.then(() => waiting?.reject(new Error('closed without an answer')));
  socket.on('data', (b: Buffer) => {
    got = Buffer.concat([got, b]);
    const head = got.indexOf('\r\n\r\n');
    if (head < 0 || !waiting) return;
    const length = Number(/content-length: *(\d+)/i.exec(got.subarray(0, head).toString())?.[1] ?? NaN);
    if (got.length < head + 4 + length) return;
    const body = got.subarray(head + 4, head + 4 + length).toString();
    got = got.subarray(head + 4 + length);
    waiting.resolve(JSON.parse(body) as H);
    waiting = undefined;
  });
  return {
    health: () =>
      new Promise<H>((resolve, reject) => {
        waiting = { resolve, reject };
        socket.write(`GET /healthz HTTP/1.1\r\nhost: ${hostname}\r\n\r\n`);
      }),
    closed,
    close: () => socket.destroy(),
  };
}

/** The pids of a process's children. */
export const childrenOf = (pid: number): number[] => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

/** The killed process is gone (a zombie until its primary reaps it, or reaped). */
function dead(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
  } catch {
    return true;
  }
}

export async function untilDead(pid: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!dead(pid)) {
    if (Date.now() > deadline) throw new Error(`process ${pid} still alive 10 s after SIGKILL`);
    await new Promise((r) => setTimeout(r, 10)); // polling the process's state
  }
}
