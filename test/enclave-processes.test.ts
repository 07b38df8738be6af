/**
 * `gm enclave --processes 2` as an operator runs it (sim): both processes serve and attest the same key
 * configuration; a worker registered once (with whichever process took the connection) is routable from each; a
 * process killed with SIGKILL under load loses no receipt a client received, while the primary replaces it; and a
 * connection the primary handed to a process that died before taking it is served by another process (and while a
 * process does not take what it was handed, new connections go to the other), while one the dead process had taken
 * fails at once (enclave/cluster.ts).
 * Each request that must reach a given process goes over its own connection (the primary hands connections to the
 * ready processes in turn); /healthz says which process answered. Every wait is bounded and says what it waited for.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Client } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeBundle } from '../attestation/bundle.ts';
import { hex } from '../attestation/bytes.ts';
import type { Transport } from '../enclave/ohttp/client.ts';
import { parseReceiptHeader } from '../protocol/receipt.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { connect } from './stack/client.ts';
import { childrenOf, handOffSurvivesAKill, untilDead, within } from './stack/process-probes.ts';
import { type GmProcess, gmProcess } from './stack/processes.ts';

const running: GmProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'gm-processes-'));
afterAll(async () => {
  for (const p of running.reverse()) await p.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function start(args: string[], ready?: RegExp): Promise<GmProcess> {
  const p = await gmProcess(args, ready, 'ignore');
  running.push(p);
  return p;
}

/** Every request bound: a connection that nobody serves fails its request, it does not hang. */
const BOUND = { connectTimeout: 5_000, headersTimeout: 5_000, bodyTimeout: 5_000 } as const;
type Health = { process: number; workers: number };

/** One connection: every request on it (the attestation and the key configs included) reaches the same process. */
function connection(url: string) {
  const c = new Client(url, BOUND);
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const r = await c.request({ path, method: 'GET', headers });
    return { status: r.statusCode, body: new Uint8Array(await r.body.arrayBuffer()) };
  };
  const transport: Transport = async (body, contentType) => {
    const r = await c.request({ path: '/v1/ohttp', method: 'POST', headers: { 'content-type': contentType }, body });
    return {
      status: r.statusCode,
      contentType: String(r.headers['content-type'] ?? '').split(';')[0]!.trim(),
      body: (async function* () {
        for await (const x of r.body) yield new Uint8Array(x as Buffer);
      })(),
      cancel: () => void r.body.destroy(),
    };
  };
  const fetchOn = async (u: string, init?: RequestInit) => {
    const { pathname, search } = new URL(u);
    const r = await get(pathname + search, (init?.headers ?? {}) as Record<string, string>);
    return new Response(r.body, { status: r.status });
  };
  return {
    get: async (path: string) => (await get(path)).body,
    client: () => connect(url, { transport, fetch: fetchOn }),
    process: async () => JSON.parse(new TextDecoder().decode((await get('/healthz')).body)) as Health,
    close: () => c.close().catch(() => undefined),
  };
}
type Connection = ReturnType<typeof connection>;

/** Fresh connections, one at a time, until one reached each of the `n` processes (or `tries` ran out). */
async function perProcess(url: string, n = 2, tries = 8): Promise<Map<number, Connection>> {
  const seen = new Map<number, Connection>();
  for (let i = 0; i < tries && seen.size < n; i++) {
    const c = connection(url);
    const p = await c.process().then((h) => h.process, () => undefined);
    if (p === undefined || seen.has(p)) await c.close();
    else seen.set(p, c);
  }
  return seen;
}

