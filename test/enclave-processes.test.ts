/**
 * `gm enclave --processes 2` as an operator runs it (sim): both processes serve and attest the same key
 * configuration; a worker registered once (with whichever process took the connection) is routable from each; and a
 * process killed with SIGKILL under load loses no receipt a client received, while the primary replaces it.
 * Each request that must reach a given process goes over its own connection (the primary hands connections to the
 * processes in turn); /healthz says which process answered.
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
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

/** One connection: every request on it reaches the same process. */
function connection(url: string) {
  // Bounded: a connection the primary handed to the process just killed gets no answer.
  const c = new Client(url, { headersTimeout: 5_000, bodyTimeout: 5_000 });
  const get = async (path: string) => {
    const r = await c.request({ path, method: 'GET' });
    return new Uint8Array(await r.body.arrayBuffer());
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
  return { get, transport, process: async () => (JSON.parse(new TextDecoder().decode(await get('/healthz'))) as { process: number; workers: number }), close: () => c.close() };
}

/** Fresh connections until one reached each of the `n` processes. */
async function perProcess(url: string, n = 2): Promise<Map<number, ReturnType<typeof connection>>> {
  const seen = new Map<number, ReturnType<typeof connection>>();
  for (let i = 0; i < 50 && seen.size < n; i++) {
    const c = connection(url);
    const p = await c.process().then((h) => h.process, () => undefined);
    if (p === undefined || seen.has(p)) await c.close().catch(() => undefined);
    else seen.set(p, c);
  }
  expect([...seen.keys()].sort()).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  return seen;
}

const childrenOf = (pid: number) => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

describe('gm enclave --processes 2', () => {
  it('serves the same attested key configuration from both processes, and a worker registered once is routable from each', async () => {
    const model = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', 'multi', '--token-ms', '0']);
    const enclave = await start(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0', '--processes', '2']);
    const conns = await perProcess(enclave.url);
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
      const client = await connect(enclave.url, { transport: c.transport });
      const r = await client.post('/v1/chat/completions', { model: 'multi', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
      expect(r.status, `process ${p}`).toBe(200);
      expect((JSON.parse(new TextDecoder().decode(r.content!)) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(devAnswer('multi', 5));
      await c.close();
    }
  }, 90_000);

  it('a process killed with SIGKILL under load loses no receipt a client received, and is replaced', async () => {
    const ledger = join(dir, 'ledger.db');
    const model = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', 'paid', '--token-ms', '0']);
    const enclave = await start(['enclave', '--tee', 'sim', '--ledger', ledger, '--listen', '127.0.0.1:0', '--processes', '2']);
    await start(['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0'], /registered with/);
    const received: Uint8Array[] = [];
    const refused: number[] = [];
    let done = 0;
    let killed = false;
    const victim = childrenOf(enclave.child.pid!)[0]!;
    const one = async () => {
      const c = connection(enclave.url); // a fresh connection each time: the requests spread over both processes
      try {
        const client = await connect(enclave.url, { transport: c.transport });
        const r = await client.post('/v1/chat/completions', { model: 'paid', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
        if (r.status === 200) received.push(parseReceiptHeader(r.headers.get('gm-receipt')!).signed);
        else refused.push(r.status);
      } catch {
        // the connection died with the process: nothing was received
      } finally {
        await c.close().catch(() => undefined);
        if (++done === 12 && !killed) {
          killed = true;
          process.kill(victim, 'SIGKILL');
        }
      }
    };
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next++ < 48) await one();
    }));
    expect(killed).toBe(true);
    expect(refused).toEqual([]); // a request either completed or died with its connection
    expect(received.length).toBeGreaterThan(24);
    // The primary replaced the process: both answer again.
    const again = async () => {
      const m = await perProcess(enclave.url).catch(() => new Map());
      for (const c of m.values()) await c.close();
      return m.size;
    };
    await expect.poll(again, { timeout: 30_000, interval: 500 }).toBe(2);
    await enclave.stop();
    const db = new DatabaseSync(ledger, { readOnly: true });
    const stored = new Set((db.prepare('SELECT signed FROM receipts').all() as { signed: Uint8Array }[]).map((r) => hex(new Uint8Array(r.signed))));
    db.close();
    for (const s of received) expect(stored.has(hex(s))).toBe(true);
    expect(stored.size).toBeGreaterThanOrEqual(received.length);
  }, 120_000);
});
