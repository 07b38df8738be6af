/**
 * The session path's forwarder (worker/forward.ts `forward`) against a real node:http upstream: what reaches the
 * inference server, what reaches the sink and in which order, refusals without an upstream call, an unreachable
 * upstream, cancelling before the answer and mid-answer, and pausing the upstream until `resume()`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Field } from '../protocol/bhttp.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { type AnswerSink, createForwarder, type Forwarder } from './forward.ts';

const te = new TextEncoder();
const td = new TextDecoder();
const servers: Server[] = [];
const forwarders: Forwarder[] = [];
const netServers: NetServer[] = [];
afterEach(async () => {
  await Promise.all(forwarders.splice(0).map((f) => f.close()));
  for (const s of netServers.splice(0)) s.close();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
});

async function upstream(handle: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<string> {
  const s = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => handle(req, res, body));
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

function forwarder(url: string): Forwarder {
  const f = createForwarder({ upstream: url });
  forwarders.push(f);
  return f;
}

/** A sink that records every call in order; `data` answers `accept()`. */
function recorder(accept: () => boolean = () => true) {
  const calls: string[] = [];
  let status = 0;
  let headers: readonly Field[] = [];
  let body = '';
  let settle: () => void = () => undefined;
  const settled = new Promise<void>((r) => (settle = r));
  const sink: AnswerSink = {
    head(s, h) {
      calls.push('head');
      status = s;
      headers = h;
    },
    data(c) {
      calls.push('data');
      body += td.decode(c);
      return accept();
    },
    end() {
      calls.push('end');
      settle();
    },
    fail(e) {
      calls.push(`fail ${String((e as Error)?.message ?? e)}`);
      settle();
    },
  };
  return { sink, calls, settled, get: () => ({ status, headers: Object.fromEntries(headers), body }) };
}

/** `p`, or a failure naming what did not happen within `ms`. */
const within = <T>(p: Promise<T>, what: string, ms = 5_000) => Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms))]);

const chat = (headers: Field[] = []) => bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json'], ...headers], te.encode('{"model":"m"}'));

