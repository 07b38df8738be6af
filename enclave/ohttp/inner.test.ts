/**
 * The inner exchange without web objects (inner.ts) and the gateway driving an InnerService: field lookup as fetch's
 * Headers does it, sources and their web-stream adapters, the response size limit, and chunked framing (the head,
 * one sealed chunk per content piece, the final chunk; nothing after a cancel).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Field } from '../../protocol/bhttp.ts';
import { decodeResponse, encodeRequest, ResponseDecoder } from '../../protocol/bhttp.ts';
import { encapsulateChunkedRequest } from '../../protocol/chunked.ts';
import { encapsulateRequest, generateKeyConfig } from '../../protocol/ohttp.ts';
import { ReplayCache } from '../../protocol/replay.ts';
import { handleOhttp } from './gateway.ts';
import { answerOf, type BodySource, fieldValue, type InnerService, readSource, responseOf, sourceOf, streamOf } from './inner.ts';
import { bhttpRequest } from './messages.ts';

const te = new TextEncoder();
const td = new TextDecoder();

/** A source over fixed pieces that records whether it was cancelled. */
function pieces(ps: readonly Uint8Array[]): BodySource & { cancelled: boolean; reads: number } {
  let i = 0;
  const s = {
    cancelled: false,
    reads: 0,
    async read() {
      s.reads++;
      return s.cancelled ? undefined : ps[i++];
    },
    async cancel() {
      s.cancelled = true;
    },
  };
  return s;
}

const fieldName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,8}$/);
const fieldVal = fc.stringMatching(/^[\t\x20-\x7e]{0,12}$/);

describe('fieldValue', () => {
  it('gives what fetch Headers.get gives for any fields and any name', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('authorization', 'Authorization', 'x-a'), fieldVal)), fc.array(fc.tuple(fieldName, fieldVal)), (named, other) => {
        const fields: Field[] = [...named, ...other];
        const h = new Headers();
        for (const [k, v] of fields) h.append(k, v);
        for (const name of ['authorization', 'x-a', ...other.map(([k]) => k.toLowerCase())]) expect(fieldValue(fields, name) ?? null).toBe(h.get(name));
      }),
    );
  });
});

describe('sources', () => {
  it('readSource joins the pieces, and refuses more than the limit (TOO_LARGE) after cancelling the source', async () => {
    expect(td.decode(await readSource(pieces([te.encode('ab'), te.encode('cd')]), 4))).toBe('abcd');
    const over = pieces([te.encode('ab'), te.encode('cde')]);
    await expect(readSource(over, 4)).rejects.toMatchObject({ code: 'TOO_LARGE' });
    expect(over.cancelled).toBe(true);
  });

  it('a web stream and a source carry the same non-empty pieces both ways', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 16 }), { maxLength: 8 }), async (ps) => {
        const src = sourceOf(streamOf(pieces(ps)));
        const out: Uint8Array[] = [];
        for (let v = await src.read(); v !== undefined; v = await src.read()) out.push(v);
        expect(out).toEqual(ps.filter((p) => p.length > 0));
      }),
    );
  });

  it('an answer survives the trip through a fetch Response and back (fields lower-cased, framing fields dropped)', async () => {
    const a = answerOf(responseOf({ status: 201, headers: [['content-type', 'application/json'], ['gm-receipt', 'r']], content: te.encode('{"a":1}') }));
    expect(a.status).toBe(201);
    expect(a.headers).toEqual([['content-type', 'application/json'], ['gm-receipt', 'r']]);
    expect(td.decode(await readSource(a.body!, 100))).toBe('{"a":1}');
    expect(answerOf(new Response(te.encode('x'), { headers: { 'Content-Length': '1', 'X-B': 'b' } })).headers).toEqual([['x-b', 'b']]);
  });
});

/** The gateway with an InnerService, through its fetch-style entry (handleOhttp). */
async function gateway(service: InnerService, maxResponseBytes?: number) {
  const key = await generateKeyConfig(3);
  const replay = new ReplayCache({ maxEntries: 100, windowMs: 60_000 });
  const outcomes: string[] = [];
  const post = (body: Uint8Array, type: string) =>
    handleOhttp(new Request('https://gm.test/v1/ohttp', { method: 'POST', headers: { 'content-type': type }, body: body as Uint8Array<ArrayBuffer> }), {
      keys: () => [key],
      replay,
      service,
      maxRequestBytes: 1 << 20,
      ...(maxResponseBytes !== undefined ? { maxResponseBytes } : {}),
      onDone: (x) => void outcomes.push(x),
    });
  return { key, post, outcomes };
}

