/**
 * `gm worker --processes 2` as an operator runs it (sim), behind an enclave: both processes serve and attest one
 * identity (one worker id, key configuration and signing key); an enclave's requests, spread over several
 * connections that the primary hands to both processes, all succeed on sessions bound to their connections, none
 * refused as unknown; the per-request OHTTP hop is refused (its replay window would be per process); and a process
 * killed with SIGKILL under load loses no receipt a client received, charges nothing twice, and the enclave goes on
 * with new sessions while the primary replaces the process. A connection the primary handed to a process that died
 * before taking it is served by the other process (and while a process does not take what it was handed, new
 * connections go to the other), while one the dead process had taken closes at once (enclave/handoff.ts).
 * Each request that must reach a given process goes over its own connection; /healthz says which process answered.
 * Every wait of the hand-off test is bounded and says what it waited for.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeBundle } from '../attestation/bundle.ts';
import { hex } from '../attestation/bytes.ts';
import { parseReceiptHeader } from '../protocol/receipt.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { connect } from './stack/client.ts';
import { childrenOf, handOffSurvivesAKill, metric, perProcess } from './stack/process-probes.ts';
import { type GmProcess, gmProcess } from './stack/processes.ts';

const running: GmProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'gm-worker-processes-'));
afterAll(async () => {
  for (const p of running.reverse()) await p.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function start(args: string[], ready?: RegExp): Promise<GmProcess> {
  const p = await gmProcess(args, ready, 'ignore');
  running.push(p);
  return p;
}

type Health = { process: number; workerId: string };

const chat = { messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 };

describe('gm worker --processes 2', () => {
  it('serves one attested identity from both processes, and an enclave reaches both over session-bound connections', async () => {
    const model = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', 'wmulti', '--token-ms', '0']);
    const enclave = await start(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0', '--processes', '1']);
    const worker = await start(['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0', '--processes', '2'], /registered with/);
    const conns = await perProcess(worker.url);
    const ids = await Promise.all([...conns.values()].map(async (c) => (await c.health()).workerId));
    expect(ids[0]).toMatch(/^w-[0-9a-f]{16}$/);
    expect(ids[1]).toBe(ids[0]);
    const keys = await Promise.all([...conns.values()].map((c) => c.request('GET', '/.well-known/ohttp-gateway')));
    expect(hex(keys[1]!.bytes)).toBe(hex(keys[0]!.bytes));
    const nonce = 'ab'.repeat(32);
    const bundles = await Promise.all([...conns.values()].map(async (c) => decodeBundle((await c.request('GET', `/v1/attestation?nonce=${nonce}`)).bytes)));
    for (const b of bundles) {
      expect(hex(b.keys.ohttp)).toBe(hex(keys[0]!.bytes)); // each process attests the keys both serve
      expect(hex(b.nonce)).toBe(nonce);
    }
    expect(hex(bundles[1]!.keys.signing!)).toBe(hex(bundles[0]!.keys.signing!));
    expect(hex(bundles[1]!.models!)).toBe(hex(bundles[0]!.models!)); // the same model manifest, pushed by the primary
    // The per-request OHTTP hop is not served by several processes.
    for (const c of conns.values()) {
      const r = await c.request('POST', '/v1/ohttp', new Uint8Array(64), 'message/ohttp-req');
      expect(r.status).toBe(400);
      expect(new TextDecoder().decode(r.bytes)).toContain('OHTTP_HOP_UNAVAILABLE');
    }

    // Eight at a time: the enclave's lanes open several connections, which the primary hands to both processes.
    const client = await connect(enclave.url);
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(Array.from({ length: 8 }, async () => {
        const r = await client.post('/v1/chat/completions', { model: 'wmulti', ...chat });
        expect(r.status).toBe(200);
        return (JSON.parse(new TextDecoder().decode(r.content!)) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
      }));
      expect(answers).toEqual(Array(8).fill(devAnswer('wmulti', 5)));
    }
    let served = 0;
    for (const [p, c] of conns) {
      const m = await c.text('/metrics');
      const ok = metric(m, 'gm_worker_requests_total', 'outcome="ok"');
      expect(ok, `process ${p} served requests`).toBeGreaterThan(0);
      served += ok;
      expect(m, `process ${p}`).not.toContain('SESSION_UNKNOWN');
      await c.close();
    }
    expect(served).toBe(24);
  }, 120_000);

  it('a process killed with SIGKILL under load: no receipt a client received is lost, none is charged twice, and the enclave goes on', async () => {
    const ledger = join(dir, 'ledger.db');
    const model = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', 'wpaid', '--token-ms', '0']);
    const enclave = await start(['enclave', '--tee', 'sim', '--ledger', ledger, '--listen', '127.0.0.1:0', '--processes', '1']);
    const worker = await start(['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0', '--processes', '2'], /registered with/);
    const victim = childrenOf(worker.child.pid!)[0]!;
    const client = await connect(enclave.url);
    const received: string[] = [];
    const failed: number[] = [];
    let done = 0;
    let killed = false;
    const one = async () => {
      const r = await client.post('/v1/chat/completions', { model: 'wpaid', ...chat });
      if (r.status === 200) received.push(hex(parseReceiptHeader(r.headers.get('gm-receipt')!).signed));
      else failed.push(r.status);
      if (++done === 16 && !killed) {
        killed = true;
        process.kill(victim, 'SIGKILL');
      }
    };
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next++ < 64) await one();
    }));
    expect(killed).toBe(true);
    // At most the exchanges in flight on the killed process's connections failed (one per client loop), as errors.
    expect(failed.length).toBeLessThanOrEqual(4);
    for (const s of failed) expect(s).toBeGreaterThanOrEqual(500);
    expect(received.length).toBe(64 - failed.length);
    // The primary replaced the process; the enclave's next requests all succeed on new sessions.
    const again = async () => {
      const m = await perProcess(worker.url).catch(() => new Map());
      for (const c of m.values()) await c.close();
      return m.size;
    };
    await expect.poll(again, { timeout: 60_000, interval: 500 }).toBe(2);
    for (let i = 0; i < 8; i++) {
      const r = await client.post('/v1/chat/completions', { model: 'wpaid', ...chat });
      expect(r.status).toBe(200);
      received.push(hex(parseReceiptHeader(r.headers.get('gm-receipt')!).signed));
    }
    await enclave.stop();
    const db = new DatabaseSync(ledger, { readOnly: true });
    const stored = (db.prepare('SELECT signed FROM receipts').all() as { signed: Uint8Array }[]).map((r) => hex(new Uint8Array(r.signed)));
    db.close();
    // Every answer a client received has its receipt, and there is no receipt for anything else (no double charge).
    expect(new Set(received).size).toBe(received.length);
    expect(stored.sort()).toEqual([...received].sort());
  }, 180_000);

  it('a connection handed to a process that died before taking it is served by the other; one it had taken closes at once', async () => {
    // No enclave: its registration and health probes would open connections of their own, and this test counts on
    // the primary handing the test's connections alone, in turn (the worker's registration is refused, and retried).
    const model = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', 'whand', '--token-ms', '0']);
    const worker = await start(['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', model.url, '--listen', '127.0.0.1:0', '--processes', '2']);
    const { owners } = await handOffSurvivesAKill<Health>(worker.url, worker.child.pid!);
    expect(owners[1]!.workerId).toBe(owners[0]!.workerId);
    // Replaced: the new process takes the victim's place (and number) once it serves.
    const again = async () => {
      const m = await perProcess(worker.url).catch(() => new Map());
      for (const c of m.values()) await c.close();
      return m.size;
    };
    await expect.poll(again, { timeout: 60_000, interval: 500 }).toBe(2);
  }, 120_000);
});
