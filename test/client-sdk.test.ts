/**
 * The SDK against a scripted gateway (host/testing/mini-enclave.ts): no transport before trust (every request the
 * SDK makes is recorded), the openai package unchanged on top of client.fetch, receipts, and key mismatch handling
 * (re-attest once, retry once, never more).
 */
import OpenAI from 'openai';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSimAmd, type SimAmd } from '../attestation/sevsnp/sim.ts';
import { createClient, type FetchLike } from '../client/index.ts';
import { SIM_MEASUREMENT_HEX } from '../client/policy.ts';
import { SIM_MEASUREMENT } from '../enclave/tee/sim.ts';
import { listen, type Listening } from '../host/serve.ts';
import { MINI_TOKENS, type MiniEnclave, startMiniEnclave } from '../host/testing/mini-enclave.ts';

const PROMPT = 'my secret prompt about project nightingale';
const API_KEY = 'sk-very-secret-key-123';

interface Rec {
  method: string;
  url: string;
  status: number;
  body: Uint8Array;
  headers: string;
}

let mini: MiniEnclave;
let server: Listening;
let log: Rec[];
let recording: FetchLike;

let amd: SimAmd;
beforeAll(async () => {
  amd = await createSimAmd({ product: 'Genoa' });
});
beforeEach(async () => {
  mini = await startMiniEnclave({ amd });
  server = await listen(mini.app.fetch);
  log = [];
  recording = async (input, init) => {
    const req = new Request(input, init);
    const body = new Uint8Array(await req.clone().arrayBuffer());
    const res = await fetch(req);
    log.push({ method: req.method, url: req.url.replace(server.url, ''), status: res.status, body, headers: JSON.stringify([...req.headers]) });
    return res;
  };
});
afterEach(async () => {
  await server.close();
});

const contains = (hay: Uint8Array, needle: string): boolean => Buffer.from(hay).includes(Buffer.from(needle));
const shape = () => log.map((r) => `${r.method} ${r.url.replace(/nonce=[0-9a-f]{64}/, 'nonce=N')} ${r.status}`);

describe('client SDK: no transport before trust', () => {
  it('the sim policy pins the sim provider measurement', () => {
    expect(SIM_MEASUREMENT_HEX).toBe(Buffer.from(SIM_MEASUREMENT).toString('hex'));
  });

  it('verifies with its own fresh nonce before exposing fetch, and reports every check', async () => {
    const c = await createClient({ url: server.url, allowSim: true, fetch: recording });
    expect(shape()).toEqual(['GET /v1/attestation?nonce=N 200']);
    const c2 = await createClient({ url: server.url, allowSim: true, fetch: recording });
    expect(log[0]!.url).not.toBe(log[1]!.url); // a new nonce per session
    expect(c.verification.verified).toBe(true);
    const ids = c.verification.checks.map((r) => r.id);
    for (const id of ['client.platform', 'bundle.sim-root', 'bundle.nonce', 'bundle.cpu', 'bundle.report-data', 'client.key-config']) expect(ids).toContain(id);
    expect(c.claims.sim).toBe(true);
    expect(c.claims.cpu.measurement).toBe(SIM_MEASUREMENT_HEX);
    expect(c2.baseURL).toBe(`${server.url}/v1`);
  });

  it('sends nothing that could carry a prompt when the measurement is not in the policy', async () => {
    mini.measurement = new Uint8Array(48).fill(0x11);
    const err = await createClient({ url: server.url, allowSim: true, fetch: recording }).catch((e) => e);
    expect(err.code).toBe('SNP_POLICY_MEASUREMENT');
    expect(err.report.verified).toBe(false);
    expect(shape()).toEqual(['GET /v1/attestation?nonce=N 200']);
  });

  it('refuses sim evidence unless allowed, and needs a policy', async () => {
    const policy = { 'sev-snp': { measurements: [SIM_MEASUREMENT_HEX], allowDebug: false } };
    expect((await createClient({ url: server.url, policy, fetch: recording }).catch((e) => e)).code).toBe('SIM_NOT_ALLOWED');
    expect((await createClient({ url: server.url, fetch: recording }).catch((e) => e)).code).toBe('POLICY_REQUIRED');
    expect((await createClient({ url: server.url, policy: { tdx: { mrTd: ['00'.repeat(48)] } }, allowSim: true, fetch: recording }).catch((e) => e)).code).toBe('PLATFORM_NOT_ALLOWED');
    expect(log.every((r) => r.method === 'GET' && r.url.startsWith('/v1/attestation?nonce='))).toBe(true);
  });

  it('detects evidence made for another nonce (a replaying relay)', async () => {
    let first: Uint8Array | undefined;
    const replaying: FetchLike = async (input, init) => {
      const res = await recording(input, init);
      const b = new Uint8Array(await res.arrayBuffer());
      first ??= b;
      return new Response(first as Uint8Array<ArrayBuffer>, { status: res.status, headers: res.headers });
    };
    await createClient({ url: server.url, allowSim: true, fetch: replaying });
    const err = await createClient({ url: server.url, allowSim: true, fetch: replaying }).catch((e) => e);
    expect(err.code).toBe('NONCE_MISMATCH');
    expect(log.filter((r) => r.method === 'POST')).toEqual([]);
  });
});

