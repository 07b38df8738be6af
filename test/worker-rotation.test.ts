/**
 * Key rotation across `gm worker --processes 2` (sim), rotating every minute (`--key-rotation-seconds 60`, the
 * least): the primary makes the next gateway keys, every process takes them before the primary registers them, and
 * the previous keys stay accepted until the next rotation (docs/protocol.md §5.2, §14.4).
 *
 * The worker registers with two enclaves: a `gm enclave` process, whose traffic the worker's processes serve before and
 * after each rotation, and one run in this test's process, whose registry says what key configuration it attested at
 * each registration and holds the credential it issued. With that credential the test makes sessions by hand
 * (protocol/session.ts, as the enclave's dispatch does) on connections it chose, one to each process, to keys it
 * chose: old, current and retired.
 *
 * Each rotation is seen when the in-process enclave accepted the re-registration with new keys; by then every process
 * must serve and attest them (the push is acknowledged before the registration). Every wait is bounded and says what
 * it waited for.
 */
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeBundle } from '../attestation/bundle.ts';
import { hex } from '../attestation/bytes.ts';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { memoryLogger } from '../enclave/log.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { type Served, serve } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import type { VerifiedWorker } from '../enclave/workers/registry.ts';
import { setDefaultBackend } from '../protocol/backend.ts';
import { decodeResponse, encodeRequest } from '../protocol/bhttp.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import type { KeyConfig } from '../protocol/ohttp.ts';
import { initiateSession } from '../protocol/session.ts';
import { authorizationFor, credentialId, WORKER_AUTH_HEADER } from '../protocol/worker-auth.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { MEDIA_SESSION, MEDIA_SESSION_INIT, SESSION_PATH, SESSION_REQUEST_PATH } from '../worker/session-gateway.ts';
import { connect } from './stack/client.ts';
import { simVendors, simWorkerPolicy } from './stack/harness.ts';
import { connection, metric, perProcess, within } from './stack/process-probes.ts';
import { type GmProcess, gmProcess } from './stack/processes.ts';

setDefaultBackend(nodeBackend);
const running: GmProcess[] = [];
let inProcess: { enclave: Enclave; server: Served } | undefined;
afterAll(async () => {
  for (const p of running.reverse()) await p.stop();
  await inProcess?.enclave.close();
  await inProcess?.server.close(100);
});

async function start(args: string[], ready?: RegExp): Promise<GmProcess> {
  const p = await gmProcess(args, ready, 'ignore');
  running.push(p);
  return p;
}

const MODEL = 'wrot';
const te = new TextEncoder();
const td = new TextDecoder();
const chat = { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 };

/** What one hand-made session request got: the inner answer's status and text, or the worker's refusal code. */
type Outcome = { readonly status: number; readonly code?: string; readonly answer?: string };

/**
 * A session made by hand on a fresh connection to process `want` of the worker at `url`, to the key configuration
 * `config`, under the enclave's `credential` for worker `workerId`. Resolves with the refusal when the worker
 * refuses the handshake.
 */
