import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { rejected } from '../attestation/errors.ts';
import { hostApp } from '../host/app.ts';
import { EnclaveGate } from '../host/gate.ts';
import { listen } from '../host/serve.ts';

const REPORT = { subject: 'evidence bundle (sim-sev-snp)', verified: true, checks: [{ id: 'bundle.cpu', status: 'pass' as const, what: 'cpu evidence' }] };
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** A stand-in enclave: records the headers it receives and answers on the relayed paths. */
async function fakeEnclave() {
  const seen: { path: string; headers: Record<string, string> }[] = [];
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  let firstRequestChunk: () => void = () => {};
  const gotFirstRequestChunk = new Promise<void>((r) => (firstRequestChunk = r));
  const app = new Hono();
  app.use('*', async (c, next) => {
    seen.push({ path: c.req.path, headers: Object.fromEntries(c.req.raw.headers) });
    await next();
  });
  app.get('/v1/attestation', (c) => c.body(new Uint8Array([1, 2, 3]), 200, { 'content-type': 'application/cbor', 'set-cookie': 'track=1', server: 'enclave/1', 'gm-tee': 'sim' }));
  app.get('/.well-known/ohttp-gateway', (c) => c.body(new Uint8Array([9]), 200, { 'content-type': 'application/ohttp-keys' }));
  app.get('/v1/workers', (c) => c.json([{ id: 'w1' }]));
  let cancelled: () => void = () => {};
  const upstreamCancelled = new Promise<void>((r) => (cancelled = r));
  const state = { endless: false };
  // An endless answer when asked: its cancel() runs when the relay stops reading (the client went away).
  app.post('/v1/ohttp', async (c, next) => {
    if (!state.endless) return next();
    await c.req.arrayBuffer();
    return new Response(new ReadableStream<Uint8Array>({
      pull: async (ctl) => {
        await new Promise((r) => setTimeout(r, 5));
        ctl.enqueue(new Uint8Array(16));
      },
      cancel: () => cancelled(),
    }), { headers: { 'content-type': 'message/ohttp-chunked-res' } });
  });
  app.post('/v1/ohttp', async (c) => {
    // Reads the request incrementally and answers in two chunks, the second only when the test says so.
    const reader = c.req.raw.body!.getReader();
    let n = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n === 0) firstRequestChunk();
      n += value.length;
    }
    const body = new ReadableStream<Uint8Array>({
      async start(ctl) {
        ctl.enqueue(new TextEncoder().encode(`got ${n};`));
        await released;
        ctl.enqueue(new TextEncoder().encode('end'));
        ctl.close();
      },
    });
    return new Response(body, { headers: { 'content-type': 'message/ohttp-chunked-res' } });
  });
  const l = await listen(app.fetch);
  cleanup.push(() => l.close());
  return { url: l.url, seen, release, gotFirstRequestChunk, upstreamCancelled, state };
}

async function shim(enclaveUrl: string, check = async () => ({ report: REPORT, summary: { platform: 'sim-sev-snp' } }), maxRequestBytes?: number) {
  const captured: Uint8Array[] = [];
  const gate = new EnclaveGate({ check, intervalMs: 60_000 });
  cleanup.push(() => gate.stop());
  const app = hostApp({ relay: { enclave: enclaveUrl, observe: (_d, _p, c) => captured.push(c), ...(maxRequestBytes ? { maxRequestBytes } : {}) }, gate, listings: async () => ({ workers: [], offers: [] }) });
  return { gate, app, captured };
}

