/**
 * The routing bench's load generator, in its own process (forked with an IPC channel): plain HTTP to the dev-model
 * or a proxy chain through an undici Pool, or gm's client (attestation verified once, then one OHTTP encapsulation
 * per request, as every client does). It answers each `run` with throughput, latency percentiles and its own CPU.
 *
 * gm's client runs in two modes that send the same requests:
 * - `gm` (live): each request is sealed when it is sent, inside the timed run, as a real client does;
 * - `gm-pre` (pre-encapsulated): `prepare` seals the next run's requests before it starts, and the run only sends
 *   them and opens the answers. Each is still its own fresh encapsulation (a new HPKE context, never one sent twice)
 *   carrying its sealed request time (`gm-sent-at`, docs/protocol.md §13), sent within the gateway's window; every
 *   answer is still opened (authenticated) and must be a sealed 200. The client's X-Wing encapsulation, which costs
 *   about as much CPU as the enclave's own work per request, then no longer competes for the cores during the run.
 */
import { Pool } from 'undici';
import { encapsulateAhead } from '../../client/encap.ts';
import type { Transport } from '../../enclave/ohttp/client.ts';
import { bhttpRequest } from '../../enclave/ohttp/messages.ts';
import { setDefaultBackend } from '../../protocol/backend.ts';
import { decodeResponse, encodeRequest } from '../../protocol/bhttp.ts';
import { MEDIA_OHTTP_REQ, MEDIA_OHTTP_RES } from '../../protocol/media.ts';
import { encapsulateRequest } from '../../protocol/ohttp.ts';
import { nodeBackend } from '../../protocol/node/backend-node.ts';
import { formatRequestTime, REQUEST_TIME_FIELD } from '../../protocol/request-time.ts';
import { connect, type TestClient } from '../../test/stack/client.ts';
import { H1Connection } from '../../enclave/dispatch/h1-connection.ts';

setDefaultBackend(nodeBackend);

export type Variant = 'direct' | 'proxy' | 'chain' | 'gm' | 'gm-pre' | 'gm-raw';
export type LoadRequest =
  | { readonly op: 'setup'; readonly urls: Record<'direct' | 'proxy' | 'chain' | 'gm', string>; readonly model: string; readonly streamModel: string; readonly streamUrl: string }
  /**
   * Seals the next `gm-pre` or `gm-raw` run's requests: chat completions, or `GET /v1/models` (answered by the
   * enclave alone). `gm-raw` sends them on lean keep-alive connections (the enclave's own lane connection,
   * enclave/dispatch/h1-connection.ts) instead of undici's API.
   */
  | { readonly op: 'prepare'; readonly n: number; readonly request?: 'chat' | 'models' }
  | { readonly op: 'run'; readonly variant: Variant; readonly n: number; readonly c: number; readonly rps?: number }
  | { readonly op: 'stream'; readonly variant: 'direct' | 'gm'; readonly tokens: number }
  | { readonly op: 'exit' };
export interface RunResult {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuUs: number;
}

const PROMPT = 'x'.repeat(1024);
const OHTTP_HEADERS = { 'content-type': MEDIA_OHTTP_REQ } as const;
let pools: Partial<Record<Variant, Pool>> = {};
let gm: TestClient | undefined;
let gmPool: Pool | undefined;
let gmUrl = '';
/** The `gm-raw` connections, one per request in flight, opened on first use. */
const rawConns: H1Connection[] = [];
const RAW_TIMEOUTS = { connectMs: 5_000, firstByteMs: 60_000, idleMs: 60_000, keepAliveMs: 60_000 };

/** One sealed request on a lean connection, its answer read whole. */
function postWhole(c: H1Connection, body: Uint8Array): Promise<{ status: number; contentType: string; body: Uint8Array }> {
  return new Promise((resolve, reject) => {
    let status = 0;
    let contentType = '';
    const parts: Uint8Array[] = [];
    c.dispatch(
      { path: '/v1/ohttp', headers: ['content-type', MEDIA_OHTTP_REQ], body },
      {
        onResponseStart(_c, s, h) {
          status = s;
          contentType = String((h as Record<string, string>)['content-type'] ?? '').split(';')[0]!.trim();
        },
        onResponseData(_c, chunk) {
          parts.push(chunk);
        },
        onResponseEnd() {
          resolve({ status, contentType, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts) });
        },
        onResponseError(_c, e) {
          reject(e);
        },
      },
    );
  });
}
let streamPool: Pool | undefined;
let model = '';
let streamModel = '';
type Sealed = Awaited<ReturnType<typeof encapsulateRequest>>;
/** Requests sealed by `prepare` for the next `gm-pre` run, each sent once. */
let prepared: Sealed[] = [];

function poolTransport(pool: Pool): Transport {
  return async (body, contentType, signal) => {
    const r = await pool.request({ path: '/v1/ohttp', method: 'POST', headers: { 'content-type': contentType }, body, ...(signal ? { signal } : {}) });
    return {
      status: r.statusCode,
      contentType: String(r.headers['content-type'] ?? '').split(';')[0]!.trim(),
      body: (async function* () {
        for await (const c of r.body) yield new Uint8Array((c as Buffer).buffer, (c as Buffer).byteOffset, (c as Buffer).length);
      })(),
      cancel: () => void r.body.destroy(),
    };
  };
}

const chatBody = () => new TextEncoder().encode(JSON.stringify({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 16 }));

/**
 * One request sealed to the enclave's attested key configuration, with the time it was sealed. `ahead`: as gm's
 * client SDK seals (client/encap.ts): with the Encap it made while the previous answers were on their way.
 */
