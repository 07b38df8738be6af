/**
 * Probes for tests that run gm in several processes (test/enclave-processes.test.ts, test/worker-processes.test.ts,
 * test/worker-rotation.test.ts): bounded waits, a raw keep-alive connection that asks /healthz which process answered,
 * a connection to each process, the kernel's view of a process's children and death (/proc), and the connection
 * hand-off scenario both commands share (enclave/handoff.ts).
 * Every wait is bounded and says what it waited for.
 */
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { Client } from 'undici';
import { expect } from 'vitest';

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

/** One connection to the worker: every request on it reaches the same process. */
export function connection(url: string) {
  const c = new Client(url, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  let dropped = 0;
  c.on('disconnect', () => void dropped++);
  const request = async (method: 'GET' | 'POST', path: string, body?: Uint8Array, type?: string, headers: Record<string, string> = {}) => {
    const r = await c.request({ path, method, ...(body ? { body, headers: { ...headers, 'content-type': type! } } : {}) });
    return { status: r.statusCode, bytes: new Uint8Array(await r.body.arrayBuffer()) };
  };
  const text = async (path: string) => new TextDecoder().decode((await request('GET', path)).bytes);
  return {
    request, text, health: async () => JSON.parse(await text('/healthz')) as { process: number; workerId: string }, close: () => c.close(),
    /** Times the connection closed (a later request would go on a new connection, maybe to another process). */
    dropped: () => dropped,
  };
}

/** Fresh connections until one reached each of the `n` processes. */
export async function perProcess(url: string, n = 2): Promise<Map<number, ReturnType<typeof connection>>> {
  const seen = new Map<number, ReturnType<typeof connection>>();
  for (let i = 0; i < 50 && seen.size < n; i++) {
    const c = connection(url);
    const p = await c.health().then((h) => h.process, () => undefined);
    if (p === undefined || seen.has(p)) await c.close().catch(() => undefined);
    else seen.set(p, c);
  }
  expect([...seen.keys()].sort()).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  return seen;
}

/** A counter of the worker's Prometheus text (0 when absent). */
export function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line ? Number(line.split(' ')[1]) : 0;
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

/**
 * The hand-off of connections by a primary of two processes (`url`, primary `pid`): a connection handed to a process
 * that dies before taking it is served by the other, new connections meanwhile go to the process that takes them, and
 * one the dead process had taken closes at once. Stops and kills one process; returns the two first connections'
 * answers (one from each process) and the process that lived. The caller checks the replacement.
 */
export async function handOffSurvivesAKill<H extends { process: number }>(url: string, pid: number): Promise<{ owners: H[]; live: number }> {
  // Two connections in a row: the primary hands one to each process, which takes it.
  const kept = [await raw<H>(url), await raw<H>(url)];
  const owners = await within(Promise.all(kept.map((k) => k.health())), 20_000, 'both processes answer');
  expect(owners.map((h) => h.process).sort()).toEqual([1, 2]);
  const victim = childrenOf(pid)[0]!;
  // Stopped, the victim cannot take what the primary hands it: of the next two connections, one waits for it.
  process.kill(victim, 'SIGSTOP');
  const next = [await raw<H>(url), await raw<H>(url)];
  const asked = next.map((k) => k.health());
  for (const q of asked) q.catch(() => undefined);
  const live = (await within(Promise.race(asked), 20_000, 'the live process answers one of two fresh connections')).process;
  // While the victim has not taken the connection it was handed, the primary hands new ones to the other process.
  const more = [await raw<H>(url), await raw<H>(url), await raw<H>(url)];
  const meanwhile = await within(Promise.all(more.map((k) => k.health())), 20_000, 'new connections go to the process that takes them');
  expect(meanwhile.map((h) => h.process)).toEqual([live, live, live]);
  process.kill(victim, 'SIGKILL');
  await untilDead(victim);
  // That connection was never taken: the primary hands it on, and it is answered instead of left open.
  const answered = await within(Promise.all(asked), 20_000, 'the connection handed to the killed process is answered by the other');
  expect(answered.map((h) => h.process)).toEqual([live, live]);
  // The connection the victim had taken died with it: closed at once, not held open by the primary.
  const gone = kept[owners.findIndex((h) => h.process !== live)]!;
  await within(gone.closed, 5_000, "the killed process's connection closes");
  const stays = kept[owners.findIndex((h) => h.process === live)]!;
  expect((await within(stays.health(), 20_000, 'the live process still answers its connection')).process).toBe(live);
  for (const k of [...kept, ...next, ...more]) k.close();
  return { owners, live };
}
