/**
 * Client ↔ host shim ↔ gateway on loopback: the relay forwards only ciphertext (everything it forwards is captured
 * and searched), a tampering relay is detected with the protocol's code, and the shim's gate closes when the
 * enclave's measurement changes.
 */
import { Hono } from 'hono';
import OpenAI from 'openai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSimAmd, type SimAmd } from '../attestation/sevsnp/sim.ts';
import { createClient } from '../client/index.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import { startHost, type RunningHost } from '../host/main.ts';
import { listen, type Listening } from '../host/serve.ts';
import { MINI_TOKENS, type MiniEnclave, startMiniEnclave } from '../host/testing/mini-enclave.ts';

const PROMPT = 'the launch codes are 0000 and the patient is Jane Roe';
const API_KEY = 'sk-relay-test-secret';

let amd: SimAmd;
let mini: MiniEnclave;
let enclave: Listening;
let host: RunningHost;
let dir: string;
const forwarded: { dir: string; path: string; bytes: Uint8Array }[] = [];

beforeAll(async () => {
  amd = await createSimAmd({ product: 'Genoa' });
  mini = await startMiniEnclave({ amd });
  enclave = await listen(mini.app.fetch);
  dir = await mkdtemp(join(tmpdir(), 'gm-host-e2e-'));
  host = await startHost({
    enclave: enclave.url, policy: parseClientPolicy(simPolicyDoc()), allowSim: true, trust: undefined, cacheDir: dir, checkIntervalMs: 3_600_000,
    observe: (d, path, bytes) => forwarded.push({ dir: d, path, bytes: bytes.slice() }),
  });
});
afterAll(async () => {
  await host?.close();
  await enclave?.close();
  await rm(dir, { recursive: true, force: true });
});

const all = () => Buffer.concat(forwarded.map((f) => f.bytes));

describe('through the host relay', () => {
  it('verifies through the relay and streams and answers with the openai package; the relay sees no plaintext', async () => {
    expect(host.gate.status.state).toBe('open');
    const c = await createClient({ url: enclave.url, relay: host.url, allowSim: true });
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: API_KEY, fetch: c.fetch, maxRetries: 0 });
    const r = await openai.chat.completions.create({ model: 'dev-small', messages: [{ role: 'user', content: PROMPT }] });
    expect(r.choices[0]!.message.content).toBe(MINI_TOKENS.join(''));
    const s = await openai.chat.completions.create({ model: 'dev-small', messages: [{ role: 'user', content: PROMPT }], stream: true });
    let text = '';
    for await (const ch of s) text += ch.choices[0]?.delta?.content ?? '';
    expect(text).toBe(MINI_TOKENS.join(''));
    expect(c.receipts.length).toBe(2);

    const paths = new Set(forwarded.map((f) => `${f.dir} ${f.path}`));
    expect(paths).toEqual(new Set(['response /v1/attestation', 'request /v1/ohttp', 'response /v1/ohttp']));
    const seen = all();
    expect(seen.length).toBeGreaterThan(1000);
    // Neither the prompt, the key, the model name, nor any answer token crosses the relay in clear.
    for (const secret of [PROMPT, 'launch codes', 'Jane Roe', API_KEY, 'dev-small', ...MINI_TOKENS.map((t) => t.trim()).filter((t) => t.length > 3), 'chat/completions', 'gm.receipt']) {
      expect(seen.includes(Buffer.from(secret)), secret).toBe(false);
    }
  });

  it('detects a relay that flips one byte of an answer (CHUNKED_DECRYPT_FAILED streamed, OHTTP_DECRYPT_FAILED otherwise)', async () => {
    // A hostile relay: forwards like the shim but flips a byte deep in the chunked response.
    const evil = new Hono();
    evil.all('*', async (c) => {
      const u = new URL(c.req.url);
      const body = c.req.method === 'POST' ? new Uint8Array(await c.req.arrayBuffer()) : undefined;
      const up = await fetch(`${host.url}${u.pathname}${u.search}`, { method: c.req.method, headers: { 'content-type': c.req.header('content-type') ?? '' }, ...(body ? { body } : {}) });
      const bytes = new Uint8Array(await up.arrayBuffer());
      if ((up.headers.get('content-type') ?? '').includes('ohttp-') && u.pathname === '/v1/ohttp') bytes[bytes.length - 40]! ^= 0x01;
      return new Response(bytes, { status: up.status, headers: { 'content-type': up.headers.get('content-type') ?? '' } });
    });
    const l = await listen(evil.fetch);
    try {
      const c = await createClient({ url: enclave.url, relay: l.url, allowSim: true });
      const openai = new OpenAI({ baseURL: c.baseURL, apiKey: API_KEY, fetch: c.fetch, maxRetries: 0 });
      // The evil relay buffers, so the flip may surface at the first read (the openai package then wraps it as its
      // connection error with our GmError as the cause) or mid-iteration: either way the stream fails closed.
      const err = await (async () => {
        const s = await openai.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: PROMPT }], stream: true });
        for await (const _ of s) { /* drain */ }
      })().catch((e) => e);
      expect(err?.code ?? err?.cause?.code).toBe('CHUNKED_DECRYPT_FAILED');
      // The same flip in a non-streaming answer: one opaque decryption failure.
      const e2 = await openai.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: PROMPT }] }).catch((e) => e);
      expect(e2?.code ?? e2?.cause?.code).toBe('OHTTP_DECRYPT_FAILED');
      expect(c.receipts.length).toBe(0);
    } finally {
      await l.close();
    }
  });

  it('detects a relay that swaps in evidence for other keys (REPORT_DATA binding fails before any prompt is sent)', async () => {
    const other = await startMiniEnclave({ amd });
    const evil = new Hono();
    let posts = 0;
    evil.get('/v1/attestation', async (c) => {
      // Real evidence for the caller's nonce from another gateway, with this gateway's keys pasted in.
      const theirs = await (await other.app.request(`/v1/attestation?nonce=${c.req.query('nonce')}`)).arrayBuffer();
      const ours = await (await fetch(`${host.url}/v1/attestation?nonce=${c.req.query('nonce')}`)).arrayBuffer();
      const { decodeBundle, encodeBundle } = await import('../attestation/bundle.ts');
      const t = decodeBundle(new Uint8Array(theirs));
      const o = decodeBundle(new Uint8Array(ours));
      return c.body(encodeBundle({ ...t, keys: o.keys }) as Uint8Array<ArrayBuffer>, 200);
    });
    evil.post('/v1/ohttp', (c) => {
      posts++;
      return c.text('no', 500);
    });
    const l = await listen(evil.fetch);
    try {
      const err = await createClient({ url: enclave.url, relay: l.url, allowSim: true }).catch((e) => e);
      expect(err.code).toBe('SNP_POLICY_REPORT_DATA');
      expect(posts).toBe(0);
    } finally {
      await l.close();
    }
  });
});