function seal(content: Uint8Array | undefined, ahead = false): Promise<Sealed> {
  const sentAt: [string, string] = [REQUEST_TIME_FIELD, formatRequestTime(Date.now())];
  const req = content ? bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json'], sentAt], content) : bhttpRequest('GET', '/v1/models', [sentAt], new Uint8Array(0));
  return ahead ? encapsulateAhead(gm!.config, encodeRequest(req)) : encapsulateRequest(gm!.config, encodeRequest(req));
}

/**
 * Sends one sealed request and opens its answer, which must be a sealed 200 with a body. The answer is read the way
 * the plain variants read theirs (the pool's body read whole), so the two compare on the same HTTP client work.
 */
async function exchange(x: Sealed): Promise<void> {
  const r = await gmPool!.request({ path: '/v1/ohttp', method: 'POST', headers: OHTTP_HEADERS, body: x.encapsulated });
  const body = new Uint8Array(await r.body.arrayBuffer());
  await openAnswer(x, r.statusCode, String(r.headers['content-type'] ?? '').split(';')[0]!.trim(), body);
}

/** Opens one sealed answer, which must be a sealed 200 with a body. */
async function openAnswer(x: Sealed, status: number, ct: string, body: Uint8Array): Promise<void> {
  if (status !== 200 || ct !== MEDIA_OHTTP_RES) throw new Error(`gm answered ${status} ${ct}`);
  const { response } = decodeResponse(await x.context.openResponse(body));
  if (response.status !== 200 || response.content.length === 0) throw new Error(`gm's sealed answer was ${response.status}`);
}

/** The requests a run sends: `lane` is the index of the loop sending it (one per request in flight). */
function one(variant: Variant): (lane: number) => Promise<void> {
  if (variant === 'gm-raw') {
    let i = 0;
    const batch = prepared;
    prepared = [];
    return async (lane) => {
      const x = batch[i];
      batch[i++] = undefined as unknown as Sealed; // sent once; dropped after
      if (!x) throw new Error('gm-raw: fewer requests prepared than run');
      const a = await postWhole(rawConns[lane]!, x.encapsulated);
      await openAnswer(x, a.status, a.contentType, a.body);
    };
  }
  if (variant === 'gm') {
    const content = chatBody();
    return async () => exchange(await seal(content, true));
  }
  if (variant === 'gm-pre') {
    let i = 0;
    const batch = prepared;
    prepared = [];
    return async () => {
      const x = batch[i];
      batch[i++] = undefined as unknown as Sealed; // sent once; dropped after
      if (!x) throw new Error('gm-pre: fewer requests prepared than run');
      await exchange(x);
    };
  }
  const body = chatBody();
  const pool = pools[variant]!;
  return async () => {
    const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    if (r.statusCode !== 200) throw new Error(`${variant} answered ${r.statusCode}`);
    await r.body.arrayBuffer();
  };
}

/**
 * `n` requests, at most `c` in flight; with `rps`, paced: request i starts no earlier than i / rps seconds after the
 * first (an open schedule under the same cap), so a variant can be loaded at another's measured rate.
 */
async function run(variant: Variant, n: number, c: number, rps?: number): Promise<RunResult> {
  // One connection per request in flight; one the server closed while idle reconnects on its next request.
  if (variant === 'gm-raw') for (let k = rawConns.length; k < c; k++) rawConns.push(new H1Connection(new URL(gmUrl), RAW_TIMEOUTS, () => undefined));
  const f = one(variant);
  const lat: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async (_, lane) => {
      while (next < n) {
        const i = next++;
        if (rps) {
          const wait = t0 + (i * 1000) / rps - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        const s = performance.now();
        await f(lane);
        lat.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]!;
  return { rps: n / secs, p50: pct(0.5), p99: pct(0.99), cpuUs: (cpu.user + cpu.system) / n };
}

async function stream(variant: 'direct' | 'gm', tokens: number): Promise<number> {
  const body = { model: streamModel, stream: true, messages: [{ role: 'user', content: 'hi' }], max_tokens: tokens };
  const s = performance.now();
  if (variant === 'gm') {
    const r = await gm!.post('/v1/chat/completions', body, { stream: true });
    await new Response(r.body).text();
  } else {
    const r = await streamPool!.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    await r.body.text();
  }
  return performance.now() - s;
}

process.on('message', (m: LoadRequest) => {
  const reply = (x: unknown) => process.send!(x);
  const fail = (e: unknown) => reply({ error: String((e as Error)?.stack ?? e) });
  if (m.op === 'setup') {
    model = m.model;
    streamModel = m.streamModel;
    pools = { direct: new Pool(m.urls.direct, { connections: 32 }), proxy: new Pool(m.urls.proxy, { connections: 32 }), chain: new Pool(m.urls.chain, { connections: 32 }) };
    streamPool = new Pool(m.streamUrl, { connections: 4 });
    gmPool = new Pool(m.urls.gm, { connections: 32 });
    gmUrl = m.urls.gm;
    connect(m.urls.gm, { transport: poolTransport(gmPool) }).then((c) => {
      gm = c;
      reply({ ok: true });
    }, fail);
  } else if (m.op === 'prepare') {
    const content = m.request === 'models' ? undefined : chatBody();
    (async () => {
      const xs: Sealed[] = [];
      for (let i = 0; i < m.n; i++) xs.push(await seal(content));
      prepared = xs;
    })().then(() => reply({ ok: true }), fail);
  } else if (m.op === 'run') run(m.variant, m.n, m.c, m.rps).then(reply, fail);
  else if (m.op === 'stream') stream(m.variant, m.tokens).then((ms) => reply({ ms }), fail);
  else process.exit(0);
});
