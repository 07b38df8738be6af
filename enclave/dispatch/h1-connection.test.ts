/**
 * A lane's HTTP/1.1 connection against a raw TCP peer: keep-alive reuse and the request as written, one exchange at a
 * time in order, `connection: close` and a peer's close (a new connection for the next exchange, each end counted),
 * the first-byte, idle and keep-alive timeouts, aborts sent and queued, pause and resume, a bad answer, request
 * fields that would split the head, and when a request unanswered on a closed kept-alive connection goes once more.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { H1Connection, type H1Options, type H1Timeouts } from './h1-connection.ts';
import { H1Pool } from './h1-pool.ts';

const open: (Server | H1Connection)[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await (x instanceof H1Connection ? x.destroy() : new Promise<void>((r) => x.close(() => r())));
});

interface Seen {
  readonly connections: Socket[];
  /** Each request as it arrived: head text and body. */
  readonly requests: { head: string; body: string; socket: Socket }[];
}

/** A peer that hands each request (and its socket) to `answer`. */
async function peer(answer: (req: { head: string; body: string }, s: Socket, i: number) => void): Promise<{ url: URL; seen: Seen }> {
  const seen: Seen = { connections: [], requests: [] };
  const server = createServer((s) => {
    seen.connections.push(s);
    let buf = '';
    s.on('data', (b) => {
      buf += b.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const len = Number(/content-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        const req = { head: buf.slice(0, end), body: buf.slice(end + 4, end + 4 + len) };
        buf = buf.slice(end + 4 + len);
        seen.requests.push({ ...req, socket: s });
        answer(req, s, seen.requests.length - 1);
      }
    });
    s.on('error', () => undefined);
  });
  open.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}`), seen };
}

const T: H1Timeouts = { connectMs: 2_000, firstByteMs: 2_000, idleMs: 2_000, keepAliveMs: 10_000 };

interface Outcome {
  status?: number;
  headers?: Record<string, string>;
  body: string;
  error?: Error & { code?: string };
  ended: boolean;
  controller?: { abort(e: Error): void; pause(): void; resume(): void; paused: boolean };
  done: Promise<void>;
}

function exchange(c: H1Connection, body = 'ping', headers: string[] = ['content-type', 'application/gm-session'], onData?: (o: Outcome) => void, method?: 'GET' | 'POST'): Outcome {
  let finish!: () => void;
  const o: Outcome = { body: '', ended: false, done: new Promise((r) => (finish = r)) };
  c.dispatch(
    { ...(method ? { method } : {}), path: '/v1/session/request', headers, body: Buffer.from(body) },
    {
      onRequestStart(ctl) {
        o.controller = ctl;
      },
      onResponseStart(_c, status, h) {
        o.status = status;
        o.headers = h as Record<string, string>;
      },
      onResponseData(_c, chunk) {
        o.body += Buffer.from(chunk).toString();
        onData?.(o);
      },
      onResponseEnd() {
        o.ended = true;
        finish();
      },
      onResponseError(_c, e) {
        o.error = e;
        finish();
      },
    },
  );
  return o;
}

const ok = (body: string, extra = '') => `HTTP/1.1 200 OK\r\ncontent-type: application/gm-session\r\ncontent-length: ${body.length}\r\n${extra}\r\n${body}`;

function connection(url: URL, t: H1Timeouts = T, o: H1Options = {}): { c: H1Connection; ends: () => number } {
  let n = 0;
  const c = new H1Connection(url, t, () => void n++, o);
  open.push(c);
  return { c, ends: () => n };
}

describe('H1Connection', () => {
  it('keeps one connection alive across exchanges and writes the request as given', async () => {
    const { url, seen } = await peer((req, s) => s.write(ok(`echo:${req.body}`)));
    const { c, ends } = connection(url);
    const a = exchange(c, 'one', ['content-type', 'application/gm-session', 'gm-worker-auth', 'mac']);
    await a.done;
    const b = exchange(c, 'two');
    await b.done;
    expect([a.status, a.body, a.ended, a.headers?.['content-type']]).toEqual([200, 'echo:one', true, 'application/gm-session']);
    expect(b.body).toBe('echo:two');
    expect(seen.connections).toHaveLength(1);
    expect(ends()).toBe(0);
    expect(seen.requests[0]!.head.split('\r\n')).toEqual([
      'POST /v1/session/request HTTP/1.1',
      `host: ${url.host}`,
      'content-type: application/gm-session',
      'gm-worker-auth: mac',
      'content-length: 3',
    ]);
  });

  it('sends a GET without a body or a length, and reads an answer the server ends by closing, where allowed', async () => {
    const { url, seen } = await peer((_req, s) => s.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"data":[]}'));
    const { c, ends } = connection(url, T, { closeDelimited: true });
    const x = exchange(c, '', [], undefined, 'GET');
    await x.done;
    expect(seen.requests[0]!.head.split('\r\n')).toEqual(['GET /v1/session/request HTTP/1.1', `host: ${url.host}`]);
    expect([x.status, x.body, x.ended, x.error]).toEqual([200, '{"data":[]}', true, undefined]);
    expect(ends()).toBe(1);
    // Without the allowance the same answer is refused.
    const strict = exchange(connection(url).c, '', [], undefined, 'GET');
    await strict.done;
    expect(strict.error?.code).toBe('H1_BAD_RESPONSE');
  });

  it("closes an idle connection before the server's Keep-Alive timeout says it will", async () => {
    const { url, seen } = await peer((req, s) => s.write(ok(req.body, 'keep-alive: timeout=1\r\n')));
    const { c, ends } = connection(url, { ...T, keepAliveMs: 60_000 });
    const t0 = performance.now();
    await exchange(c).done;
    await new Promise((r) => seen.connections[0]!.once('close', r));
    // timeout=1 leaves no margin: the connection is not kept after the answer.
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(ends()).toBe(1);
    const { url: url2, seen: seen2 } = await peer((req, s) => s.write(ok(req.body, 'keep-alive: timeout=2\r\n')));
    const k = connection(url2, { ...T, keepAliveMs: 60_000 });
    const t1 = performance.now();
    await exchange(k.c).done;
    await new Promise((r) => seen2.connections[0]!.once('close', r));
    const held = performance.now() - t1;
    expect(held).toBeGreaterThan(700);
    expect(held).toBeLessThan(1_900);
  });

  it('a pool opens connections up to its bound, reuses idle ones, and queues past the bound', async () => {
    const { url, seen } = await peer((req, s) => setTimeout(() => s.write(ok(req.body)), 20));
    const pool = new H1Pool(url, T, 2);
    const sent = ['a', 'b', 'c', 'd'].map((body) => {
      const o = { body: '', done: undefined as unknown as Promise<void> };
      o.done = new Promise<void>((resolve, reject) =>
        pool.dispatch({ path: '/p', headers: [], body: Buffer.from(body) }, {
          onResponseData: (_c, chunk) => void (o.body += Buffer.from(chunk).toString()),
          onResponseEnd: () => resolve(),
          onResponseError: (_c, e) => reject(e),
        }),
      );
      return o;
    });
    await Promise.all(sent.map((o) => o.done));
    expect(sent.map((o) => o.body)).toEqual(['a', 'b', 'c', 'd']);
    expect(pool.size).toBe(2);
    expect(seen.connections).toHaveLength(2);
    await new Promise<void>((resolve, reject) => pool.dispatch({ path: '/p', headers: [], body: Buffer.from('e') }, { onResponseEnd: () => resolve(), onResponseError: (_c, e) => reject(e) }));
    expect(seen.connections).toHaveLength(2);
    await pool.destroy();
  });

  it('runs queued exchanges one at a time, in order', async () => {
    let inFlight = 0;
    let most = 0;
    const { url } = await peer((req, s) => {
      inFlight++;
      most = Math.max(most, inFlight);
      setTimeout(() => {
        inFlight--;
        s.write(ok(req.body));
      }, 5);
    });
    const { c } = connection(url);
    const xs = ['a', 'b', 'c', 'd'].map((x) => exchange(c, x));
    await Promise.all(xs.map((x) => x.done));
    expect(xs.map((x) => x.body)).toEqual(['a', 'b', 'c', 'd']);
    expect(most).toBe(1);
  });

  it('opens a new connection after `connection: close` and after the peer closes an idle one, counting each end', async () => {
    const { url, seen } = await peer((req, s, i) => {
      if (i === 0) s.write(ok(req.body, 'connection: close\r\n'));
      else if (i === 1) s.end(ok(req.body));
      else s.write(ok(req.body));
    });
    const { c, ends } = connection(url);
    await exchange(c, 'a').done;
    await exchange(c, 'b').done;
    await new Promise((r) => setTimeout(r, 50)); // the peer's close of the idle connection arrives
    const third = exchange(c, 'c');
    await third.done;
    expect(third.body).toBe('c');
    expect(third.error).toBeUndefined();
    expect(seen.connections).toHaveLength(3);
    expect(ends()).toBe(2);
  });

  it('with retryUnanswered, sends a request once more on a new connection when its kept-alive one closed or reset unanswered', async () => {
    for (const close of [(s: Socket) => s.end(), (s: Socket) => s.resetAndDestroy()]) {
      const { url, seen } = await peer((req, s, i) => (i === 1 ? close(s) : s.write(ok(`echo:${req.body}`))));
      const { c } = connection(url, T, { retryUnanswered: true });
      await exchange(c, 'a').done;
      const b = exchange(c, 'b');
      await b.done;
      expect([b.status, b.body, b.error]).toEqual([200, 'echo:b', undefined]);
      expect(seen.requests.map((r) => r.body)).toEqual(['a', 'b', 'b']);
      expect(seen.connections).toHaveLength(2);
    }
  });

  it('sends once more only a request on a reused connection, of which no byte was answered, once, and only when asked', async () => {
    const attempts = async (answer: (req: { body: string }, s: Socket, i: number) => void, o: H1Options, first = 'a', t = T) => {
      const { url, seen } = await peer(answer);
      const { c } = connection(url, t, o);
      if (first) await exchange(c, first).done;
      const x = exchange(c, 'b');
      await x.done;
      return { code: x.error?.code, sent: seen.requests.filter((r) => r.body === 'b').length };
    };
    const closeSecond = (req: { body: string }, s: Socket, i: number) => (i === 1 ? s.end() : s.write(ok(req.body)));
    // Not asked (a lane): the close is the exchange's failure.
    expect(await attempts(closeSecond, {})).toEqual({ code: 'H1_CLOSED', sent: 1 });
    // A first request on a new connection: nothing says the server closed an idle connection.
    expect(await attempts((_r, s) => s.end(), { retryUnanswered: true }, '')).toEqual({ code: 'H1_CLOSED', sent: 1 });
    // Part of the answer came: the server had taken the request.
    expect(await attempts((req, s, i) => (i === 1 ? s.end('HTTP/1.1 200 OK\r\n') : s.write(ok(req.body))), { retryUnanswered: true })).toEqual({ code: 'H1_CLOSED', sent: 1 });
    // The second try closes too: no third.
    expect(await attempts((req, s, i) => (i >= 1 ? s.end() : s.write(ok(req.body))), { retryUnanswered: true })).toEqual({ code: 'H1_CLOSED', sent: 2 });
    // A server that took the request and went quiet: its timeout is no race with a close.
    expect(await attempts((req, s, i) => void (i === 0 && s.write(ok(req.body))), { retryUnanswered: true }, 'a', { ...T, firstByteMs: 100 })).toEqual({ code: 'H1_HEADERS_TIMEOUT', sent: 1 });
  });

  it('fails with H1_HEADERS_TIMEOUT when no answer begins, and H1_BODY_TIMEOUT when one stops', async () => {
    const { url } = await peer((req, s) => {
      if (req.body === 'stall') s.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc');
    });
    const t = { ...T, firstByteMs: 120, idleMs: 120 };
    const silent = exchange(connection(url, t).c, 'nothing');
    const stalled = exchange(connection(url, t).c, 'stall');
    await Promise.all([silent.done, stalled.done]);
    expect(silent.error?.code).toBe('H1_HEADERS_TIMEOUT');
    expect(silent.status).toBeUndefined();
    expect(stalled.status).toBe(200);
    expect(stalled.body).toBe('abc');
    expect(stalled.error?.code).toBe('H1_BODY_TIMEOUT');
  });

  it('closes an idle connection after keepAliveMs', async () => {
    const { url, seen } = await peer((req, s) => s.write(ok(req.body)));
    const { c, ends } = connection(url, { ...T, keepAliveMs: 80 });
    await exchange(c).done;
    const closed = new Promise((r) => seen.connections[0]!.once('close', r));
    await closed;
    expect(ends()).toBe(1);
  });

  it('fails with a socket code when the worker cannot be reached', async () => {
    const { url } = await peer(() => undefined);
    await new Promise<void>((r) => (open.shift() as Server).close(() => r()));
    const x = exchange(connection(url).c);
    await x.done;
    expect(x.error?.code).toBe('H1_SOCKET');
  });

  it('an abort mid-answer ends the exchange and its connection; an abort of a queued one leaves the rest', async () => {
    const { url, seen } = await peer((req, s) => {
      if (req.body === 'slow') s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n');
      else s.write(ok(req.body));
    });
    const { c, ends } = connection(url);
    const slow = exchange(c, 'slow', undefined, (o) => o.controller!.abort(new Error('client went away')));
    const queued = exchange(c, 'queued');
    const after = exchange(c, 'after');
    queued.controller!.abort(new Error('not wanted'));
    await Promise.all([slow.done, queued.done, after.done]);
    expect(slow.body).toBe('abc');
    expect(slow.error?.code).toBe('H1_ABORTED');
    expect(queued.error?.code).toBe('H1_ABORTED');
    expect(queued.status).toBeUndefined();
    expect(after.body).toBe('after');
    expect(seen.requests.map((r) => r.body)).toEqual(['slow', 'after']);
    expect(seen.connections).toHaveLength(2);
    expect(ends()).toBe(1);
  });

  it('hands nothing more to a handler that aborted from a callback, though the same read held more of the answer', async () => {
    const { url } = await peer((req, s) => s.write(ok(req.body.repeat(100))));
    const { c, ends } = connection(url);
    const calls: string[] = [];
    let finish!: () => void;
    const done = new Promise<void>((r) => (finish = r));
    c.dispatch(
      { path: '/x', headers: [], body: Buffer.from('abc') },
      {
        onResponseStart(ctl) {
          calls.push('start');
          ctl.abort(new Error('not this one'));
        },
        onResponseData() {
          calls.push('data');
        },
        onResponseEnd() {
          calls.push('end');
        },
        onResponseError(_c, e) {
          calls.push(`error ${(e as { code?: string }).code}`);
          finish();
        },
      },
    );
    await done;
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toEqual(['start', 'error H1_ABORTED']);
    expect(ends()).toBe(1);
    const next = exchange(c, 'again');
    await next.done;
    expect(next.body).toBe('again'.repeat(100));
  });

  it('pauses and resumes the socket for its reader', async () => {
    const { url } = await peer((_req, s) => {
      s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      let i = 0;
      const t = setInterval(() => {
        s.write(i < 20 ? '1\r\nx\r\n' : '0\r\n\r\n');
        if (++i > 20) clearInterval(t);
      }, 2);
    });
    let pausedAt = -1;
    const x = exchange(connection(url).c, 'p', undefined, (o) => {
      if (o.body.length === 1) {
        o.controller!.pause();
        pausedAt = o.body.length;
        setTimeout(() => {
          // Nothing was read while paused, though the peer kept writing.
          expect(o.body.length).toBe(pausedAt);
          o.controller!.resume();
        }, 100);
      }
    });
    await x.done;
    expect(x.body).toBe('x'.repeat(20));
    expect(x.ended).toBe(true);
  });

  it('does not count time paused by its reader as the worker going idle', async () => {
    const { url } = await peer((_req, s) => {
      s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n');
      setTimeout(() => s.write('1\r\nb\r\n0\r\n\r\n'), 20);
    });
    const x = exchange(connection(url, { ...T, idleMs: 80 }).c, 'p', undefined, (o) => {
      if (o.body === 'a') {
        o.controller!.pause();
        setTimeout(() => o.controller!.resume(), 300); // well past the idle timeout
      }
    });
    await x.done;
    expect(x.error).toBeUndefined();
    expect(x.body).toBe('ab');
  });

  it('fails an answer outside the grammar with H1_BAD_RESPONSE and closes the connection', async () => {
    const { url } = await peer((_req, s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'));
    const { c, ends } = connection(url);
    const x = exchange(c);
    await x.done;
    expect(x.error?.code).toBe('H1_BAD_RESPONSE');
    expect(ends()).toBe(1);
  });

  it('refuses request fields that would split the head, sending nothing', async () => {
    const { url, seen } = await peer((req, s) => s.write(ok(req.body)));
    const { c } = connection(url);
    const bad = exchange(c, 'x', ['x-a', 'v\r\nx-injected: 1']);
    const badName = exchange(c, 'x', ['bad name', 'v']);
    const good = exchange(c, 'fine');
    await Promise.all([bad.done, badName.done, good.done]);
    expect(bad.error?.code).toBe('H1_REQUEST');
    expect(badName.error?.code).toBe('H1_REQUEST');
    expect(good.body).toBe('fine');
    expect(seen.requests.map((r) => r.body)).toEqual(['fine']);
  });
});
