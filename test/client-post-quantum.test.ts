/**
 * Post-quantum prompts end to end (docs/protocol.md §5.1): the enclave and its workers attest an X-Wing and an X25519
 * key configuration; the SDK seals to X-Wing through the relay (plain and chunked), the enclave to the worker too; a
 * relay that strips the hybrid configuration cannot make the client use X25519; `requirePostQuantum` refuses an
 * enclave without one; without that policy an X25519-only enclave still works (fallback to an attested configuration).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBundle, encodeBundle } from '../attestation/bundle.ts';
import { createClient, type FetchLike } from '../client/index.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { memoryLogger } from '../enclave/log.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { startHost, type RunningHost } from '../host/main.ts';
import { decodeBundleList, encodeBundleList, isBundleList } from '../protocol/bundle-list.ts';
import { KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256 } from '../protocol/hpke.ts';
import { DEFAULT_SYMMETRIC, decodeKeyConfigs, encodeKeyConfigs, generateKeyConfig } from '../protocol/ohttp.ts';
import { generateReceiptKey } from '../protocol/receipt.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { simVendors, simWorkerPolicy, type Stack, startStack } from './stack/harness.ts';

const PROMPT = 'harvest-now-decrypt-later target: merger codename BLUEHERON';
let stack: Stack;
let host: RunningHost;
let dir: string;

beforeAll(async () => {
  stack = await startStack({ workers: [{}] });
  dir = await mkdtemp(join(tmpdir(), 'gm-pq-'));
  host = await startHost({ enclave: stack.enclaveUrl, policy: parseClientPolicy(simPolicyDoc()), allowSim: true, trust: undefined, cacheDir: join(dir, 'cache'), checkIntervalMs: 3_600_000 });
}, 60_000);
afterAll(async () => {
  await host?.close();
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Rec {
  readonly path: string;
  readonly body: Uint8Array;
}

/** A fetch in front of the relay that records every request and may rewrite answers (a hostile relay). */
function relayFetch(rewrite?: (path: string, body: Uint8Array) => Uint8Array): { fetch: FetchLike; log: Rec[] } {
  const log: Rec[] = [];
  const f: FetchLike = async (input, init) => {
    const req = new Request(input, init);
    const path = new URL(req.url).pathname;
    log.push({ path, body: new Uint8Array(await req.clone().arrayBuffer()) });
    const res = await fetch(req);
    if (!rewrite || !res.ok) return res;
    const body = rewrite(path, new Uint8Array(await res.arrayBuffer()));
    return new Response(body as Uint8Array<ArrayBuffer>, { status: res.status, headers: res.headers });
  };
  return { fetch: f, log };
}

const kemOf = (encapsulated: Uint8Array) => (encapsulated[1]! << 8) | encapsulated[2]!;
const hasBytes = (hay: Uint8Array, needle: string) => Buffer.from(hay).includes(Buffer.from(needle));

describe('the served key configuration list', () => {
  it('enclave and worker each attest X-Wing first and X25519 second, with distinct key ids', () => {
    for (const bytes of [stack.enclave.keyConfigs, stack.workers[0]!.worker.keys.keyConfigs]) {
      const cs = decodeKeyConfigs(bytes);
      expect(cs.map((c) => c.kemId)).toEqual([KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256]);
      expect(cs[0]!.publicKey.length).toBe(1216);
      expect(cs[0]!.keyId).not.toBe(cs[1]!.keyId);
    }
  });

  it('rotation replaces both configurations at once and keeps the old pair accepted for one period', async () => {
    const before = decodeKeyConfigs(stack.enclave.keyConfigs);
    await stack.enclave.rotateKeys();
    const after = decodeKeyConfigs(stack.enclave.keyConfigs);
    expect(after.map((c) => c.kemId)).toEqual([KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256]);
    const ids = [...before, ...after].map((c) => c.keyId);
    expect(new Set(ids).size).toBe(4); // every accepted key has its own id
    for (const [i, c] of after.entries()) expect(c.publicKey).not.toEqual(before[i]!.publicKey);
  });
});

