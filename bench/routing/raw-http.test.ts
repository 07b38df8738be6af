/**
 * The load generator's lean HTTP/1.1 client against a real node:http server and a raw TCP peer: requests on one
 * keep-alive connection, answers split across reads, and the framings it refuses instead of guessing.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RawConnection } from './raw-http.ts';

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

async function listen(s: Server | HttpServer): Promise<string> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closers.push(() => s.close());
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

/** A TCP peer that answers the first request on a connection with `answer`, written in the given pieces. */
async function rawPeer(...answer: string[]): Promise<string> {
  const s = createServer((sock) => {
    closers.push(() => sock.destroy());
    sock.once('data', async () => {
      for (const piece of answer) {
        sock.write(piece);
        await new Promise((r) => setTimeout(r, 5));
      }
    });
  });
  return listen(s);
}

describe('the lean load-generator client', () => {
  it('posts on one keep-alive connection and reads each answer by its content-length', async () => {
    const seen: { path?: string; type?: string; body: string; sockets: Set<unknown> } = { body: '', sockets: new Set() };
    const url = await listen(
      createHttpServer((req, res) => {
        seen.sockets.add(req.socket);
        seen.path = req.url;
        seen.type = req.headers['content-type'];
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          seen.body = body;
          const answer = Buffer.from(`echo:${body}`);
          res.writeHead(200, { 'content-type': 'message/ohttp-res; x=1', 'content-length': answer.length });
          res.end(answer);
        });
      }),
    );
    const c = await RawConnection.open(url, '/v1/ohttp', 'message/ohttp-req');
    closers.push(() => c.close());
    for (const text of ['one', 'two']) {
      const a = await c.post(new TextEncoder().encode(text));
      expect(a.status).toBe(200);
      expect(a.contentType).toBe('message/ohttp-res');
      expect(a.body.toString()).toBe(`echo:${text}`);
      expect(seen.body).toBe(text);
    }
    expect(seen.path).toBe('/v1/ohttp');
    expect(seen.type).toBe('message/ohttp-req');
    expect(seen.sockets.size).toBe(1);
    expect(c.closed).toBe(false);
    for (const s of seen.sockets) (s as { destroy(): void }).destroy();
    await c.ended;
    expect(c.closed).toBe(true);
    await expect(c.post(new Uint8Array([1]))).rejects.toThrow();
  });

  it('assembles an answer that arrives in pieces', async () => {
    const c = await RawConnection.open(await rawPeer('HTTP/1.1 201 Created\r\ncontent-le', 'ngth: 5\r\n\r\nab', 'cde'), '/p', 't');
    closers.push(() => c.close());
    const a = await c.post(new Uint8Array([1]));
    expect(a.status).toBe(201);
    expect(a.body.toString()).toBe('abcde');
  });

  it('refuses a chunked answer, one without a length, bytes after the answer, and a second request in flight', async () => {
    const chunked = await RawConnection.open(await rawPeer('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n'), '/p', 't');
    await expect(chunked.post(new Uint8Array([1]))).rejects.toThrow(/content-length/);
    const bare = await RawConnection.open(await rawPeer('HTTP/1.1 200 OK\r\n\r\n'), '/p', 't');
    await expect(bare.post(new Uint8Array([1]))).rejects.toThrow(/content-length/);
    const extra = await RawConnection.open(await rawPeer('HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nab'), '/p', 't');
    await expect(extra.post(new Uint8Array([1]))).rejects.toThrow(/after the answer/);
    const twice = await RawConnection.open(await rawPeer('HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na'), '/p', 't');
    closers.push(() => twice.close());
    const first = twice.post(new Uint8Array([1]));
    await expect(twice.post(new Uint8Array([2]))).rejects.toThrow(/already in flight/);
    expect((await first).body.toString()).toBe('a');
  });
});
