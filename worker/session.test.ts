/**
 * The enclave → worker session over real HTTP: the worker app on node:http (its lean request path), the enclave's
 * session dispatch through an undici pool. Wire tampering, truncation, replay, an unauthorized handshake, rekeying,
 * and a worker that forgot its sessions (restart) or came back with new keys.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isGmError } from '../attestation/errors.ts';
import { sessionDispatch } from '../enclave/dispatch/session.ts';
import { DEFAULT_TIMEOUTS, poolTransport, type PooledTransport } from '../enclave/dispatch/transport.ts';
import { memoryLogger } from '../enclave/log.ts';
import type { TransportResponse } from '../enclave/ohttp/client.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { type Served, serve } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import type { VerifiedWorker } from '../enclave/workers/registry.ts';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { chooseKeyConfig, decodeKeyConfigs } from '../protocol/ohttp.ts';
import { newCredential, sealCredential } from '../protocol/worker-auth.ts';
import { simVendors } from '../test/stack/harness.ts';
import { createWorkerApp, generateWorkerKeys, type WorkerApp, type WorkerKeys } from './app.ts';
import { simGpuSource } from './gpu.ts';

setDefaultBackend(nodeBackend);
const te = new TextEncoder();
const servers: Served[] = [];
const transports: PooledTransport[] = [];
afterEach(async () => {
  await Promise.all(transports.splice(0).map((t) => t.close()));
  await Promise.all(servers.splice(0).map((s) => s.close(0)));
});

const chat = (stream = false) => bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json']], te.encode(JSON.stringify({ model: 'm', stream })));

/** A worker behind one socket whose app can be swapped (a restart keeps the address, loses the sessions). */
async function stack(o: { sessionLifetimeMs?: number; now?: () => number } = {}) {
  const { amd, nvidia } = await simVendors();
  const forwarded: string[] = [];
  const credential = newCredential();
  const make = async (keys: WorkerKeys): Promise<WorkerApp> => {
    const w = createWorkerApp({
      keys, tee: simProvider({ amd }), gpu: simGpuSource({ signer: nvidia }), log: memoryLogger('worker').log, ...o,
      handler: async (req) => {
        const body = await req.text();
        forwarded.push(body);
        if (JSON.parse(body).stream) {
          const parts = ['data: a\n\n', 'data: b\n\n', 'data: [DONE]\n\n'];
          return new Response(new ReadableStream({ pull(c) { const p = parts.shift(); if (p) c.enqueue(te.encode(p)); else c.close(); } }), { headers: { 'content-type': 'text/event-stream' } });
        }
        return Response.json({ ok: true, echo: body.length });
      },
    });
    await w.acceptCredential('http://enclave.test', await sealCredential(chooseKeyConfig(decodeKeyConfigs(keys.keyConfigs)), keys.workerId, credential));
    return w;
  };
  const keys = await generateWorkerKeys();
  let app = await make(keys);
  const s = await serve({ fetch: (r, env) => app.app.fetch(r, env), direct: (req, res) => app.direct(req, res) });
  servers.push(s);
  const pooled = poolTransport(s.url, DEFAULT_TIMEOUTS, credential);
  transports.push(pooled);
  /** The wire between enclave and worker: `tamper` sees each answer's bytes of the request path. */
  let tamper: ((b: Uint8Array[]) => Uint8Array[]) | undefined;
  const sentMessages: Uint8Array[] = [];
  const transport: PooledTransport = {
    send: pooled.send,
    close: pooled.close,
    lane() {
      const l = pooled.lane!();
      return {
        key: l.key,
        get connection() {
          return l.connection;
        },
        release: l.release,
        async post(path, ct, body, signal, o) {
          if (path === '/v1/session/request') sentMessages.push(body.slice());
          const r = await l.post(path, ct, body, signal, o);
          if (!tamper || path !== '/v1/session/request' || r.status !== 200) return r;
          const parts: Uint8Array[] = [];
          for await (const c of r.body) parts.push(c.slice());
          const out = tamper(parts);
          return { ...r, body: { async *[Symbol.asyncIterator]() { yield* out; } } } satisfies TransportResponse;
        },
      };
    },
  };
  let current = keys;
  const worker = () => ({ id: current.workerId, keyConfig: chooseKeyConfig(decodeKeyConfigs(current.keyConfigs)), credential, transport }) as unknown as VerifiedWorker;
  return {
    forwarded, worker, sentMessages, url: s.url, credential,
    get app() {
      return app;
    },
    setTamper: (f: typeof tamper) => (tamper = f),
    restart: async (newKeys = false) => {
      if (newKeys) current = await generateWorkerKeys();
      app = await make(current);
    },
  };
}

