/**
 * The routing bench's load generator, in its own process (forked with an IPC channel): plain HTTP to the dev-model
 * or a proxy chain through an undici Pool, or gm's client (attestation verified once, then one OHTTP encapsulation
 * per request, as every client does). It answers each `run` with throughput, latency percentiles and its own CPU.
 */
import { Pool } from 'undici';
import type { Transport } from '../../enclave/ohttp/client.ts';
import { setDefaultBackend } from '../../protocol/backend.ts';
import { nodeBackend } from '../../protocol/node/backend-node.ts';
import { connect, type TestClient } from '../../test/stack/client.ts';

setDefaultBackend(nodeBackend);

export type Variant = 'direct' | 'proxy' | 'chain' | 'gm';
export type LoadRequest =
  | { readonly op: 'setup'; readonly urls: Record<Variant, string>; readonly model: string; readonly streamModel: string; readonly streamUrl: string }
  | { readonly op: 'run'; readonly variant: Variant; readonly n: number; readonly c: number }
  | { readonly op: 'stream'; readonly variant: 'direct' | 'gm'; readonly tokens: number }
  | { readonly op: 'exit' };
export interface RunResult {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuUs: number;
}

const PROMPT = 'x'.repeat(1024);
let pools: Partial<Record<Variant, Pool>> = {};
let gm: TestClient | undefined;
let gmPool: Pool | undefined;
let streamPool: Pool | undefined;
let model = '';
let streamModel = '';

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

function one(variant: Variant): () => Promise<void> {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 16 });
  if (variant === 'gm') {
    const parsed = JSON.parse(body) as unknown;
    return async () => {
      const r = await gm!.post('/v1/chat/completions', parsed);
      if (r.status !== 200) throw new Error(`gm answered ${r.status}`);
      void (r.content ?? (await new Response(r.body).arrayBuffer()));
    };
  }
  const pool = pools[variant]!;
  return async () => {
    const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    if (r.statusCode !== 200) throw new Error(`${variant} answered ${r.statusCode}`);
    await r.body.arrayBuffer();
  };
}

async function run(variant: Variant, n: number, c: number): Promise<RunResult> {
  const f = one(variant);
  const lat: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < n) {
        next++;
        const s = performance.now();
        await f();
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
    connect(m.urls.gm, { transport: poolTransport(gmPool) }).then((c) => {
      gm = c;
      reply({ ok: true });
    }, fail);
  } else if (m.op === 'run') run(m.variant, m.n, m.c).then(reply, fail);
  else if (m.op === 'stream') stream(m.variant, m.tokens).then((ms) => reply({ ms }), fail);
  else process.exit(0);
});