describe('SDK through the relay on X-Wing', () => {
  it('seals every request to X-Wing (plain and chunked), never reads the unattested list, and streams the answer', async () => {
    const { fetch: f, log } = relayFetch();
    const c = await createClient({ url: stack.enclaveUrl, relay: host.url, allowSim: true, fetch: f, policy: { ...simPolicyDoc(), requirePostQuantum: true } });
    expect(c.verification.checks.find((x) => x.id === 'client.key-config')?.detail).toContain('MLKEM768-X25519');
    const model = stack.workers[0]!.modelName;
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: 'sk-pq', fetch: c.fetch, maxRetries: 0 });
    const r = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 8 });
    expect(r.choices[0]!.message.content).toBe(devAnswer(model, 8));
    const s = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 8, stream: true });
    const parts: string[] = [];
    for await (const ch of s) parts.push(ch.choices[0]?.delta?.content ?? '');
    expect(parts.join('')).toBe(devAnswer(model, 8));
    expect(parts.filter((p) => p).length).toBeGreaterThan(1);

    const gateway = log.filter((x) => x.path === '/v1/ohttp');
    expect(gateway).toHaveLength(2);
    for (const g of gateway) {
      expect(kemOf(g.body)).toBe(KEM_MLKEM768_X25519);
      expect(g.body.length).toBeGreaterThan(7 + 1120);
      expect(hasBytes(g.body, PROMPT)).toBe(false);
    }
    expect(log.some((x) => x.path.includes('ohttp-gateway'))).toBe(false);
  });

  it('the enclave seals to its worker with X-Wing too: the configuration its dispatcher uses is the worker\'s X-Wing one', () => {
    const [w] = stack.enclave.registry.list();
    const workerConfigs = decodeKeyConfigs(stack.workers[0]!.worker.keys.keyConfigs);
    expect(w!.keyConfig.kemId).toBe(KEM_MLKEM768_X25519);
    expect(w!.keyConfig.keyId).toBe(workerConfigs[0]!.keyId);
    expect(w!.keyConfig.publicKey).toEqual(workerConfigs[0]!.publicKey);
  });
});