const signal = () => new AbortController().signal;
const codeOf = (p: Promise<unknown>) => p.then(() => 'OK', (e: unknown) => (isGmError(e) ? ((e.cause as { code?: string } | undefined)?.code ?? e.code) : String(e)));
async function text(r: { body: ReadableStream<Uint8Array> }): Promise<string> {
  return new Response(r.body).text();
}

describe('enclave → worker session', () => {
  it('carries whole and streamed answers on one session; requests never go over OHTTP', async () => {
    const s = await stack();
    const d = sessionDispatch();
    const w = s.worker();
    const r = await d(w, chat(), { stream: false, signal: signal() });
    expect(r.status).toBe(200);
    expect(JSON.parse(new TextDecoder().decode(r.content!))).toEqual({ ok: true, echo: 28 });
    const st = await d(w, chat(true), { stream: true, signal: signal() });
    expect(st.headers.get('content-type')).toBe('text/event-stream');
    expect(await text(st)).toBe('data: a\n\ndata: b\n\ndata: [DONE]\n\n');
    expect(d.sessions(w)).toBe(1);
    expect(s.forwarded).toHaveLength(2);
    expect(await s.app.metrics.render()).toMatch(/^gm_worker_sessions 1$/m);
  });

  it('a flipped byte, a truncated answer, or a dropped record fails the request; nothing forged reaches the caller', async () => {
    const s = await stack();
    const d = sessionDispatch();
    const w = s.worker();
    s.setTamper((parts) => {
      const b = Buffer.concat(parts);
      b[b.length - 3]! ^= 1;
      return [b];
    });
    expect(await codeOf(d(w, chat(), { stream: false, signal: signal() }))).toBe('SESSION_DECRYPT_FAILED');
    s.setTamper((parts) => [Buffer.concat(parts).subarray(0, -1)]);
    expect(await codeOf(d(w, chat(), { stream: false, signal: signal() }))).toBe('SESSION_TRUNCATED');
    // A stream cut after its head and first event: the reader gets the event, then an error, never a clean end.
    s.setTamper((parts) => {
      const b = Buffer.concat(parts);
      const recs: Buffer[] = [];
      for (let o = 0; o < b.length; ) {
        const n = 5 + b.readUInt32BE(o + 1);
        recs.push(b.subarray(o, o + n));
        o += n;
      }
      expect(recs.length).toBeGreaterThanOrEqual(4);
      return recs.slice(0, 2);
    });
    const st = await d(w, chat(true), { stream: true, signal: signal() });
    expect(await codeOf(text(st))).toBe('SESSION_TRUNCATED');
    s.setTamper(undefined);
    expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
  });

  it('a request message replayed on its own connection is refused, and on another connection meets no session', async () => {
    const s = await stack();
    const d = sessionDispatch();
    const w = s.worker();
    await d(w, chat(), { stream: false, signal: signal() });
    const before = s.forwarded.length;
    // Another connection (a fresh one): no session there, whichever worker process would take it.
    const elsewhere = await fetch(`${s.url}/v1/session/request`, { method: 'POST', headers: { 'content-type': 'application/gm-session' }, body: s.sentMessages[0]! as Uint8Array<ArrayBuffer> });
    expect(elsewhere.status).toBe(400);
    expect(((await elsewhere.json()) as { code: string }).code).toBe('SESSION_UNKNOWN');
    // The connection the session is bound to (the transport's only one, idle again): the replay window refuses it.
    const lane = w.transport.lane!();
    const again = await lane.post('/v1/session/request', 'application/gm-session', s.sentMessages[0]!, undefined, { last: true });
    expect(again.status).toBe(400);
    let body = '';
    for await (const c of again.body) body += new TextDecoder().decode(c);
    expect((JSON.parse(body) as { code: string }).code).toBe('SESSION_DECRYPT_FAILED');
    expect(s.forwarded.length).toBe(before);
    // The session itself still serves its connection.
    expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
    expect(d.sessions(w)).toBe(1);
  });

  it('the request path takes only application/gm-session (any case, parameters ignored) and reads nothing else', async () => {
    const s = await stack();
    const post = async (type: string) => {
      const r = await fetch(`${s.url}/v1/session/request`, { method: 'POST', headers: { 'content-type': type }, body: new Uint8Array(64) });
      return [r.status, ((await r.json()) as { code: string }).code];
    };
    expect(await post('application/json')).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    // The answer's head on this path is only what the enclave reads or HTTP/1.1 framing needs (no Date).
    const head = await fetch(`${s.url}/v1/session/request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: new Uint8Array(64) });
    await head.arrayBuffer();
    expect([...head.headers.keys()].sort()).toEqual(['connection', 'content-type', 'gm-tee', 'keep-alive', 'transfer-encoding']);
    expect(await post('application/gm-session-init')).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    // The media type passes; the body names no session (all zero bytes: not even a session message).
    expect(await post('Application/GM-Session; x=1')).toEqual([400, 'SESSION_DECRYPT_FAILED']);
    expect(s.forwarded).toEqual([]);
  });

  it('concurrent requests spread over several connections, one session each, and none is refused as unknown', async () => {
    const s = await stack();
    const d = sessionDispatch();
    const w = s.worker();
    const round = () => Promise.all(Array.from({ length: 8 }, () => d(w, chat(), { stream: false, signal: signal() }).then((r) => r.status)));
    expect(await round()).toEqual(Array(8).fill(200));
    // One handshake per connection the requests took (a SESSION_UNKNOWN retry would have made more).
    expect(d.sessions(w)).toBe(8);
    expect(await s.app.metrics.render()).toMatch(/^gm_worker_sessions 8$/m);
    // The connections stay open with their sessions: the next round makes none.
    expect(await round()).toEqual(Array(8).fill(200));
    expect(d.sessions(w)).toBe(8);
    expect(s.forwarded).toHaveLength(16);
  });

  it('a handshake without the credential MAC is refused, and one with a MAC over other bytes too', async () => {
    const s = await stack();
    const post = (headers: Record<string, string>) => fetch(`${s.url}/v1/session`, { method: 'POST', headers: { 'content-type': 'application/gm-session-init', ...headers }, body: new Uint8Array(1127) });
    expect(((await (await post({})).json()) as { code: string }).code).toBe('WORKER_AUTH_REQUIRED');
    expect(((await (await post({ 'gm-worker-auth': `v1 ${'0'.repeat(16)} ${'0'.repeat(64)}` })).json()) as { code: string }).code).toBe('WORKER_AUTH_FAILED');
    expect(s.forwarded).toEqual([]);
  });

  it('rekeys after N requests and after M minutes: a new handshake, and the requests keep working', async () => {
    let t = 1_000_000;
    const s = await stack();
    const d = sessionDispatch({ rekeyRequests: 3, rekeyMs: 60_000, now: () => t });
    const w = s.worker();
    for (let i = 0; i < 7; i++) expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
    expect(d.sessions(w)).toBe(3); // 3 + 3 + 1
    t += 60_000;
    expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
    expect(d.sessions(w)).toBe(4);
  });

  it('a session past its lifetime is unknown to the worker: nothing is forwarded under it, and the enclave makes a new one', async () => {
    let t = 5_000_000;
    const s = await stack({ sessionLifetimeMs: 60_000, now: () => t });
    const d = sessionDispatch();
    const w = s.worker();
    expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
    t += 59_000;
    expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
    expect(d.sessions(w)).toBe(1);
    t += 1_000; // expired: refused as unknown, then served once on a new session
    expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
    expect(d.sessions(w)).toBe(2);
    expect(s.forwarded).toHaveLength(3);
    expect(await s.app.metrics.render()).toMatch(/^gm_errors_total\{code="SESSION_UNKNOWN"\} 1$/m);
  });

  it('a restarted worker refuses the old session; the enclave makes a new one and the request goes through once', async () => {
    const s = await stack();
    const d = sessionDispatch();
    const w = s.worker();
    expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
    await s.restart();
    expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
    expect(d.sessions(w)).toBe(2);
    expect(s.forwarded).toHaveLength(2);
  });

  it('a worker back with new keys refuses the handshake to the old configuration: the request fails closed', async () => {
    const s = await stack();
    const d = sessionDispatch();
    const w = s.worker();
    expect((await d(w, chat(), { stream: false, signal: signal() })).status).toBe(200);
    await s.restart(true);
    // The registry still holds the old configuration (until the worker re-registers): no session, no plaintext sent.
    const code = await codeOf(d(w, chat(), { stream: false, signal: signal() }));
    expect(code).toMatch(/^(WORKER_AUTH_FAILED|OHTTP_UNKNOWN_KEY_ID|SESSION_CONFIRM_FAILED)$/);
    expect(s.forwarded).toHaveLength(1);
    // Re-registered: the registry's new view of the worker gets a session again.
    expect((await d(s.worker(), chat(), { stream: false, signal: signal() })).status).toBe(200);
  });
});