/** Waits until both processes answer on fresh connections (a replacement becomes ready); bounded. */
async function bothAnswer(url: string, ms: number, what: string): Promise<Map<number, Connection>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = await perProcess(url);
    if (m.size === 2) return m;
    for (const c of m.values()) await c.close();
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what} (answering: ${[...m.keys()].join(', ') || 'none'})`);
    await new Promise((r) => setTimeout(r, 200)); // polling, not on a hot loop of connections while it starts
  }
}

describe('gm enclave --processes 2', () => {
  it('serves the same attested key configuration from both processes, and a worker registered once is routable from each', async () => {
    const model = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', 'multi', '--token-ms', '0']);
    const enclave = await start(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0', '--processes', '2']);
    // The primary hands connections to the ready processes in turn: two fresh connections reach both.
    const conns = await perProcess(enclave.url, 2, 2);
    expect([...conns.keys()].sort()).toEqual([1, 2]);
    const served = await Promise.all([...conns.values()].map((c) => c.get('/.well-known/ohttp-gateway')));
    expect(hex(served[0]!)).toBe(hex(served[1]!));
    const nonce = 'cd'.repeat(32);
    for (const c of conns.values()) {
      const b = decodeBundle(await c.get(`/v1/attestation?nonce=${nonce}`));
      expect(hex(b.keys.ohttp)).toBe(hex(served[0]!)); // each process attests the keys both serve
    }
    await start(['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0'], /registered with/);
    // The registration was answered only once both processes held the worker.
    for (const [p, c] of conns) {
      expect((await c.process()).workers, `process ${p}`).toBe(1);
      const client = await c.client();
      const r = await client.post('/v1/chat/completions', { model: 'multi', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
      expect(r.status, `process ${p}`).toBe(200);
      expect((JSON.parse(new TextDecoder().decode(r.content!)) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(devAnswer('multi', 5));
      await c.close();
    }
  }, 90_000);

  it('a connection handed to a process that died before taking it is served by the other; one it had taken fails at once', async () => {
    const enclave = await start(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0', '--processes', '2']);
    await handOffSurvivesAKill<Health>(enclave.url, enclave.child.pid!);
    // Replaced: the new process takes the victim's place (and number) once it is ready.
    const again = await bothAnswer(enclave.url, 60_000, 'the replacement process answers');
    for (const c of again.values()) await c.close();
  }, 120_000);

  it('a process killed with SIGKILL under load loses no receipt a client received, and is replaced', async () => {
    const ledger = join(dir, 'ledger.db');
    const model = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', 'paid', '--token-ms', '0']);
    const enclave = await start(['enclave', '--tee', 'sim', '--ledger', ledger, '--listen', '127.0.0.1:0', '--processes', '2']);
    await start(['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0'], /registered with/);
    const received: Uint8Array[] = [];
    const refused: number[] = [];
    const failedAfterDeath: unknown[] = [];
    let done = 0;
    let killed: Promise<void> | undefined;
    let victimDead = false;
    const victim = childrenOf(enclave.child.pid!)[0]!;
    const chat = async () => {
      const c = connection(enclave.url); // a fresh connection each time: the requests spread over both processes
      try {
        const client = await c.client();
        const r = await client.post('/v1/chat/completions', { model: 'paid', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
        if (r.status === 200) received.push(parseReceiptHeader(r.headers.get('gm-receipt')!).signed);
        else refused.push(r.status);
      } finally {
        await c.close();
      }
    };
    const one = async () => {
      const afterDeath = victimDead;
      try {
        await chat();
      } catch (e) {
        // A connection the victim had taken died with it: nothing was received. Once it is dead, nothing may fail.
        if (afterDeath) failedAfterDeath.push(e);
      } finally {
        if (++done === 12 && !killed) {
          process.kill(victim, 'SIGKILL');
          killed = untilDead(victim).then(() => {
            victimDead = true;
          });
        }
      }
    };
    let next = 0;
    await within(Promise.all(Array.from({ length: 4 }, async () => {
      while (next++ < 48) await one();
    })), 90_000, '48 requests, 4 at a time, each bounded');
    expect(killed).toBeDefined();
    await killed;
    expect(refused).toEqual([]); // a request either completed or died with its connection
    expect(failedAfterDeath).toEqual([]);
    expect(received.length).toBeGreaterThan(24);
    // The primary replaced the process; the replacement was ready only once it held the worker.
    const again = await bothAnswer(enclave.url, 60_000, 'the replacement process answers');
    for (const [p, c] of again) {
      expect((await c.process()).workers, `process ${p}`).toBe(1);
      await c.close();
    }
    for (let i = 0; i < 4; i++) await within(chat(), 20_000, 'a request after the replacement'); // both processes, in turn
    await enclave.stop();
    const db = new DatabaseSync(ledger, { readOnly: true });
    const stored = new Set((db.prepare('SELECT signed FROM receipts').all() as { signed: Uint8Array }[]).map((r) => hex(new Uint8Array(r.signed))));
    db.close();
    for (const s of received) expect(stored.has(hex(s))).toBe(true);
    expect(stored.size).toBeGreaterThanOrEqual(received.length);
  }, 180_000);
});