describe('downgrade: a relay cannot make the client use X25519', () => {
  it('stripping the hybrid configuration from the attested list breaks REPORT_DATA: refused, no request sent', async () => {
    const stripOne = (body: Uint8Array) => {
      const b = decodeBundle(body);
      const x25519Only = decodeKeyConfigs(b.keys.ohttp).filter((c) => c.kemId !== KEM_MLKEM768_X25519);
      expect(x25519Only).toHaveLength(1);
      return encodeBundle({ ...b, keys: { ...b.keys, ohttp: encodeKeyConfigs(x25519Only) } });
    };
    // Through a relay the client asks for every replica's bundle (a list, docs/protocol.md §3.1): strip each.
    const strip = (path: string, body: Uint8Array) => {
      if (path !== '/v1/attestation') return body;
      return isBundleList(body) ? encodeBundleList(decodeBundleList(body).map(stripOne)) : stripOne(body);
    };
    const { fetch: f, log } = relayFetch(strip);
    // Even without requirePostQuantum: the list the client compares against is the attested one. The SEV-SNP
    // validator compares REPORT_DATA with the binding recomputed from the (stripped) bundle keys and refuses.
    await expect(createClient({ url: stack.enclaveUrl, relay: host.url, allowSim: true, fetch: f })).rejects.toMatchObject({ code: 'SNP_POLICY_REPORT_DATA' });
    expect(log.map((x) => x.path)).toEqual(['/v1/attestation']);
  });

  it('stripping it from /.well-known/ohttp-gateway changes nothing: the client never reads that list', async () => {
    const strip = (path: string, body: Uint8Array) =>
      path === '/.well-known/ohttp-gateway' ? encodeKeyConfigs(decodeKeyConfigs(body).filter((c) => c.kemId !== KEM_MLKEM768_X25519)) : body;
    const { fetch: f, log } = relayFetch(strip);
    const c = await createClient({ url: stack.enclaveUrl, relay: host.url, allowSim: true, fetch: f });
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: 'sk-pq', fetch: c.fetch, maxRetries: 0 });
    await openai.models.list();
    const g = log.filter((x) => x.path === '/v1/ohttp');
    expect(g).toHaveLength(1);
    expect(kemOf(g[0]!.body)).toBe(KEM_MLKEM768_X25519);
  });

  it('a relay that refuses X-Wing requests as a key mismatch gets one re-attestation and one X-Wing retry, never X25519', async () => {
    const log: Rec[] = [];
    const f: FetchLike = async (input, init) => {
      const req = new Request(input, init);
      const path = new URL(req.url).pathname;
      const body = new Uint8Array(await req.clone().arrayBuffer());
      log.push({ path, body });
      if (path === '/v1/ohttp' && kemOf(body) === KEM_MLKEM768_X25519) {
        // What the gateway answers for an unknown key id (RFC 9458 §6.2), forged by the relay. The served ids are
        // random, so pick one the enclave does not serve: a served id would get a decryption error instead.
        const served = decodeKeyConfigs(new Uint8Array(await (await fetch(`${host.url}/.well-known/ohttp-gateway`)).arrayBuffer())).map((k) => k.keyId);
        const unknown = [...Array(256).keys()].find((id) => !served.includes(id))!;
        const g = await fetch(`${host.url}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: Uint8Array.of(unknown, 0, 0x20, 0, 1, 0, 1) });
        return new Response(await g.arrayBuffer(), { status: g.status, headers: g.headers });
      }
      return fetch(req);
    };
    const c = await createClient({ url: stack.enclaveUrl, relay: host.url, allowSim: true, fetch: f });
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: 'sk-pq', fetch: c.fetch, maxRetries: 0 });
    await expect(openai.models.list()).rejects.toThrow();
    const g = log.filter((x) => x.path === '/v1/ohttp');
    expect(g).toHaveLength(2);
    for (const x of g) expect(kemOf(x.body)).toBe(KEM_MLKEM768_X25519);
    expect(log.filter((x) => x.path === '/v1/attestation')).toHaveLength(2);
  });
});

describe('an enclave that lists X25519 only', () => {
  let e: Enclave;
  let f: FetchLike;
  beforeAll(async () => {
    const { amd } = await simVendors();
    const g = await generateKeyConfig(7, DEFAULT_SYMMETRIC, { kemId: KEM_X25519_HKDF_SHA256 });
    e = await createEnclave({
      tee: simProvider({ amd }),
      log: memoryLogger('enclave').log,
      keys: { gateway: [g], keyConfigs: encodeKeyConfigs([g.config]), receipt: await generateReceiptKey() },
      workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 },
    });
    f = async (input, init) => e.app.request(new Request(input, init));
  });
  afterAll(async () => {
    await e?.close();
  });

  it('is refused under requirePostQuantum (POST_QUANTUM_REQUIRED), with the check in the report', async () => {
    const err = await createClient({ url: 'http://enclave.test', allowSim: true, fetch: f, policy: { ...simPolicyDoc(), requirePostQuantum: true } }).catch((x: unknown) => x);
    expect(err).toMatchObject({ code: 'POST_QUANTUM_REQUIRED' });
    const report = (err as { report?: { checks: { id: string; status: string }[] } }).report;
    if (report) expect(report.checks.find((c) => c.id === 'client.key-config')?.status).toBe('fail');
  });

  it('is used over X25519 without that policy: the fallback is a configuration of the attested list', async () => {
    const c = await createClient({ url: 'http://enclave.test', allowSim: true, fetch: f });
    expect(c.verification.checks.find((x) => x.id === 'client.key-config')?.detail).toContain('key id 7, DHKEM(X25519)');
  });

  it('the policy field is strict: only true or false', () => {
    expect(() => parseClientPolicy({ ...simPolicyDoc(), requirePostQuantum: 'yes' })).toThrow(expect.objectContaining({ code: 'POLICY_INVALID' }));
    expect(parseClientPolicy({ ...simPolicyDoc(), requirePostQuantum: true }).requirePostQuantum).toBe(true);
    expect(parseClientPolicy(simPolicyDoc()).requirePostQuantum).toBe(false);
  });
});
