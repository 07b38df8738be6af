/**
 * enclave/serve.ts serveHanded: the server of one process of a multi-process enclave, which binds no socket and serves
 * the connections handed to it. It must keep every guarantee of `serve`: the head and whole-request timeouts cut a
 * slow client (node:http only enforces them on servers that started tracking connections), keep-alive works, and
 * close() ends idle connections, lets an answer in progress finish, and takes nothing more.
 */
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type HandedServer, serveHanded } from '../enclave/serve.ts';

let acceptor: Server | undefined;
afterEach(() => {
  acceptor?.close();
  acceptor = undefined;
});

/** A plain TCP listener that hands every connection to `h`, as the primary does. */
async function handing(h: HandedServer): Promise<number> {
  acceptor = createServer((socket) => h.take(socket));
  await new Promise<void>((r) => acceptor!.listen(0, '127.0.0.1', () => r()));
  return (acceptor.address() as AddressInfo).port;
}

function open(port: number): Promise<{ socket: Socket; got: () => string; closed: Promise<number> }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    let got = '';
    const socket = connect(port, '127.0.0.1', () => resolve({ socket, got: () => got, closed }));
    const closed = new Promise<number>((r) => socket.on('close', () => r(Date.now() - t0)));
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('error', reject);
  });
}

/** Resolves once `got()` holds `n` answers ending in `body` (true), or the connection closed first (false). */
async function seen(c: Awaited<ReturnType<typeof open>>, body: string, n = 1): Promise<boolean> {
  const has = () => c.got().split(`\r\n\r\n${body}`).length > n;
  while (!has()) {
    const closed = await Promise.race([c.closed.then(() => true), new Promise<false>((r) => c.socket.once('data', () => r(false)))]);
    if (closed) return has();
  }
  return true;
}

describe('serveHanded', () => {
  it('serves handed connections with keep-alive, and cuts a head that never ends at the head timeout', async () => {
    const h = serveHanded({ fetch: () => new Response('ok'), headersTimeoutMs: 500, requestTimeoutMs: 1_000 });
    const port = await handing(h);
    const c = await open(port);
    c.socket.write('GET /a HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(await seen(c, 'ok')).toBe(true);
    c.socket.write('GET /b HTTP/1.1\r\nhost: x\r\n\r\n'); // the same connection again
    expect(await seen(c, 'ok', 2)).toBe(true);
    c.socket.destroy();
    const slow = await open(port);
    slow.socket.write('GET /slow HTTP/1.1\r\nhost: x\r\n'); // no end of head
    const ms = await Promise.race([slow.closed, new Promise<number>((r) => setTimeout(() => r(Number.POSITIVE_INFINITY), 5_000))]);
    expect(slow.got()).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeLessThan(5_000);
    await h.close(100);
  });

  it('close() ends idle connections, lets an answer in progress finish, and takes no more', async () => {
    let release: () => void = () => undefined;
    let arrived: () => void = () => undefined;
    const waiting = new Promise<void>((r) => (arrived = r));
    const h = serveHanded({
      fetch: (req) => {
        if (new URL(req.url).pathname !== '/wait') return new Response('ok');
        arrived();
        return new Promise<Response>((r) => (release = () => r(new Response('late'))));
      },
    });
    const port = await handing(h);
    const idle = await open(port);
    idle.socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(await seen(idle, 'ok')).toBe(true);
    const busy = await open(port);
    busy.socket.write('GET /wait HTTP/1.1\r\nhost: x\r\n\r\n');
    await waiting; // the handler has the request
    let closed = false;
    const closing = h.close(10_000).then(() => (closed = true));
    await idle.closed; // the idle keep-alive connection is ended at once
    const late = await open(port);
    await late.closed; // taken after close(): ended without an answer
    expect(late.got()).toBe('');
    expect(closed).toBe(false); // the answer in progress holds close()
    release();
    expect(await seen(busy, 'late')).toBe(true);
    busy.socket.end();
    await closing;
    expect(closed).toBe(true);
  });
});
