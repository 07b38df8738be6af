/**
 * The enclave → worker transport's exchange handler against a raw HTTP/1.1 peer: an informational answer is skipped
 * for the final one, a whole body is read to its end (or refused past a limit, the exchange cancelled), a streamed
 * body is read in order, and a worker that cannot be reached fails with the transport's code.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { isGmError } from '../../attestation/errors.ts';
import { DEFAULT_TIMEOUTS, poolTransport, type PooledTransport, readWhole } from './transport.ts';

const open: (Server | PooledTransport)[] = [];
afterEach(async () => {
  // Transports first: a server closes only once its connections are gone.
  for (const x of open.splice(0).reverse()) await ('send' in x ? x.close() : new Promise<void>((r) => x.close(() => r())));
});

/** A peer that answers each request on a connection with the next of `answers` (raw bytes, head and body). */
async function peer(answers: (string | ((s: Socket) => void))[]): Promise<string> {
  const server = createServer((s) => {
    let buf = '';
    s.on('data', (b) => {
      buf += b.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/content-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      buf = buf.slice(end + 4 + len);
      const a = answers.shift();
      if (typeof a === 'string') s.write(a);
      else a?.(s);
    });
  });
  open.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address() as { port: number };
  return `http://127.0.0.1:${a.port}`;
}

const transport = (url: string) => {
  const t = poolTransport(url, DEFAULT_TIMEOUTS);
  open.push(t);
  return t;
};
const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);

describe('the worker transport', () => {
  it('skips an informational answer and takes the final one, its body read whole', async () => {
    const url = await peer(['HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: application/gm-session; x=1\r\ncontent-length: 5\r\n\r\nhello']);
    const r = await transport(url).lane!().post('/v1/session/request', 'application/gm-session', new Uint8Array(3), undefined, { last: true });
    expect([r.status, r.contentType]).toEqual([200, 'application/gm-session']);
    expect(text(await readWhole(r, 1024))).toBe('hello');
  });

  it('refuses a whole body past its limit (undefined), and reads a body that arrives in pieces', async () => {
    const url = await peer([
      'HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789',
      (s) => {
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc');
        setTimeout(() => s.write('def'), 20);
      },
    ]);
    const t = transport(url);
    expect(await readWhole(await t.lane!().post('/a', 'text/plain', new Uint8Array(1), undefined, { last: true }), 9)).toBeUndefined();
    // The refused exchange was cancelled, so its connection ended: the next one opens another (the peer's second answer).
    const r = await t.lane!().post('/b', 'text/plain', new Uint8Array(1), undefined, { last: true });
    const parts: string[] = [];
    for await (const c of r.body) parts.push(text(c)!);
    expect(parts.join('')).toBe('abcdef');
  });

  it('a worker that cannot be reached fails with WORKER_UNREACHABLE', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((r) => server.close(() => r()));
    const e = await transport(`http://127.0.0.1:${port}`).lane!().post('/x', 'text/plain', new Uint8Array(1), undefined).catch((x: unknown) => x);
    expect(isGmError(e) && e.code).toBe('WORKER_UNREACHABLE');
  });
});
