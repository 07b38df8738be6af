import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { concat, fromHex, hex } from '../attestation/bytes.ts';
import { hasVectors, vectorText } from '../test/vectors.ts';
import {
  ResponseDecoder,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  responseStream,
  type BhttpResponse,
  type Field,
  type ResponseEvent,
} from './bhttp.ts';
import { encodeVarint, readVarint } from './varint.ts';

interface Example {
  name: string;
  framing_indicator?: number;
  bhttp: string;
  control?: { method: string; scheme: string; authority: string; path: string };
  headers?: [string, string][];
  content?: string;
  content_utf8?: string;
  trailers?: [string, string][];
  informational?: [number, [string, string][]][];
  status?: number;
}

const td = new TextDecoder();
const te = new TextEncoder();

/** Bytes of zero padding at the end of an encoded message that decoding accounted as padding. */
function trailingZeros(b: Uint8Array): number {
  let n = 0;
  while (n < b.length && b[b.length - 1 - n] === 0) n++;
  return n;
}

describe.skipIf(!hasVectors)('RFC 9292 examples', () => {
  const examples: Example[] = hasVectors ? JSON.parse(vectorText('protocol/bhttp/rfc9292-examples.json')).examples : [];
  const byName = (n: string) => {
    const e = examples.find((x) => x.name === n);
    if (!e) throw new Error(`example ${n} missing`);
    return e;
  };

  it('every example is of a known kind', () => {
    const known = [
      'request_known_length',
      'request_indeterminate_length',
      'response_indeterminate_with_interim',
      'response_known_length_from_chunked',
      'ohttp_rfc9458_request',
      'ohttp_rfc9458_response',
    ];
    expect(examples.map((e) => e.name).sort()).toEqual([...known].sort());
  });

  it('known-length request decodes to the expected fields and re-encodes byte for byte', () => {
    const e = byName('request_known_length');
    const { request, framing } = decodeRequest(fromHex(e.bhttp));
    expect(framing).toBe('known-length');
    expect({ method: request.method, scheme: request.scheme, authority: request.authority, path: request.path }).toEqual(e.control);
    expect(request.headers).toEqual(e.headers);
    expect(td.decode(request.content)).toBe(e.content);
    expect(request.trailers).toEqual(e.trailers);
    expect(hex(encodeRequest(request))).toBe(e.bhttp);
    // §3.8: the two trailing zero bytes (empty content, empty trailers) may be dropped.
    expect(decodeRequest(fromHex(e.bhttp.slice(0, -4))).request).toEqual(request);
    expect(hex(encodeRequest(request, { truncate: true }))).toBe(e.bhttp.slice(0, -4));
  });

  it('indeterminate-length request with padding decodes to the same request and re-encodes byte for byte', () => {
    const known = decodeRequest(fromHex(byName('request_known_length').bhttp)).request;
    const e = byName('request_indeterminate_length');
    const b = fromHex(e.bhttp);
    const { request, framing } = decodeRequest(b);
    expect(framing).toBe('indeterminate-length');
    expect(request).toEqual(known);
    // Two terminators (content, trailers) then 10 bytes of padding.
    expect(trailingZeros(b)).toBe(13); // the header section's own terminator is zero too
    expect(hex(encodeRequest(request, { framing: 'indeterminate-length', padding: 10 }))).toBe(e.bhttp);
    // Up to 12 trailing bytes may be removed (§3.8).
    expect(decodeRequest(b.subarray(0, b.length - 12)).request).toEqual(known);
    expect(() => decodeRequest(b.subarray(0, b.length - 13))).toThrow(expect.objectContaining({ code: 'BHTTP_TRUNCATED' }));
  });

  it('indeterminate-length response with 102 and 103 informational responses', () => {
    const e = byName('response_indeterminate_with_interim');
    const { response, framing } = decodeResponse(fromHex(e.bhttp));
    expect(framing).toBe('indeterminate-length');
    expect(response.informational.map((i) => [i.status, i.headers])).toEqual(e.informational);
    expect(response.status).toBe(e.status);
    expect(response.headers).toEqual(e.headers);
    expect(td.decode(response.content)).toBe(e.content_utf8);
    expect(response.trailers).toEqual(e.trailers);
    expect(hex(encodeResponse(response, { framing: 'indeterminate-length' }))).toBe(e.bhttp);
  });

  it('known-length response with trailers', () => {
    const e = byName('response_known_length_from_chunked');
    const { response, framing } = decodeResponse(fromHex(e.bhttp));
    expect(framing).toBe('known-length');
    expect(response.status).toBe(e.status);
    expect(response.headers).toEqual(e.headers);
    expect(td.decode(response.content)).toBe(e.content_utf8);
    expect(response.trailers).toEqual(e.trailers);
    expect(hex(encodeResponse(response))).toBe(e.bhttp);
  });

  it('the RFC 9458 truncated request and response', () => {
    const rq = byName('ohttp_rfc9458_request');
    const { request } = decodeRequest(fromHex(rq.bhttp));
    expect({ method: request.method, scheme: request.scheme, authority: request.authority, path: request.path }).toEqual(rq.control);
    expect(request.headers).toEqual([]);
    expect(hex(encodeRequest(request, { truncate: true }))).toBe(rq.bhttp);
    const rs = byName('ohttp_rfc9458_response');
    const { response } = decodeResponse(fromHex(rs.bhttp));
    expect(response.status).toBe(rs.status);
    expect(hex(encodeResponse(response, { truncate: true }))).toBe(rs.bhttp);
  });

  it('the incremental decoder yields the same message from any split of the RFC response', () => {
    const b = fromHex(byName('response_indeterminate_with_interim').bhttp);
    const whole = decodeResponse(b).response;
    for (let step = 1; step <= 17; step += 4) {
      const d = new ResponseDecoder();
      const ev: ResponseEvent[] = [];
      for (let o = 0; o < b.length; o += step) ev.push(...d.push(b.subarray(o, o + step)));
      ev.push(...d.end());
      expect(fromEvents(ev)).toEqual(whole);
    }
  });
});

