/**
 * The SDK over a relay fronting several replicas: it verifies every listed bundle for its own nonce, spreads
 * requests across the verified set (round robin), drops a replica whose bundle fails re-attestation while the others
 * keep serving, keeps its set when a re-attestation fails entirely, and re-attests onto the set after a rotation.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeBundle, encodeBundle } from '../attestation/bundle.ts';
import { createSimAmd, type SimAmd } from '../attestation/sevsnp/sim.ts';
import { createClient, type FetchLike } from '../client/index.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import { decodeBundleList, encodeBundleList, isBundleList } from '../protocol/bundle-list.ts';
import { startHost } from '../host/main.ts';
import { listen } from '../host/serve.ts';
import { type MiniEnclave, startMiniEnclave } from '../host/testing/mini-enclave.ts';

const policy = parseClientPolicy(simPolicyDoc());
const cleanup: (() => Promise<void> | void)[] = [];
let amd: SimAmd;
let dir: string;
beforeAll(async () => {
  amd = await createSimAmd({ product: 'Genoa' });
  dir = await mkdtemp(join(tmpdir(), 'gm-client-replicas-'));
});
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function setup(ids: readonly number[]) {
  const rs: { mini: MiniEnclave; url: string }[] = [];
  for (const keyId of ids) {
    const mini = await startMiniEnclave({ amd, keyId });
    const l = await listen(mini.app.fetch);
    cleanup.push(() => l.close());
    rs.push({ mini, url: l.url });
  }
  const h = await startHost({ enclave: rs[0]!.url, replicas: rs.slice(1).map((r) => r.url), policy, allowSim: true, trust: undefined, cacheDir: dir, checkIntervalMs: 3_600_000 });
  cleanup.push(() => h.close());
  return { rs, h };
}

/** A fetch whose replica list answers can be rewritten (a hostile or broken relay), recording every request. */
function relayFetch() {
  const state: { tamper: ((i: number) => boolean) | undefined; log: string[] } = { tamper: undefined, log: [] };
  const f: FetchLike = async (input, init) => {
    const r = await fetch(input, init);
    const u = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    state.log.push(`${init?.method ?? 'GET'} ${u.pathname}${u.searchParams.has('all') ? '?all' : ''}`);
    if (u.pathname !== '/v1/attestation' || !state.tamper) return r;
    const body = new Uint8Array(await r.arrayBuffer());
    if (!isBundleList(body)) return new Response(body, { status: r.status, headers: r.headers });
    const tampered = decodeBundleList(body).map((b, i) => {
      if (!state.tamper!(i)) return b;
      // Another receipt key than the one the evidence binds: the REPORT_DATA binding fails.
      const d = decodeBundle(b);
      const receipt = d.keys.receipt!.slice();
      receipt[0]! ^= 1;
      return encodeBundle({ ...d, keys: { ...d.keys, receipt } });
    });
    return new Response(encodeBundleList(tampered) as Uint8Array<ArrayBuffer>, { status: 200, headers: { 'content-type': 'application/cbor' } });
  };
  return { f, state };
}

const ask = async (c: { fetch: FetchLike; baseURL: string }) => {
  const r = await c.fetch(`${c.baseURL}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'dev-small', messages: [{ role: 'user', content: 'hi' }] }) });
  expect(r.status).toBe(200);
  await r.arrayBuffer();
};

describe('client over replicas', () => {
  it('verifies every listed replica and spreads requests across them round robin', async () => {
    const { rs, h } = await setup([11, 22, 33]);
    const { f, state } = relayFetch();
    const c = await createClient({ url: rs[0]!.url, relay: h.url, allowSim: true, fetch: f });
    expect(state.log).toEqual(['GET /v1/attestation?all']);
    expect(c.replicas.map((r) => r.keyId).sort()).toEqual([11, 22, 33]);
    for (let i = 0; i < 6; i++) await ask(c);
    expect(rs.map((r) => r.mini.seen.length)).toEqual([2, 2, 2]);
    expect(c.receipts).toHaveLength(6);
  });

  it('drops a replica whose bundle fails re-attestation, keeps serving on the rest, and keeps its set when every bundle fails', async () => {
    const { rs, h } = await setup([44, 55, 66]);
    const { f, state } = relayFetch();
    const c = await createClient({ url: rs[0]!.url, relay: h.url, allowSim: true, fetch: f });
    expect(c.replicas).toHaveLength(3);
    state.tamper = (i) => i === 1;
    await c.reattest();
    expect(c.replicas.map((r) => r.keyId).sort()).toEqual([44, 66]);
    for (let i = 0; i < 4; i++) await ask(c);
    expect(rs.map((r) => r.mini.seen.length)).toEqual([2, 0, 2]);
    state.tamper = () => true;
    await expect(c.reattest()).rejects.toMatchObject({ code: 'SNP_POLICY_REPORT_DATA' });
    expect(c.replicas).toHaveLength(2);
    await ask(c);
    // A relay that answers a list tampered in every element gets no request through at creation either.
    const before = state.log.length;
    await expect(createClient({ url: rs[0]!.url, relay: h.url, allowSim: true, fetch: f })).rejects.toMatchObject({ code: 'SNP_POLICY_REPORT_DATA' });
    expect(state.log.slice(before)).toEqual(['GET /v1/attestation?all']);
  });

  it('re-attests the whole set once when a replica rotated its key, then serves from the new set', async () => {
    const { rs, h } = await setup([77, 88]);
    const { f, state } = relayFetch();
    const c = await createClient({ url: rs[0]!.url, relay: h.url, allowSim: true, fetch: f });
    await rs[0]!.mini.rotate();
    await rs[1]!.mini.rotate();
    await ask(c);
    expect(state.log.filter((l) => l.startsWith('GET /v1/attestation'))).toEqual(['GET /v1/attestation?all', 'GET /v1/attestation?all']);
    expect(c.replicas.map((r) => r.keyId).sort()).toEqual([78, 89]);
    await ask(c);
    expect(rs.map((r) => r.mini.seen.length).reduce((a, b) => a + b)).toBe(2);
  });

  it('asks a single enclave (no relay) the ordinary way', async () => {
    const { rs } = await setup([99]);
    const { f, state } = relayFetch();
    const c = await createClient({ url: rs[0]!.url, allowSim: true, fetch: f });
    expect(state.log).toEqual(['GET /v1/attestation']);
    expect(c.replicas).toHaveLength(1);
  });
});