describe('client SDK: the openai package over client.fetch', () => {
  it('non-streaming: the answer, a verified receipt, and only ciphertext on the wire', async () => {
    const c = await createClient({ url: server.url, allowSim: true, fetch: recording });
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: API_KEY, fetch: c.fetch, maxRetries: 0 });
    const r = await openai.chat.completions.create({ model: 'dev-small', messages: [{ role: 'user', content: PROMPT }] });
    expect(r.choices[0]!.message.content).toBe(MINI_TOKENS.join(''));
    expect(mini.seen).toEqual(['/v1/chat/completions']);
    expect(c.receipts.length).toBe(1);
    expect(c.receipts[0]!.receipt.model).toBe('dev-small');
    expect(shape()).toEqual(['GET /v1/attestation?nonce=N 200', 'POST /v1/ohttp 200']);
    for (const rec of log) {
      for (const secret of [PROMPT, 'nightingale', API_KEY, 'dev-small']) {
        expect(contains(rec.body, secret)).toBe(false);
        expect(rec.headers.includes(secret)).toBe(false);
      }
    }
    expect(JSON.parse(log[1]!.headers)).toEqual(expect.arrayContaining([['content-type', 'message/ohttp-req']]));
  });

  it('streaming: tokens arrive through chunked OHTTP, the receipt event is consumed by the SDK', async () => {
    const c = await createClient({ url: server.url, allowSim: true, fetch: recording });
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: API_KEY, fetch: c.fetch, maxRetries: 0 });
    const stream = await openai.chat.completions.create({ model: 'dev-small', messages: [{ role: 'user', content: PROMPT }], stream: true });
    const parts: string[] = [];
    for await (const chunk of stream) {
      expect(chunk.choices).toBeDefined();
      parts.push(chunk.choices[0]?.delta?.content ?? '');
    }
    expect(parts).toEqual(MINI_TOKENS);
    expect(c.receipts.length).toBe(1);
    expect(c.receipts[0]!.receipt.outputTokens).toBe(MINI_TOKENS.length);
    expect(JSON.parse(log[1]!.headers)).toEqual(expect.arrayContaining([['content-type', 'message/ohttp-chunked-req']]));
    for (const rec of log) expect(contains(rec.body, PROMPT)).toBe(false);
  });
});

