/**
 * A request that decrypts but is not a valid inner request is answered inside the encryption (a sealed 400 with a
 * code), never with an outer error that would tell the relay decryption succeeded, and the offending bytes (an API
 * key with a stray control character, say) reach no log line. Driven through the whole enclave app.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeStreamed } from '../../client/encap.ts';
import { decodeResponse, encodeRequest } from '../../protocol/bhttp.ts';
import { encapsulateChunkedRequest, openStream } from '../../protocol/chunked.ts';
import { decodeKeyConfigs, encapsulateRequest, type KeyConfig } from '../../protocol/ohttp.ts';
import { simVendors, simWorkerPolicy } from '../../test/stack/harness.ts';
import { createEnclave, type Enclave } from '../app.ts';
import { memoryLogger } from '../log.ts';
import { simProvider } from '../tee/sim.ts';
import { bhttpRequest } from './messages.ts';

const SECRET = 'gm_SECRETKEY-0c9f2e7d41b8a6';
const te = new TextEncoder();
const valid = () => encodeRequest(bhttpRequest('GET', '/v1/models', [['authorization', `Bearer ${SECRET}`]], new Uint8Array()));
const req = (method: string, path: string, headers: [string, string][], trailers: [string, string][] = []) =>
  encodeRequest({ method, scheme: 'https', authority: '', path, headers, content: te.encode('{}'), trailers });

/** Decrypted inner messages that are not valid requests, with the code the sealed answer must carry. */
const CASES: [string, () => Uint8Array, string][] = [
  ['an empty message', () => new Uint8Array(0), 'BHTTP_TRUNCATED'],
  ['a truncated message', () => valid().subarray(0, 12), 'BHTTP_TRUNCATED'],
  ['a response framing indicator', () => Uint8Array.of(1, ...valid().subarray(1)), 'BHTTP_MALFORMED'],
  ['an unknown framing indicator', () => Uint8Array.of(7, ...valid().subarray(1)), 'BHTTP_MALFORMED'],
  ['non-zero bytes after the message', () => Uint8Array.of(...valid(), 0, 0, 9), 'BHTTP_TRAILING'],
  ['a field value with CR LF', () => req('POST', '/v1/chat/completions', [['authorization', `Bearer ${SECRET}\r\nx-injected: 1`]]), 'INNER_FIELD_VALUE_INVALID'],
  ['a field value with NUL', () => req('POST', '/v1/chat/completions', [['authorization', `Bearer ${SECRET}\0`]]), 'INNER_FIELD_VALUE_INVALID'],
  ['a trailer value with LF', () => req('POST', '/v1/chat/completions', [], [['x-key', `${SECRET}\n`]]), 'INNER_FIELD_VALUE_INVALID'],
  ['a field name with a space', () => req('POST', '/v1/chat/completions', [[`x ${SECRET}`, 'v']]), 'INNER_FIELD_NAME_INVALID'],
  ['a method that is not a token', () => req('GE T', '/v1/models', []), 'INNER_METHOD_INVALID'],
  ['a method fetch refuses (CONNECT)', () => req('CONNECT', '/v1/models', []), 'INNER_METHOD_INVALID'],
  ['a method fetch refuses (TRACE)', () => req('TRACE', '/v1/models', []), 'INNER_METHOD_INVALID'],
  ['a path with a space', () => req('GET', `/v1/models ${SECRET}`, []), 'INNER_PATH_INVALID'],
  ['a path that is not origin-form', () => req('GET', `https://x/${SECRET}`, []), 'INNER_PATH_INVALID'],
];

describe('malformed inner requests', () => {
  let e: Enclave;
  let cfg: KeyConfig;
  let lines: string[];
  beforeAll(async () => {
    const { amd } = await simVendors();
    const m = memoryLogger('enclave');
    lines = m.lines;
    e = await createEnclave({ tee: simProvider({ amd }), log: m.log, workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 } });
    cfg = decodeKeyConfigs(e.keyConfigs)[0]!;
  });
  afterAll(async () => {
    await e?.close();
  });

  const problemCode = (content: Uint8Array) => (JSON.parse(new TextDecoder().decode(content)) as { code: string }).code;

  it.each(CASES)('%s is answered inside the encryption (plain OHTTP)', async (_name, inner, code) => {
    const { encapsulated, context } = await encapsulateRequest(cfg, inner());
    const r = await e.app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('message/ohttp-res');
    const { response } = decodeResponse(await context.openResponse(new Uint8Array(await r.arrayBuffer())));
    expect(response.status).toBe(400);
    expect(problemCode(response.content)).toBe(code);
  });

  it.each(CASES)('%s is answered inside the encryption (chunked OHTTP)', async (_name, inner, code) => {
    const sender = await encapsulateChunkedRequest(cfg);
    const body = await sender.sealChunk(inner(), { final: true });
    const r = await e.app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: body as Uint8Array<ArrayBuffer> });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('message/ohttp-chunked-res');
    const opened = await decodeStreamed(r.body!.pipeThrough(openStream(sender.openResponse())));
    expect(opened.head.status).toBe(400);
    const content = new Uint8Array(await new Response(opened.body(async () => undefined)).arrayBuffer());
    expect(problemCode(content)).toBe(code);
  });

  it('a valid request still gets its answer, and no log line or metric carries the rejected bytes', async () => {
    const { encapsulated, context } = await encapsulateRequest(cfg, valid());
    const r = await e.app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
    const { response } = decodeResponse(await context.openResponse(new Uint8Array(await r.arrayBuffer())));
    expect(response.status).toBe(200);
    const rejected = lines.filter((l) => JSON.parse(l).event === 'request.inner_rejected');
    expect(rejected.length).toBe(CASES.length * 2);
    const all = lines.join('') + (await (await e.app.request('/metrics')).text());
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain('SECRETKEY');
    expect(all).not.toContain('"INTERNAL"');
  });
});