describe('the session forwarder', () => {
  it('sends the inner request without its authorization or hop fields, and hands head, data and end to the sink', async () => {
    let seen: { method?: string; url?: string; headers?: IncomingMessage['headers']; body?: string } = {};
    const url = await upstream((req, res, body) => {
      seen = { method: req.method, url: req.url, headers: req.headers, body };
      res.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'yes', connection: 'keep-alive' });
      res.end('{"ok":true}');
    });
    const r = recorder();
    forwarder(`${url}/v1`).forward(chat([['authorization', 'Bearer upstream-secret'], ['Connection', 'close'], ['x-client', 'a']]), r.sink);
    await r.settled;
    expect(seen.method).toBe('POST');
    expect(seen.url).toBe('/v1/chat/completions');
    expect(seen.body).toBe('{"model":"m"}');
    expect(seen.headers?.authorization).toBeUndefined();
    expect(seen.headers?.['x-client']).toBe('a');
    expect(seen.headers?.connection).not.toBe('close');
    expect(r.calls).toEqual(['head', 'data', 'end']);
    const got = r.get();
    expect(got.status).toBe(201);
    expect(got.body).toBe('{"ok":true}');
    expect(got.headers['x-upstream']).toBe('yes');
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers.connection).toBeUndefined();
    expect(got.headers['content-length']).toBeUndefined();
  });

  it('reads an answer the inference server ends by closing its connection, and a GET with no body or length', async () => {
    let head = '';
    const raw = createNetServer((s) => {
      s.once('data', (b: Buffer) => {
        head = b.toString('latin1');
        s.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"object":"list","data":[]}');
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    netServers.push(raw);
    const r = recorder();
    forwarder(`http://127.0.0.1:${(raw.address() as AddressInfo).port}`).forward(bhttpRequest('GET', '/v1/models', [], new Uint8Array(0)), r.sink);
    await within(r.settled, 'the answer');
    expect(head.startsWith('GET /v1/models HTTP/1.1\r\n')).toBe(true);
    expect(head.toLowerCase()).not.toContain('content-length');
    expect(r.calls).toEqual(['head', 'data', 'end']);
    expect(r.get().body).toBe('{"object":"list","data":[]}');
  });

  it('skips an informational answer (103 Early Hints) and hands the sink the final one', async () => {
    const url = await upstream((_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"final":true}');
    });
    const r = recorder();
    forwarder(url).forward(chat(), r.sink);
    await within(r.settled, 'the answer');
    expect(r.calls).toEqual(['head', 'data', 'end']);
    const got = r.get();
    expect(got.status).toBe(200);
    expect(got.body).toBe('{"final":true}');
    expect(got.headers.link).toBeUndefined();
  });

  it('refuses a path outside the inference API at once, without calling the upstream', async () => {
    let called = 0;
    const url = await upstream((_req, res) => {
      called++;
      res.end();
    });
    const r = recorder();
    forwarder(url).forward(bhttpRequest('GET', '/admin/shutdown', [], new Uint8Array(0)), r.sink);
    // Answered before forward returned.
    expect(r.calls).toEqual(['head', 'data', 'end']);
    expect(r.get().status).toBe(404);
    expect(JSON.parse(r.get().body)).toEqual({ error: { code: 'NOT_FOUND' } });
    expect(called).toBe(0);
  });

  it('answers 502 UPSTREAM_UNAVAILABLE when the upstream cannot be reached', async () => {
    const url = await upstream((_req, res) => res.end());
    servers.pop()!.close(); // nothing listens there any more
    const r = recorder();
    forwarder(url).forward(chat(), r.sink);
    await r.settled;
    expect(r.calls).toEqual(['head', 'data', 'end']);
    expect(r.get().status).toBe(502);
    expect(JSON.parse(r.get().body)).toEqual({ error: { code: 'UPSTREAM_UNAVAILABLE' } });
  });

  it('cancel() before the answer ends the upstream request and tells the sink nothing', async () => {
    let closed!: () => void;
    const upstreamClosed = new Promise<void>((r) => (closed = r));
    let arrived!: () => void;
    const requestArrived = new Promise<void>((r) => (arrived = r));
    const url = await upstream((_req, res) => {
      res.on('close', () => closed()); // never answered: only the forwarder can end it
      arrived();
    });
    const r = recorder();
    const x = forwarder(url).forward(chat(), r.sink);
    await within(requestArrived, 'the request reaching the upstream');
    x.cancel();
    await within(upstreamClosed, 'the upstream request ending');
    await new Promise((res) => setTimeout(res, 50));
    expect(r.calls).toEqual([]);
  });

  it('cancel() mid-answer ends the upstream request; a sink that holds enough pauses the upstream until resume()', async () => {
    let closed!: () => void;
    const upstreamClosed = new Promise<void>((r) => (closed = r));
    let writes = 0;
    let stalled!: () => void;
    const upstreamStalled = new Promise<void>((r) => (stalled = r));
    const chunk = 'x'.repeat(64 * 1024);
    const url = await upstream((_req, res) => {
      res.on('close', () => closed());
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // Writes until the socket pushes back (the forwarder stopped reading), then says so.
      const pump = () => {
        while (writes < 1000) {
          writes++;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            setTimeout(stalled, 200);
            return;
          }
        }
      };
      pump();
    });
    let datas = 0;
    const r = recorder(() => ++datas < 2);
    const x = forwarder(url).forward(chat(), r.sink);
    await within(upstreamStalled, 'the upstream stalling');
    // Paused after its second chunk: the upstream wrote what the sockets hold, far from its 1,000 chunks.
    const held = writes;
    await new Promise((res) => setTimeout(res, 200));
    expect(writes).toBe(held);
    expect(writes).toBeLessThan(1000);
    const before = datas;
    x.resume();
    await new Promise((res) => setTimeout(res, 100));
    expect(datas).toBeGreaterThan(before);
    x.cancel();
    await within(upstreamClosed, 'the upstream request ending');
    const after = r.calls.length;
    await new Promise((res) => setTimeout(res, 50));
    expect(r.calls.length).toBe(after);
    expect(r.calls.some((c) => c === 'end' || c.startsWith('fail'))).toBe(false);
  });
});