describe('client SDK: the stream hash chain in the receipt', () => {
  it.each([['drop', 'dropped'], ['reorder', 'reordered'], ['alter', 'altered']] as const)('a %s: a %s chunk after decryption is caught from the receipt (RECEIPT_STREAM_MISMATCH)', async (fault, _label) => {
    const c = await createClient({ url: server.url, allowSim: true });
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: API_KEY, fetch: c.fetch, maxRetries: 0 });
    mini.streamFault = fault;
    try {
      const stream = await openai.chat.completions.create({ model: 'dev-small', messages: [{ role: 'user', content: PROMPT }], stream: true });
      const read = async () => {
        for await (const _ of stream) {
          // the tokens arrive; the receipt at the end is what must not be accepted
        }
      };
      await expect(read()).rejects.toThrow(/RECEIPT_STREAM_MISMATCH|not the one the enclave signed/);
      expect(c.receipts.length).toBe(0);
    } finally {
      mini.streamFault = undefined;
    }
  });
});

describe('client SDK: where client.fetch sends', () => {
  it('refuses a request for another origin without sending anything', async () => {
    const c = await createClient({ url: server.url, allowSim: true, fetch: recording });
    const err = await c.fetch('https://api.openai.com/v1/chat/completions', { method: 'POST', body: PROMPT }).catch((e) => e);
    expect(err.code).toBe('BAD_URL');
    expect(shape()).toEqual(['GET /v1/attestation?nonce=N 200']);
  });
});

describe('client SDK: key configuration mismatch', () => {
  it('re-attests once and retries once when the gateway rotated its key', async () => {
    const c = await createClient({ url: server.url, allowSim: true, fetch: recording });
    const before = c.verification;
    await mini.rotate();
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: API_KEY, fetch: c.fetch, maxRetries: 0 });
    const r = await openai.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: PROMPT }] });
    expect(r.choices[0]!.message.content).toBe(MINI_TOKENS.join(''));
    expect(shape()).toEqual(['GET /v1/attestation?nonce=N 200', 'POST /v1/ohttp 400', 'GET /v1/attestation?nonce=N 200', 'POST /v1/ohttp 200']);
    expect(c.verification).not.toBe(before);
    // The receipt verifies under the new attested receipt key.
    expect(c.receipts.length).toBe(1);
  });

  it('concurrent requests that all meet the rotated key share one re-attestation', async () => {
    const c = await createClient({ url: server.url, allowSim: true, fetch: recording });
    await mini.rotate();
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: API_KEY, fetch: c.fetch, maxRetries: 0 });
    const rs = await Promise.all([1, 2, 3].map(() => openai.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: PROMPT }] })));
    for (const r of rs) expect(r.choices[0]!.message.content).toBe(MINI_TOKENS.join(''));
    expect(log.filter((r) => r.method === 'GET').length).toBe(2);
    expect(log.filter((r) => r.method === 'POST' && r.status === 400).length).toBe(3);
    expect(log.filter((r) => r.method === 'POST' && r.status === 200).length).toBe(3);
  });

  it('gives up after one re-attestation and one retry, with KEY_CONFIG_MISMATCH', async () => {
    const c = await createClient({ url: server.url, allowSim: true, fetch: recording });
    mini.refuseAllKeys = true;
    const err = await c.fetch(`${c.baseURL}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: PROMPT }] }) }).catch((e) => e);
    expect(err.code).toBe('KEY_CONFIG_MISMATCH');
    expect(shape()).toEqual(['GET /v1/attestation?nonce=N 200', 'POST /v1/ohttp 400', 'GET /v1/attestation?nonce=N 200', 'POST /v1/ohttp 400']);
  });

  it('does not send again when re-attestation fails (the new evidence is refused)', async () => {
    const c = await createClient({ url: server.url, allowSim: true, fetch: recording });
    await mini.rotate();
    mini.measurement = new Uint8Array(48).fill(0x22);
    const err = await c.fetch(`${c.baseURL}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [] }) }).catch((e) => e);
    expect(err.code).toBe('SNP_POLICY_MEASUREMENT');
    expect(shape()).toEqual(['GET /v1/attestation?nonce=N 200', 'POST /v1/ohttp 400', 'GET /v1/attestation?nonce=N 200']);
  });
});