async function handSession(url: string, want: number, config: KeyConfig, credential: Uint8Array, workerId: string) {
  let c: ReturnType<typeof connection> | undefined;
  for (let i = 0; i < 50 && !c; i++) {
    const x = connection(url);
    if ((await x.health()).process === want) c = x;
    else await x.close();
  }
  if (!c) throw new Error(`no connection reached process ${want} in 50 tries`);
  const conn = c;
  const kid = await credentialId(credential);
  const h = await initiateSession(config, workerId, credential, { kid });
  const r = await conn.request('POST', SESSION_PATH, h.init, MEDIA_SESSION_INIT, { [WORKER_AUTH_HEADER]: await authorizationFor(credential, MEDIA_SESSION_INIT, h.init) });
  if (r.status !== 200) {
    await conn.close();
    return { refused: { status: r.status, code: (JSON.parse(td.decode(r.bytes)) as { code: string }).code } } as const;
  }
  const s = await h.finish(r.bytes);
  return {
    keyId: config.keyId,
    /** One chat completion on this session; its answer opened and checked by the session's keys. */
    async ask(): Promise<Outcome> {
      const sealed = await s.seal(encodeRequest(bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json']], te.encode(JSON.stringify(chat)))), false);
      const a = await conn.request('POST', SESSION_REQUEST_PATH, sealed.message, MEDIA_SESSION);
      if (a.status !== 200) return { status: a.status, code: (JSON.parse(td.decode(a.bytes)) as { code: string }).code };
      const records = await sealed.response.push(a.bytes);
      sealed.response.end();
      const inner = decodeResponse(records[0]!).response;
      return { status: inner.status, answer: (JSON.parse(td.decode(inner.content)) as { choices: { message: { content: string } }[] }).choices[0]!.message.content };
    },
    /** Keeps the connection (and so the session) from closing idle: the worker closes one idle for 65 s. */
    touch: async () => void (await conn.health()),
    /** Still on the connection it was made on (so still in the process it was made in). */
    connected: () => conn.dropped() === 0,
    close: () => conn.close(),
  };
}
type HandSession = Exclude<Awaited<ReturnType<typeof handSession>>, { refused: unknown }>;

/** A session to each process, or the test fails saying which refused and why. */
async function sessionsToEach(url: string, config: KeyConfig, w: VerifiedWorker): Promise<HandSession[]> {
  const out: HandSession[] = [];
  for (const p of [1, 2]) {
    const s = await handSession(url, p, config, w.credential, w.id);
    expect('refused' in s ? s.refused : 'made', `process ${p}: a session to key ${config.keyId}`).toBe('made');
    out.push(s as HandSession);
  }
  return out;
}

const served: Outcome = { status: 200, answer: devAnswer(MODEL, 5) };
/** A key configuration list named by its key ids and a digest of its bytes (a failure then prints a short line). */
const named = (b: Uint8Array) => `ids ${[b[2], b[2 + ((b[0]! << 8) | b[1]!) + 2]].join(',')} sha256 ${createHash('sha256').update(b).digest('hex').slice(0, 16)}`;

describe('gm worker --processes 2: key rotation', () => {
  it('reaches every process: each serves and attests the new keys, sessions on the old ones serve until the next rotation, then are refused', async () => {
    const model = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', MODEL, '--token-ms', '0']);
    const enclave = await start(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0', '--processes', '1']);
    const { amd } = await simVendors();
    const own = await createEnclave({ tee: simProvider({ amd }), log: memoryLogger('enclave').log, workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 10 * 60_000 } });
    inProcess = { enclave: own, server: await serve({ fetch: own.app.fetch, direct: own.direct }) };
    const worker = await start(
      ['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--enclave', inProcess.server.url, '--listen', '127.0.0.1:0', '--processes', '2', '--key-rotation-seconds', '60'],
      /registered with 2 enclave/,
    );
    const client = await connect(enclave.url);
    /** Eight requests at once through the `gm enclave` process: its lanes reach both processes. */
    const throughEnclave = async () => {
      const answers = await Promise.all(Array.from({ length: 8 }, async () => {
        const r = await client.post('/v1/chat/completions', chat);
        expect(r.status).toBe(200);
        return (JSON.parse(td.decode(r.content!)) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
      }));
      expect(answers).toEqual(Array(8).fill(devAnswer(MODEL, 5)));
    };
    /** Requests each process served so far, by process. */
    const servedCounts = async () => {
      const conns = await perProcess(worker.url);
      const counts = new Map<number, number>();
      for (const [p, c] of conns) {
        const m = await c.text('/metrics');
        expect(m, `process ${p}`).not.toContain('SESSION_UNKNOWN');
        counts.set(p, metric(m, 'gm_worker_requests_total', 'outcome="ok"'));
        await c.close();
      }
      return counts;
    };
    /** The keys each process serves, and checks that each attests them (a fresh nonce) and both serve the same. */
    const servedKeys = async (): Promise<string> => {
      const conns = await perProcess(worker.url);
      const keys: string[] = [];
      const nonce = hex(crypto.getRandomValues(new Uint8Array(32)));
      for (const [p, c] of [...conns].sort(([a], [b]) => a - b)) {
        const k = named((await c.request('GET', '/.well-known/ohttp-gateway')).bytes);
        const b = decodeBundle((await c.request('GET', `/v1/attestation?nonce=${nonce}`)).bytes);
        expect(named(b.keys.ohttp), `process ${p} attests the keys it serves`).toBe(k);
        keys.push(k);
        await c.close();
      }
      expect(keys[1], 'both processes serve the same keys').toBe(keys[0]);
      return keys[0]!;
    };
    /** The worker as the in-process enclave verified it last. */
    const registered = () => {
      const w = own.registry.list()[0];
      if (!w) throw new Error('the in-process enclave holds no worker');
      return w;
    };
    let kept: HandSession[] = [];
    /** Waits (bounded) until the in-process enclave registered keys other than `before`; keeps `kept` alive meanwhile. */
    const nextRotation = async (before: string, what: string): Promise<VerifiedWorker> => {
      const deadline = Date.now() + 90_000;
      let touched = Date.now();
      while (named(registered().keyConfigs) === before) {
        if (Date.now() > deadline) {
          // Say which process serves what: a process left on the keys before refuses the enclave's challenge.
          const on = await Promise.all([...(await perProcess(worker.url))].map(async ([p, c]) => {
            const k = named((await c.request('GET', '/.well-known/ohttp-gateway')).bytes);
            await c.close();
            return `process ${p}: ${k === before ? 'the keys before' : 'new keys'}`;
          }));
          throw new Error(`not within 90 s: ${what} (${on.sort().join(', ')})`);
        }
        if (Date.now() - touched > 10_000) {
          await Promise.all(kept.map((s) => s.touch()));
          touched = Date.now();
        }
        await new Promise((r) => setTimeout(r, 250)); // polling the enclave's registry
      }
      return registered();
    };

    // Before any rotation: both processes serve the registered keys (K0), requests reach both, and a session to K0
    // is made on a connection to each process.
    const w0 = registered();
    const k0 = named(w0.keyConfigs);
    expect(await servedKeys()).toBe(k0);
    const before = await servedCounts();
    await throughEnclave();
    await throughEnclave();
    const counts0 = await servedCounts();
    for (const p of [1, 2]) expect(counts0.get(p)!, `process ${p} served the enclave before the rotation`).toBeGreaterThan(before.get(p)!);
    const old = await sessionsToEach(worker.url, w0.keyConfig, w0);
    for (const s of old) expect(await s.ask()).toEqual(served);
    kept = old;
    expect(named(registered().keyConfigs), 'no rotation yet (the setup took under a minute)').toBe(k0);

    // The first rotation: the enclave registered K1, which every process already serves and attests.
    const w1 = await nextRotation(k0, 'the first rotation registered with the in-process enclave');
    const k1 = named(w1.keyConfigs);
    expect(await servedKeys(), 'every process serves the keys the enclave registered').toBe(k1);
    expect(w1.keyConfig.keyId).not.toBe(w0.keyConfig.keyId);
    expect(w1.id).toBe(w0.id);
    // Sessions made before it, on K0, still serve on their connections; new ones to K1 are made on fresh connections
    // to each process and serve; K0 is still accepted for new sessions too.
    for (const s of old) expect(await s.ask(), `a K0 session after the first rotation (process ${old.indexOf(s) + 1})`).toEqual(served);
    const current = await sessionsToEach(worker.url, w1.keyConfig, w1);
    for (const s of current) expect(await s.ask()).toEqual(served);
    const late = await sessionsToEach(worker.url, w0.keyConfig, w1);
    for (const s of late) {
      expect(await s.ask()).toEqual(served);
      await s.close();
    }
    // The enclave process goes on being served by both processes (on K1 once its re-registration came, which the
    // worker made at the same time; on K0, still accepted, until then).
    const counts1 = await servedCounts();
    await within(throughEnclave(), 30_000, 'the enclave process is served after the first rotation');
    await throughEnclave();
    const counts2 = await servedCounts();
    for (const p of [1, 2]) expect(counts2.get(p)!, `process ${p} served the enclave after the first rotation`).toBeGreaterThan(counts1.get(p)!);
    kept = [...old, ...current];

    // The second rotation: K2 registered and served everywhere; K0 retired: its sessions are gone (SESSION_UNKNOWN)
    // and a new session to it is refused (OHTTP_UNKNOWN_KEY_ID, docs/protocol.md §14.1, §14.3); K1 still serves.
    const w2 = await nextRotation(k1, 'the second rotation registered with the in-process enclave');
    const k2 = named(w2.keyConfigs);
    expect(await servedKeys(), 'every process serves the keys the enclave registered').toBe(k2);
    expect([w0.keyConfig.keyId, w1.keyConfig.keyId]).not.toContain(w2.keyConfig.keyId);
    for (const s of old) {
      expect(s.connected(), 'the K0 session is still on its connection').toBe(true);
      expect(await s.ask(), `a K0 session after the second rotation (process ${old.indexOf(s) + 1})`).toEqual({ status: 400, code: 'SESSION_UNKNOWN' });
    }
    for (const p of [1, 2]) {
      const s = await handSession(worker.url, p, w0.keyConfig, w2.credential, w2.id);
      expect('refused' in s ? s.refused : 'made', `process ${p}: a new session to the retired K0`).toEqual({ status: 400, code: 'OHTTP_UNKNOWN_KEY_ID' });
    }
    for (const s of current) expect(await s.ask(), `a K1 session after the second rotation (process ${current.indexOf(s) + 1})`).toEqual(served);
    const newest = await sessionsToEach(worker.url, w2.keyConfig, w2);
    for (const s of newest) expect(await s.ask()).toEqual(served);
    await within(throughEnclave(), 30_000, 'the enclave process is served after the second rotation');
    for (const s of [...old, ...current, ...newest]) await s.close();
    kept = [];
  }, 240_000);
});