function fromEvents(ev: ResponseEvent[]): BhttpResponse {
  const informational: { status: number; headers: readonly Field[] }[] = [];
  let status = 0;
  let headers: readonly Field[] = [];
  let trailers: readonly Field[] = [];
  const content: Uint8Array[] = [];
  expect(ev[ev.length - 1]).toEqual({ type: 'end' });
  for (const e of ev) {
    if (e.type === 'informational') informational.push({ status: e.status, headers: e.headers });
    else if (e.type === 'head') ({ status, headers } = e);
    else if (e.type === 'content') content.push(e.data);
    else if (e.type === 'trailers') trailers = e.trailers;
  }
  const all = new Uint8Array(content.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of content) {
    all.set(c, o);
    o += c.length;
  }
  return { informational, status, headers, content: all, trailers };
}

describe('binary HTTP', () => {
  const name = fc.string({ minLength: 1, maxLength: 12 }).map((s) => s.replace(/[^\x21-\x7e]/g, 'x').toLowerCase());
  // biome-ignore lint/suspicious/noControlCharactersInRegex: field values may hold any Latin-1 octet, control bytes included.
  const value = fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x00-\xff]/g, '?'));
  const fields = fc.array(fc.tuple(name, value), { maxLength: 5 });
  const response = fc.record({
    informational: fc.array(fc.record({ status: fc.integer({ min: 100, max: 199 }), headers: fields }), { maxLength: 2 }),
    status: fc.integer({ min: 200, max: 599 }),
    headers: fields,
    content: fc.uint8Array({ maxLength: 200 }),
    trailers: fields,
  });

  it('decoded content is a view into the decoded bytes (no copy); the streaming decoder keeps its own copy of what it was given', () => {
    const te = new TextEncoder();
    const wire = encodeResponse({ informational: [], status: 200, headers: [['content-type', 'text/plain']], content: te.encode('hello, content'), trailers: [] });
    const whole = decodeResponse(wire).response.content;
    expect(new TextDecoder().decode(whole)).toBe('hello, content');
    expect(whole.buffer).toBe(wire.buffer);
    const req = encodeRequest({ method: 'POST', scheme: 'https', authority: 'a', path: '/p', headers: [], content: te.encode('body'), trailers: [] });
    expect(decodeRequest(req).request.content.buffer).toBe(req.buffer);
    // The streaming decoder: a caller that reuses the buffer it pushed does not change content already given out.
    for (const framing of [true, false]) {
      const bytes = framing ? wire.slice() : concat(responseStream.head(200, []), responseStream.content(te.encode('streamed')), responseStream.end());
      const d = new ResponseDecoder();
      const ev = d.push(bytes);
      bytes.fill(0x7a);
      const text = ev.flatMap((e) => (e.type === 'content' ? [new TextDecoder().decode(e.data)] : [])).join('');
      expect(text).toBe(framing ? 'hello, content' : 'streamed');
    }
  });

  it('responses round-trip in both framings, with truncation and padding, whole and incrementally', () => {
    fc.assert(
      fc.property(response, fc.boolean(), fc.boolean(), fc.nat(8), fc.integer({ min: 1, max: 50 }), (r, known, truncate, pad, step) => {
        const b = encodeResponse(r, { framing: known ? 'known-length' : 'indeterminate-length', truncate, padding: pad });
        expect(decodeResponse(b).response).toEqual(r);
        const d = new ResponseDecoder();
        const ev: ResponseEvent[] = [];
        for (let o = 0; o < b.length; o += step) ev.push(...d.push(b.subarray(o, o + step)));
        ev.push(...d.end());
        expect(fromEvents(ev)).toEqual(r);
      }),
      { numRuns: 300, seed: 0x5eed },
    );
  });

  it('requests round-trip in both framings', () => {
    const request = fc.record({
      method: fc.constantFrom('GET', 'POST'),
      scheme: fc.constantFrom('https', 'http'),
      authority: fc.constantFrom('', 'gm.example'),
      path: fc.constantFrom('/', '/v1/chat/completions'),
      headers: fields,
      content: fc.uint8Array({ maxLength: 200 }),
      trailers: fields,
    });
    fc.assert(
      fc.property(request, fc.boolean(), fc.boolean(), (r, known, truncate) => {
        expect(decodeRequest(encodeRequest(r, { framing: known ? 'known-length' : 'indeterminate-length', truncate })).request).toEqual(r);
      }),
      { numRuns: 200, seed: 0x5eed },
    );
  });

  it('field values of any length and any Latin-1 byte round-trip; a code point above 0xFF is refused', () => {
    // Lengths spread over the whole range (short values are decoded one way, long ones in 8 KiB slices another).
    const latin1 = fc
      .oneof(fc.integer({ min: 0, max: 80 }), fc.integer({ min: 8180, max: 8200 }), fc.integer({ min: 0, max: 17000 }))
      // All of Latin-1, or ASCII only (a long ASCII value is written by the platform's encoder, the rest byte by byte).
      .chain((n) => fc.oneof(fc.constant(0xff), fc.constant(0x7f)).chain((top) => fc.array(fc.integer({ min: 0, max: top }), { minLength: n, maxLength: n })))
      .map((cs) => cs.map((c) => String.fromCharCode(c)).join(''));
    fc.assert(
      fc.property(latin1, fc.boolean(), (v, known) => {
        const r = { method: 'POST', scheme: 'https', authority: '', path: '/p', headers: [['x-v', v]] as [string, string][], content: new Uint8Array(0), trailers: [] };
        const framing = known ? 'known-length' : 'indeterminate-length';
        expect(decodeRequest(encodeRequest(r, { framing })).request.headers).toEqual([['x-v', v]]);
      }),
      { numRuns: 60, seed: 0x1a71 },
    );
    const bad = (headers: [string, string][], path = '/p') => () => encodeRequest({ method: 'POST', scheme: 'https', authority: '', path, headers, content: new Uint8Array(0), trailers: [] });
    expect(bad([['x-v', 'a\u0100']])).toThrow(expect.objectContaining({ code: 'BHTTP_MALFORMED' }));
    expect(bad([['x-v', `${'a'.repeat(5000)}\u0100`]])).toThrow(expect.objectContaining({ code: 'BHTTP_MALFORMED' }));
    expect(bad([['x-v', `${'a'.repeat(5000)}\u00e9\u0100`]])).toThrow(expect.objectContaining({ code: 'BHTTP_MALFORMED' }));
    expect(bad([['x-\u20ac', 'a']])).toThrow(expect.objectContaining({ code: 'BHTTP_MALFORMED' }));
    expect(bad([], '/\u{1f600}')).toThrow(expect.objectContaining({ code: 'BHTTP_MALFORMED' }));
    expect(() => encodeResponse({ informational: [], status: 200, headers: [], content: new Uint8Array(0), trailers: [] }, { padding: -1 })).toThrow(expect.objectContaining({ code: 'BHTTP_MALFORMED' }));
  });

  it('streams an SSE response: head first, then each event as it arrives', () => {
    const d = new ResponseDecoder();
    expect(d.push(responseStream.head(200, [['content-type', 'text/event-stream']]))).toEqual([
      { type: 'head', status: 200, headers: [['content-type', 'text/event-stream']] },
    ]);
    const ev = responseStream.content(te.encode('data: {"token":"hi"}\n\n'));
    // Half an event yields its first half at once.
    const text = (es: ResponseEvent[]) => es.map((e) => (e.type === 'content' ? td.decode(e.data) : e.type));
    expect(text(d.push(ev.subarray(0, 10)))).toEqual(['data: {"t']);
    expect(text(d.push(ev.subarray(10)))).toEqual(['oken":"hi"}\n\n']);
    expect(responseStream.content(new Uint8Array())).toHaveLength(0);
    expect(d.push(responseStream.end([['x-usage', '12']]))).toEqual([{ type: 'trailers', trailers: [['x-usage', '12']] }]);
    expect(d.end()).toEqual([{ type: 'end' }]);
  });

  it('rejects malformed messages with stable codes', () => {
    const ok = encodeResponse({ informational: [], status: 200, headers: [['a', 'b']], content: te.encode('x'), trailers: [] });
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return 'none';
    };
    expect(code(() => decodeResponse(new Uint8Array([...ok, 0, 1])))).toBe('BHTTP_TRAILING');
    expect(code(() => decodeResponse(ok.subarray(0, 5)))).toBe('BHTTP_TRUNCATED');
    expect(code(() => decodeResponse(new Uint8Array([0, ...ok.subarray(1)])))).toBe('BHTTP_MALFORMED'); // request framing
    expect(code(() => decodeRequest(new Uint8Array([4])))).toBe('BHTTP_MALFORMED'); // unknown framing
    expect(code(() => decodeResponse(new Uint8Array([1, 0x40, 99])))).toBe('BHTTP_MALFORMED'); // status 99
    // A known-length field section whose field line overruns it.
    expect(code(() => decodeResponse(new Uint8Array([1, 0x40, 200, 3, 1, 0x61, 5, 0x62])))).toBe('BHTTP_TRUNCATED');
    expect(code(() => decodeResponse(new Uint8Array([1, 0x40, 200, 2, 0, 0])))).toBe('BHTTP_MALFORMED'); // empty field name
    expect(code(() => encodeResponse({ informational: [], status: 200, headers: [['a', '\u2603']], content: new Uint8Array(), trailers: [] }))).toBe('BHTTP_MALFORMED');
    const d = new ResponseDecoder();
    d.push(responseStream.head(200, []));
    d.push(responseStream.content(te.encode('partial')));
    expect(code(() => d.end())).toBe('BHTTP_TRUNCATED');
    const big = new ResponseDecoder({ maxBuffered: 100 });
    big.push(responseStream.head(200, []).subarray(0, 1));
    expect(code(() => big.push(new Uint8Array([0x40, 200, 0x40, 0xc8, ...new Uint8Array(150).fill(0x61)])))).toBe('BHTTP_TOO_LARGE');
    const k = new ResponseDecoder();
    k.push(ok.subarray(0, ok.length - 2)); // inside known-length content
    expect(code(() => k.end())).toBe('BHTTP_TRUNCATED');
  });
});

describe('varint (RFC 9000 §16)', () => {
  it('round-trips the RFC 9000 Appendix A.1 examples and boundaries', () => {
    // The 8-byte example exceeds 2^53 - 1, the documented limit of this module: refused, never rounded.
    expect(() => readVarint(fromHex('c2197c5eff14e88c'), 0)).toThrow(expect.objectContaining({ code: 'VARINT_RANGE' }));
    expect(readVarint(fromHex('9d7f3e7d'), 0)!.value).toBe(494878333);
    expect(readVarint(fromHex('7bbd'), 0)!.value).toBe(15293);
    expect(readVarint(fromHex('25'), 0)!.value).toBe(37);
    expect(readVarint(fromHex('4025'), 0)!.value).toBe(37);
    for (const v of [0, 63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30, Number.MAX_SAFE_INTEGER]) {
      expect(readVarint(encodeVarint(v), 0)).toEqual({ value: v, next: encodeVarint(v).length });
    }
    expect(readVarint(fromHex('40'), 0)).toBeUndefined();
  });
});
