/**
 * Slow-body connections (headers sent, body trickled or never finished) against real sockets: they hold no gateway,
 * registration or cancel slot (a slot is taken once the body is in), every server cuts them at its whole-request
 * timeout (408, then closed), and the host shim caps the sockets one source holds open.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRequest } from '../protocol/bhttp.ts';
import { decodeKeyConfigs, encapsulateRequest } from '../protocol/ohttp.ts';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { memoryLogger } from '../enclave/log.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { type Served, serve } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { hostApp } from '../host/app.ts';
import { EnclaveGate } from '../host/gate.ts';
import { listen } from '../host/serve.ts';
import { simVendors, simWorkerPolicy } from './stack/harness.ts';

interface Slow {
  readonly socket: Socket;
  /** Everything the server answered. */
  readonly got: () => string;
  /** Resolves with the milliseconds from open to close. */
  readonly closed: Promise<number>;
}

/** Sends a request head announcing a 4 KiB body, then only 10 bytes of it, and keeps the socket open. */
function slowBody(url: string, path: string, contentType: string, localAddress?: string): Promise<Slow> {
  const u = new URL(url);
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    let got = '';
    const socket = connect({ host: u.hostname, port: Number(u.port), ...(localAddress ? { localAddress } : {}) }, () => {
      socket.write(`POST ${path} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: ${contentType}\r\nContent-Length: 4096\r\n\r\n${'x'.repeat(10)}`);
      resolve({ socket, got: () => got, closed });
    });
    const closed = new Promise<number>((r) => socket.on('close', () => r(Date.now() - t0)));
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('error', reject);
  });
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('slow bodies at the enclave', () => {
  let e: Enclave;
  let s: Served;
  const slow: Slow[] = [];
  beforeAll(async () => {
    const { amd } = await simVendors();
    e = await createEnclave({
      tee: simProvider({ amd }), log: memoryLogger('enclave').log, limits: { maxConcurrentStreams: 4 },
      workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 },
    });
    s = await serve({ fetch: e.app.fetch, headersTimeoutMs: 1_000, requestTimeoutMs: 2_500 });
  });
  afterAll(async () => {
    for (const x of slow) x.socket.destroy();
    await e?.close();
    await s?.close(100);
  });

  it('slow bodies fill no gateway slot: a whole request is still served', async () => {
    for (let i = 0; i < 8; i++) slow.push(await slowBody(s.url, '/v1/ohttp', 'message/ohttp-req'));
    await tick(150);
    const cfg = decodeKeyConfigs(e.keyConfigs)[0]!;
    const { encapsulated } = await encapsulateRequest(cfg, encodeRequest(bhttpRequest('GET', '/v1/models', [], new Uint8Array())));
    const r = await fetch(`${s.url}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('message/ohttp-res');
  });

  it('slow bodies block no worker registration and no offer cancel', async () => {
    for (let i = 0; i < 10; i++) slow.push(await slowBody(s.url, '/v1/workers', 'application/json'));
    for (let i = 0; i < 10; i++) slow.push(await slowBody(s.url, '/v1/workers/w-0000000000000000/offers/cancel', 'application/json'));
    await tick(150);
    // Both reach their handler (a parse failure, no market), not the 503 of a full slot table.
    const reg = await fetch(`${s.url}/v1/workers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'not json' });
    expect(((await reg.json()) as { code: string }).code).toBe('REGISTRATION_MALFORMED');
    const cancel = await fetch(`${s.url}/v1/workers/w-0000000000000000/offers/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(((await cancel.json()) as { code: string }).code).toBe('NOT_FOUND');
  });

  it('every slow body is cut at the whole-request timeout with 408', async () => {
    const times = await Promise.race([Promise.all(slow.map((x) => x.closed)), tick(8_000).then(() => 'still open')]);
    expect(times).not.toBe('still open');
    for (const x of slow) expect(x.got()).toMatch(/^HTTP\/1\.1 408 /);
    expect(await e.metrics.render()).toContain('gm_active_streams 0');
  });
});

describe('slow bodies at the host shim', () => {
  it('caps open sockets per source and cuts slow bodies at the whole-request timeout', async () => {
    const l = await listen(async (req) => new Response(`read ${(await req.arrayBuffer()).byteLength}`), '127.0.0.1', 0, { connectionsPerSource: 3, headersTimeoutMs: 800, requestTimeoutMs: 1_500 });
    try {
      const mine = await Promise.all([0, 1, 2, 3, 4].map(() => slowBody(l.url, '/v1/ohttp', 'message/ohttp-req')));
      await tick(200);
      const cut = await Promise.all(mine.map((x) => Promise.race([x.closed.then(() => true), tick(300).then(() => false)])));
      expect(cut.filter(Boolean)).toHaveLength(2); // the two sockets past the cap, closed at accept
      // Another source (another loopback address) is not affected by the first one's sockets.
      const other = await slowBody(l.url, '/v1/ohttp', 'message/ohttp-req', '127.0.0.2');
      other.socket.write('y'.repeat(4086));
      await tick(200);
      expect(other.got()).toMatch(/^HTTP\/1\.1 200 [\s\S]*read 4096$/);
      other.socket.destroy();
      // The three admitted slow bodies are cut at the request timeout.
      const times = await Promise.race([Promise.all(mine.map((x) => x.closed)), tick(6_000).then(() => 'still open')]);
      expect(times).not.toBe('still open');
      expect(mine.filter((x) => /^HTTP\/1\.1 408 /.test(x.got()))).toHaveLength(3);
    } finally {
      await l.close();
    }
  });
});

describe('slow bodies through the relay', () => {
  it('slow bodies relayed to the enclave fill none of its gateway slots: a whole request through the relay is served', async () => {
    const { amd } = await simVendors();
    const e = await createEnclave({
      tee: simProvider({ amd }), log: memoryLogger('enclave').log, limits: { maxConcurrentStreams: 4 },
      workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 },
    });
    const s = await serve({ fetch: e.app.fetch });
    const report = { subject: 'evidence bundle (sim-sev-snp)', verified: true, checks: [{ id: 'bundle.cpu', status: 'pass' as const, what: 'cpu evidence' }] };
    const gate = new EnclaveGate({ check: async () => ({ report, summary: { platform: 'sim-sev-snp' } }), intervalMs: 60_000 });
    await gate.start();
    const relay = await listen(hostApp({ relay: { enclave: s.url }, gate, listings: async () => ({ workers: [], offers: [] }) }).fetch, '127.0.0.1', 0, { requestTimeoutMs: 3_000 });
    const slow: Slow[] = [];
    try {
      // Eight slow bodies from eight sources (each under its per-source cap), each streamed on to the enclave.
      for (let i = 0; i < 8; i++) slow.push(await slowBody(relay.url, '/v1/ohttp', 'message/ohttp-req', `127.0.0.${10 + i}`));
      await tick(300);
      const cfg = decodeKeyConfigs(e.keyConfigs)[0]!;
      const { encapsulated } = await encapsulateRequest(cfg, encodeRequest(bhttpRequest('GET', '/v1/models', [], new Uint8Array())));
      const r = await fetch(`${relay.url}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('message/ohttp-res');
      // The relay cuts them at its own whole-request timeout.
      const times = await Promise.race([Promise.all(slow.map((x) => x.closed)), tick(8_000).then(() => 'still open')]);
      expect(times).not.toBe('still open');
    } finally {
      for (const x of slow) x.socket.destroy();
      gate.stop();
      await relay.close();
      await e.close();
      await s.close(100);
    }
  });
});