describe('host relay', () => {
  it('forwards only the gateway and attestation endpoints, with identifying headers stripped both ways', async () => {
    const e = await fakeEnclave();
    const s = await shim(e.url);
    await s.gate.start();
    const r = await s.app.request('/v1/attestation?nonce=' + 'ab'.repeat(32), {
      headers: {
        forwarded: 'for=192.0.2.60', 'x-forwarded-for': '192.0.2.60', 'x-forwarded-host': 'a', 'x-real-ip': '192.0.2.60', via: '1.1 proxy',
        cookie: 'sid=secret', 'user-agent': 'SecretBrowser/1.0', authorization: 'Bearer sk-secret', referer: 'https://x', origin: 'https://x',
        'cf-connecting-ip': '192.0.2.60', 'true-client-ip': '192.0.2.60', accept: 'application/cbor',
      },
    });
    expect(r.status).toBe(200);
    expect(new Uint8Array(await r.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));
    expect(r.headers.get('set-cookie')).toBeNull();
    expect(r.headers.get('server')).toBeNull();
    expect(r.headers.get('gm-tee')).toBe('sim'); // the enclave's sim marking survives the relay
    const got = e.seen[0]!;
    expect(got.path).toBe('/v1/attestation');
    const sent = JSON.stringify(got.headers).toLowerCase();
    for (const h of ['forwarded', 'x-forwarded', 'x-real-ip', 'via', 'cookie', 'authorization', 'referer', 'origin', 'cf-connecting-ip', 'true-client-ip']) expect(Object.keys(got.headers)).not.toContain(h);
    for (const v of ['192.0.2.60', 'secret', 'secretbrowser', 'proxy']) expect(sent).not.toContain(v);
    expect(got.headers['user-agent']).toBe('gm-relay');
    expect(got.headers.accept).toBe('application/cbor');

    for (const [method, path] of [['GET', '/v1/workers'], ['POST', '/v1/attestation'], ['GET', '/v1/ohttp'], ['GET', '/v1/chat/completions']] as const) {
      const x = await s.app.request(path, { method });
      expect(x.status, `${method} ${path}`).toBe(404);
    }
    expect((await s.app.request('/v1/attestation?nonce=xyz')).status).toBe(400);
    expect((await s.app.request('/v1/attestation?nonce=' + 'ab'.repeat(32) + '&debug=1')).status).toBe(400);
    expect(e.seen.length).toBe(1);
  });

  it('streams both ways without buffering whole bodies', async () => {
    const e = await fakeEnclave();
    const s = await shim(e.url);
    await s.gate.start();
    const l = await listen(s.app.fetch);
    cleanup.push(() => l.close());
    const second: () => void = () => {};
    const body = new ReadableStream<Uint8Array>({
      async start(ctl) {
        ctl.enqueue(new Uint8Array(100));
        // The second request chunk is produced only after the enclave has already read the first.
        await e.gotFirstRequestChunk;
        ctl.enqueue(new Uint8Array(50));
        ctl.close();
        second();
      },
    });
    const res = await fetch(`${l.url}/v1/ohttp`, { method: 'POST', body, duplex: 'half', headers: { 'content-type': 'message/ohttp-chunked-req' } } as RequestInit);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('message/ohttp-chunked-res');
    const reader = res.body!.getReader();
    const first = await reader.read();
    // The first response chunk arrived while the enclave is still holding the rest back.
    expect(new TextDecoder().decode(first.value)).toBe('got 150;');
    e.release();
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe('end');
  });

  it('answers CORS preflights itself (browsers call the relay cross-origin) without reaching the enclave', async () => {
    const e = await fakeEnclave();
    const s = await shim(e.url);
    await s.gate.start();
    const pre = await s.app.request('/v1/ohttp', { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-credentials')).toBeNull();
    const r = await s.app.request('/.well-known/ohttp-gateway', { headers: { origin: 'https://app.example' } });
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(e.seen.map((x) => x.path)).toEqual(['/.well-known/ohttp-gateway']);
    expect(e.seen[0]!.headers.origin).toBeUndefined();
  });

  it('stops reading from the enclave when the client goes away mid-stream', async () => {
    const e = await fakeEnclave();
    e.state.endless = true;
    const s = await shim(e.url);
    await s.gate.start();
    const l = await listen(s.app.fetch);
    cleanup.push(() => l.close());
    const ac = new AbortController();
    const res = await fetch(`${l.url}/v1/ohttp`, { method: 'POST', body: new Uint8Array(8), headers: { 'content-type': 'message/ohttp-chunked-req' }, signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await e.upstreamCancelled; // resolves only if the relay cancelled the upstream stream
  });

  it('cuts a request body over the limit with 413', async () => {
    const e = await fakeEnclave();
    const s = await shim(e.url, undefined, 64);
    await s.gate.start();
    const r = await s.app.request('/v1/ohttp', { method: 'POST', body: new Uint8Array(100), headers: { 'content-type': 'message/ohttp-req' } });
    expect(r.status).toBe(413);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('RELAY_BODY_TOO_LARGE');
  });

  it('answers 502 with a code when the enclave is unreachable', async () => {
    const e = await fakeEnclave();
    const s = await shim('http://127.0.0.1:1');
    await s.gate.start();
    const r = await s.app.request('/.well-known/ohttp-gateway');
    expect(r.status).toBe(502);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('RELAY_UPSTREAM_UNAVAILABLE');
    expect(e.seen.length).toBe(0);
  });
});

describe('host gate', () => {
  it('keeps the relay shut until the enclave verifies, and shuts it with a clear 503 when a later check fails', async () => {
    const e = await fakeEnclave();
    let fail = false;
    const s = await shim(e.url, async () => {
      if (fail) throw rejected('SNP_MEASUREMENT_NOT_ALLOWED', 'measurement is not in the allowlist');
      return { report: REPORT, summary: { platform: 'sim-sev-snp' } };
    });
    const pending = await s.app.request('/.well-known/ohttp-gateway');
    expect(pending.status).toBe(503);
    expect(((await pending.json()) as { error: { code: string } }).error.code).toBe('HOST_GATE_PENDING');
    expect(e.seen.length).toBe(0);

    expect((await s.gate.start()).state).toBe('open');
    expect((await s.app.request('/.well-known/ohttp-gateway')).status).toBe(200);
    expect((await s.app.request('/healthz')).status).toBe(200);

    fail = true;
    const st = await s.gate.check();
    expect(st.state).toBe('closed');
    const closed = await s.app.request('/.well-known/ohttp-gateway');
    expect(closed.status).toBe(503);
    expect(closed.headers.get('retry-after')).toBe('1'); // a closed gate re-checks after 1 s (backing off)
    expect(await closed.json()).toEqual({ error: { code: 'HOST_GATE_CLOSED', message: 'the enclave failed verification by the host (SNP_MEASUREMENT_NOT_ALLOWED)', cause: 'SNP_MEASUREMENT_NOT_ALLOWED' } });
    expect(e.seen.length).toBe(1);
    const metrics = await (await s.app.request('/metrics')).text();
    expect(metrics).toContain('gm_host_gate_open 0');
    expect(metrics).toContain('gm_host_relay_requests_total{result="refused"} 2');

    fail = false;
    expect((await s.gate.check()).state).toBe('open');
    expect((await s.app.request('/.well-known/ohttp-gateway')).status).toBe(200);
  });

  it('while closed it re-checks soon (backing off up to the interval), so an enclave that came up late is relayed within seconds', async () => {
    const e = await fakeEnclave();
    let calls = 0;
    const gate = new EnclaveGate({ check: async () => {
      calls++;
      if (calls <= 2) throw rejected('ATTESTATION_UNREACHABLE', 'enclave not listening yet');
      return { report: REPORT, summary: {} };
    }, intervalMs: 60_000, retryMs: 30 });
    cleanup.push(() => gate.stop());
    const app = hostApp({ relay: { enclave: e.url }, gate, listings: async () => ({ workers: [], offers: [] }) });
    expect((await gate.start()).state).toBe('closed');
    const closed = await app.request('/.well-known/ohttp-gateway');
    expect(closed.status).toBe(503);
    expect(closed.headers.get('retry-after')).toBe('1'); // the next check is due in 30 ms, not at the 60 s interval
    await expect.poll(() => gate.status.state, { timeout: 10_000, interval: 10 }).toBe('open');
    expect(calls).toBe(3); // 30 ms, then 60 ms later: two retries, the second passes
    expect((await app.request('/.well-known/ohttp-gateway')).status).toBe(200);
  });

  it('renders the status page with the report, escaping what the enclave lists', async () => {
    const e = await fakeEnclave();
    const gate = new EnclaveGate({ check: async () => ({ report: REPORT, summary: { measurement: 'aa'.repeat(48) } }), intervalMs: 60_000 });
    await gate.start();
    cleanup.push(() => gate.stop());
    const app = hostApp({ relay: { enclave: e.url }, gate, listings: async () => ({ workers: [{ id: '<script>alert(1)</script>', platform: 'sim-tdx' }], offers: undefined }) });
    const html = await (await app.request('/')).text();
    expect(html).toContain('id="gate" class="state-open">OPEN');
    expect(html).toContain('bundle.cpu');
    expect(html).toContain('&#60;script&#62;');
    expect(html).not.toContain('<script>');
    expect(html).toContain('signed offer details not listed');
  });
});
