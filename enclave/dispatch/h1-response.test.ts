/**
 * The lanes' HTTP/1.1 response reader: answers framed by Content-Length and by chunked coding, read whole or in any
 * split; interim answers skipped; body bytes handed on as views; and a table of framings a worker never sends, each
 * refused with its reason (request smuggling's ambiguities among them).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { H1ParseError, MAX_HEAD_BYTES, ResponseReader, type ResponseSink } from './h1-response.ts';

interface Read {
  status?: number;
  fields?: Readonly<Record<string, string>>;
  close?: boolean;
  body: Buffer[];
  ended: boolean;
}

function sink(): ResponseSink & Read {
  const r: Read = { body: [], ended: false };
  return Object.assign(r, {
    head(status: number, fields: Readonly<Record<string, string>>, close: boolean) {
      Object.assign(r, { status, fields, close });
    },
    data(c: Uint8Array) {
      r.body.push(Buffer.from(c));
    },
    end() {
      r.ended = true;
    },
  });
}

/** Reads `wire` pushed in the pieces `cuts` makes of it; returns what the sink saw. */
function read(wire: Buffer, cuts: number[] = []): Read {
  const reader = new ResponseReader();
  const s = sink();
  reader.expect(s);
  let at = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < wire.length)].sort((a, b) => a - b).concat(wire.length)) {
    if (c > at) reader.push(wire.subarray(at, c));
    at = Math.max(at, c);
  }
  return s;
}

const b = (s: string) => Buffer.from(s, 'latin1');