describe('gateway with an inner service', () => {
  it('hands the service the checked fields and bytes, without the request time field, and seals its whole answer', async () => {
    const seen: string[] = [];
    const g = await gateway(async (req) => {
      seen.push(`${req.method} ${req.path} ${req.headers.map(([k]) => k).join(',')} ${td.decode(req.content)}`);
      return { status: 202, headers: [['content-type', 'application/json']], content: te.encode('{"ok":true}') };
    });
    const inner = bhttpRequest('POST', '/v1/x?y=1', [['content-type', 'application/json'], ['gm-sent-at', '1']], te.encode('{"q":1}'));
    const { encapsulated, context } = await encapsulateRequest(g.key.config, encodeRequest(inner));
    const r = await g.post(encapsulated, 'message/ohttp-req');
    const { response } = decodeResponse(await context.openResponse(new Uint8Array(await r.arrayBuffer())));
    expect(response.status).toBe(202);
    expect(response.headers).toEqual([['content-type', 'application/json']]);
    expect(td.decode(response.content)).toBe('{"ok":true}');
    expect(seen).toEqual(['POST /v1/x?y=1 content-type {"q":1}']);
    expect(g.outcomes).toEqual(['ok']);
  });

  it('refuses a streamed answer over the response limit of a non-chunked exchange (RESPONSE_TOO_LARGE), cancelling it', async () => {
    const src = pieces([new Uint8Array(60), new Uint8Array(60)]);
    const g = await gateway(async () => ({ status: 200, headers: [], body: src }), 100);
    const { encapsulated } = await encapsulateRequest(g.key.config, encodeRequest(bhttpRequest('POST', '/v1/x', [], te.encode('{}'))));
    await expect(g.post(encapsulated, 'message/ohttp-req')).rejects.toMatchObject({ code: 'RESPONSE_TOO_LARGE' });
    expect(src.cancelled).toBe(true);
    expect(g.outcomes).toEqual(['error']);
    // A whole answer over the limit is refused the same way.
    const w = await gateway(async () => ({ status: 200, headers: [], content: new Uint8Array(101) }), 100);
    const e2 = await encapsulateRequest(w.key.config, encodeRequest(bhttpRequest('POST', '/v1/x', [], te.encode('{}'))));
    await expect(w.post(e2.encapsulated, 'message/ohttp-req')).rejects.toMatchObject({ code: 'RESPONSE_TOO_LARGE' });
  });

  it('frames a chunked answer as the head, one chunk per piece (empty pieces skipped), then the final chunk', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }), async (ps) => {
        const g = await gateway(async () => ({ status: 200, headers: [['content-type', 'text/event-stream']], body: pieces(ps) }));
        const sender = await encapsulateChunkedRequest(g.key.config);
        const body = await sender.sealChunk(encodeRequest(bhttpRequest('POST', '/v1/s', [], te.encode('{}'))), { final: true });
        const r = await g.post(body, 'message/ohttp-chunked-req');
        expect(r.headers.get('incremental')).toBe('?1');
        const opener = sender.openResponse();
        const chunks = [...(await opener.push(new Uint8Array(await r.arrayBuffer()))), ...(await opener.end())];
        // One chunk for the head, one per non-empty piece, one final (empty end of content).
        expect(chunks.length).toBe(2 + ps.filter((p) => p.length > 0).length);
        const dec = new ResponseDecoder();
        const events = [...chunks.flatMap((c) => dec.push(c)), ...dec.end()];
        expect(events[0]).toMatchObject({ type: 'head', status: 200 });
        const content = events.filter((e) => e.type === 'content').map((e) => (e as { data: Uint8Array }).data);
        expect(Buffer.concat(content)).toEqual(Buffer.concat(ps));
        expect(g.outcomes).toEqual(['ok']);
      }),
      { numRuns: 20 },
    );
  });

  it('a cancelled chunked answer cancels the service and seals nothing more', async () => {
    const src = pieces([te.encode('a'), te.encode('b'), te.encode('c')]);
    const g = await gateway(async () => ({ status: 200, headers: [], body: src }));
    const sender = await encapsulateChunkedRequest(g.key.config);
    const body = await sender.sealChunk(encodeRequest(bhttpRequest('POST', '/v1/s', [], te.encode('{}'))), { final: true });
    const reader = (await g.post(body, 'message/ohttp-chunked-req')).body!.getReader();
    await reader.read(); // the head
    await reader.read(); // 'a'
    await reader.cancel();
    expect(src.cancelled).toBe(true);
    expect(g.outcomes).toEqual(['cancelled']);
    expect(src.reads).toBe(1);
  });
});