describe('host gate', () => {
  it('closes the relay with 503 HOST_GATE_CLOSED when the enclave measurement changes, and reopens when it is restored', async () => {
    mini.measurement = new Uint8Array(48).fill(0x77);
    const st = await host.gate.check();
    expect(st.state).toBe('closed');
    expect(st.error?.code).toBe('SNP_POLICY_MEASUREMENT');
    const r = await fetch(`${host.url}/.well-known/ohttp-gateway`);
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('HOST_GATE_CLOSED');
    const err = await createClient({ url: enclave.url, relay: host.url, allowSim: true }).catch((e) => e);
    expect(err.code).toBe('ATTESTATION_UNAVAILABLE');
    const page = await (await fetch(`${host.url}/`)).text();
    expect(page).toContain('CLOSED');
    expect(page).toContain('SNP_POLICY_MEASUREMENT');

    mini.measurement = new Uint8Array(48).fill(0x5a);
    expect((await host.gate.check()).state).toBe('open');
    expect((await fetch(`${host.url}/.well-known/ohttp-gateway`)).status).toBe(200);
  });

  it('re-verifies periodically on its own, and a check that hangs closes the gate', { timeout: 60_000 }, async () => {
    let hang = false;
    const slow = new Hono();
    slow.all('*', async (c) => {
      if (hang) await new Promise(() => {}); // never answers
      return mini.app.fetch(c.req.raw);
    });
    const l = await listen(slow.fetch);
    const dir2 = await mkdtemp(join(tmpdir(), 'gm-host-periodic-'));
    // checkTimeoutMs bounds every check, not only the hanging one: a normal check (fetch, sign, verify the chain) must
    // finish well inside it, or the gate closes with HOST_GATE_CHECK_TIMEOUT at the wrong moment (the first
    // `open` below). Measured at load average 17 on 2 cores: up to ~0.5 s per check, so 1.5 s was a 3x margin;
    // 4 s is 8x. The hanging check still closes the gate, 4 s later.
    const h = await startHost({ enclave: l.url, policy: parseClientPolicy(simPolicyDoc()), allowSim: true, trust: undefined, cacheDir: dir2, checkIntervalMs: 150, checkTimeoutMs: 4_000 });
    try {
      expect(h.gate.status.state).toBe('open');
      mini.measurement = new Uint8Array(48).fill(0x33);
      await expect.poll(() => `${h.gate.status.state} ${h.gate.status.error?.code}`, { timeout: 10_000, interval: 50 }).toBe('closed SNP_POLICY_MEASUREMENT');
      mini.measurement = new Uint8Array(48).fill(0x5a);
      await expect.poll(() => h.gate.status.state, { timeout: 10_000, interval: 50 }).toBe('open');
      hang = true;
      await expect.poll(() => `${h.gate.status.state} ${h.gate.status.error?.code}`, { timeout: 20_000, interval: 50 }).toBe('closed HOST_GATE_CHECK_TIMEOUT');
    } finally {
      mini.measurement = new Uint8Array(48).fill(0x5a);
      await h.close();
      await l.close();
      await rm(dir2, { recursive: true, force: true });
    }
  });
});