describe('ResponseReader', () => {
  it('reads an answer framed by content-length, fields lowercased, and hands on views of the pushed buffer', () => {
    const reader = new ResponseReader();
    const seen: Uint8Array[] = [];
    const s = { ...sink(), data: (c: Uint8Array) => void seen.push(c) };
    let head: [number, Readonly<Record<string, string>>, boolean] | undefined;
    let ended = false;
    reader.expect({ head: (...h) => void (head = h), data: s.data, end: () => void (ended = true) });
    const wire = b('HTTP/1.1 200 OK\r\nContent-Type: application/gm-session\r\nContent-Length: 5\r\nKeep-Alive: timeout=65\r\n\r\nhello');
    reader.push(wire);
    expect(head).toEqual([200, { 'content-type': 'application/gm-session', 'content-length': '5', 'keep-alive': 'timeout=65' }, false]);
    expect(ended).toBe(true);
    expect(seen).toHaveLength(1);
    expect(Buffer.from(seen[0]!).toString()).toBe('hello');
    expect(seen[0]!.buffer).toBe(wire.buffer); // a view, not a copy
    expect(reader.idle).toBe(true);
  });

  it('reads chunked answers with extensions and trailers, and skips interim answers', () => {
    const r = read(b('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n0A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n'));
    expect(r.status).toBe(200);
    expect(r.close).toBe(true);
    expect(Buffer.concat(r.body).toString()).toBe('abc0123456789');
    expect(r.ended).toBe(true);
  });

  it('ends 204 and content-length 0 answers at their head', () => {
    expect(read(b('HTTP/1.1 204 No Content\r\n\r\n'))).toMatchObject({ status: 204, ended: true, body: [] });
    expect(read(b('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'))).toMatchObject({ status: 200, ended: true, body: [] });
  });

  it('reads a body framed by the close only where allowed, to the close; a HEAD answer has no body', () => {
    const reader = new ResponseReader();
    const s = sink();
    reader.expect(s, { closeDelimited: true });
    reader.push(b('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nabc'));
    reader.push(b('def'));
    expect([s.ended, s.close]).toEqual([false, true]);
    expect(reader.closed()).toBe(true);
    expect([Buffer.concat(s.body).toString(), s.ended]).toEqual(['abcdef', true]);

    const cut = sink();
    reader.expect(cut, { closeDelimited: true });
    reader.push(b('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc'));
    expect(reader.closed()).toBe(false); // a framed answer cut short by the close
    expect(cut.ended).toBe(false);

    const head = sink();
    reader.expect(head, { head: true });
    reader.push(b('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n'));
    expect([head.status, head.ended, head.body.length, reader.idle]).toEqual([200, true, 0, true]);
  });

  it('reads answers one after another on one reader', () => {
    const reader = new ResponseReader();
    for (const body of ['first', 'second']) {
      const s = sink();
      reader.expect(s);
      reader.push(b(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`));
      expect(Buffer.concat(s.body).toString()).toBe(body);
    }
  });

  it('gives the same answer however the bytes are split (property)', () => {
    const token = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/).filter((k) => !['content-length', 'transfer-encoding', 'connection'].includes(k));
    const value = fc.stringMatching(/^[!-~]([ !-~]{0,30}[!-~])?$/);
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 599 }).filter((s) => s !== 204 && s !== 304),
        fc.uniqueArray(fc.tuple(token, value), { selector: ([k]) => k, maxLength: 6 }),
        fc.uint8Array({ maxLength: 600 }),
        fc.boolean(),
        fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 20 }),
        fc.array(fc.nat({ max: 2000 }), { maxLength: 30 }),
        (status, fields, body, chunked, sizes, cuts) => {
          let head = `HTTP/1.1 ${status} Reason Phrase\r\n${fields.map(([k, v]) => `${k}: ${v}\r\n`).join('')}`;
          let framed: Buffer;
          if (chunked) {
            const parts: Buffer[] = [];
            let at = 0;
            for (let i = 0; at < body.length; i++) {
              const n = Math.min(sizes[i % Math.max(1, sizes.length)] ?? 16, body.length - at);
              parts.push(b(`${n.toString(16)}\r\n`), Buffer.from(body.subarray(at, at + n)), b('\r\n'));
              at += n;
            }
            head += 'transfer-encoding: chunked\r\n\r\n';
            framed = Buffer.concat([b(head), ...parts, b('0\r\n\r\n')]);
          } else {
            head += `content-length: ${body.length}\r\n\r\n`;
            framed = Buffer.concat([b(head), Buffer.from(body)]);
          }
          const r = read(framed, cuts);
          expect(r.status).toBe(status);
          expect(r.ended).toBe(true);
          expect(Buffer.concat(r.body).equals(Buffer.from(body))).toBe(true);
          for (const [k, v] of fields) expect(r.fields?.[k]).toBe(v);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('throws nothing but H1ParseError on arbitrary bytes, and never hands on more than it was given (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat({ max: 400 }), { maxLength: 8 }), (junk, cuts) => {
        const wire = Buffer.concat([b('HTTP/1.1 200 OK\r\n'), Buffer.from(junk)]);
        let r: Read | undefined;
        try {
          r = read(wire, cuts);
        } catch (e) {
          expect(e).toBeInstanceOf(H1ParseError);
          return;
        }
        expect(Buffer.concat(r.body).length).toBeLessThanOrEqual(wire.length);
      }),
      { numRuns: 500 },
    );
  });

  const refused: [string, string, RegExp][] = [
    ['HTTP/1.0', 'HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n', /status line/],
    ['a status of two digits', 'HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n', /status line/],
    ['no space after the status', 'HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n', /status line/],
    ['a bare LF ending a field line', 'HTTP/1.1 200 OK\r\ncontent-length: 0\nx: y\r\n\r\n', /bare CR or LF/],
    ['a bare CR in a field value', 'HTTP/1.1 200 OK\r\nx: a\rb\r\ncontent-length: 0\r\n\r\n', /bare CR or LF/],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nx: a\r\n  b\r\ncontent-length: 0\r\n\r\n', /malformed field line/],
    ['whitespace before the colon', 'HTTP/1.1 200 OK\r\ncontent-length : 0\r\n\r\n', /malformed field line/],
    ['a control byte in a value', 'HTTP/1.1 200 OK\r\nx: a\x00b\r\ncontent-length: 0\r\n\r\n', /malformed field line/],
    ['content-length beside transfer-encoding', 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', /beside transfer-encoding/],
    ['content-length twice', 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc', /content-length appears twice/],
    ['transfer-encoding twice', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', /transfer-encoding appears twice/],
    ['a coding other than chunked alone', 'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n', /other than chunked/],
    ['a signed content-length', 'HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\nabc', /malformed content-length/],
    ['a content-length list', 'HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\nabc', /malformed content-length/],
    ['a body framed by the close', 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nabc', /neither content-length nor chunked/],
    ['an upgrade', 'HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n', /protocol switch/],
    ['a 204 with a body', 'HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\nabc', /204 answer with a body/],
    ['a chunk size that is not hex', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n', /malformed chunk size/],
    ['a chunk size of 13 digits', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1000000000000\r\n', /malformed chunk size/],
    ['a negative chunk size', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-1\r\n', /malformed chunk size/],
    ['chunk data not followed by CRLF', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n', /not followed by CRLF/],
    ['a bare LF in a chunk line', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\nabc\r\n', /bare CR or LF|malformed chunk size/],
    ['a malformed trailer', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n', /malformed field line/],
    ['bytes past the answer', 'HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\naHTTP/1.1 200 OK\r\n', /no answer expected/],
  ];
  it.each(refused)('refuses %s', (_name, wire, reason) => {
    let thrown: unknown;
    try {
      read(b(wire));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(H1ParseError);
    expect((thrown as H1ParseError).code).toBe('H1_BAD_RESPONSE');
    expect((thrown as Error).message).toMatch(reason);
  });

  it('refuses a head or a chunk line past its bound, whole or in pieces, without waiting for its end', () => {
    const long = b(`HTTP/1.1 200 OK\r\nx: ${'a'.repeat(MAX_HEAD_BYTES)}`);
    expect(() => read(long)).toThrow(/head too long/);
    expect(() => read(long, [100, 5000, 9000])).toThrow(/head too long/);
    expect(() => read(b(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;${'e'.repeat(2000)}`))).toThrow(/chunk-size line too long/);
  });

  it('refuses bytes when no answer is expected', () => {
    const reader = new ResponseReader();
    expect(() => reader.push(b('HTTP/1.1 200 OK\r\n'))).toThrow(/no answer expected/);
  });
});
