/**
 * One host shim in front of several enclave replicas on loopback: each encapsulated request (plain and chunked)
 * reaches the replica serving its key id, an id no replica serves gets the RFC 9458 §6 `ohttp-key` problem,
 * `?all=1` lists every offered replica's bundle for the client's nonce, a replica whose evidence stops passing is
 * dropped while the others keep serving, a rotated key is found by an on-demand re-check, and a key id two replicas
 * drew is routed to the first one while the second is offered to no client.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fromHex, hex } from '../attestation/bytes.ts';
import { createSimAmd, type SimAmd } from '../attestation/sevsnp/sim.ts';
import { attest, type Attestation, verifyEnclaveBundle } from '../client/attest.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import { encryptedFetch } from '../client/transport.ts';
import { decodeBundleList } from '../protocol/bundle-list.ts';
import { MEDIA_PROBLEM_JSON, PROBLEM_TYPE_OHTTP_KEY } from '../protocol/media.ts';
import { startHost } from '../host/main.ts';
import { listen } from '../host/serve.ts';
import { MINI_TOKENS, type MiniEnclave, startMiniEnclave } from '../host/testing/mini-enclave.ts';

const policy = parseClientPolicy(simPolicyDoc());
const cleanup: (() => Promise<void> | void)[] = [];
let amd: SimAmd;
let dir: string;
beforeAll(async () => {
  amd = await createSimAmd({ product: 'Genoa' });
  dir = await mkdtemp(join(tmpdir(), 'gm-host-replicas-'));
});
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function replica(keyId: number): Promise<{ mini: MiniEnclave; url: string }> {
  const mini = await startMiniEnclave({ amd, keyId });
  const l = await listen(mini.app.fetch);
  cleanup.push(() => l.close());
  return { mini, url: l.url };
}

async function shim(urls: readonly string[]) {
  const h = await startHost({ enclave: urls[0]!, replicas: urls.slice(1), policy, allowSim: true, trust: undefined, cacheDir: dir, checkIntervalMs: 3_600_000 });
  cleanup.push(() => h.close());
  return h;
}

/** The replica's own attestation (fetched from it directly), then a transport fixed to it that posts through the relay. */
async function through(relay: string, replicaUrl: string) {
  const a = await attest({ base: replicaUrl, fetch: (i, init) => fetch(i, init), policy, allowSim: true, trust: undefined, now: () => new Date() });
  const receipts: unknown[] = [];
  const f = encryptedFetch({ current: () => a, reattest: async () => a }, { base: relay, origin: replicaUrl, authority: new URL(replicaUrl).host, fetch: (i, init) => fetch(i, init), onReceipt: (r) => receipts.push(r), now: Date.now });
  return { a, f, receipts };
}

const chat = (base: string, stream: boolean) => ({
  url: `${base}/v1/chat/completions`,
  init: { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'dev-small', messages: [{ role: 'user', content: 'hi' }], stream }) },
});

/** Posts an encapsulated request sealed to `a`'s configuration but naming `keyId` in its first byte. */
async function rawPost(relay: string, keyId: number): Promise<Response> {
  const body = new Uint8Array(64);
  body[0] = keyId;
  return fetch(`${relay}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body });
}

describe('relay over several replicas', () => {
  it('routes plain and chunked requests by key id, lists every replica, and answers an unknown id with the ohttp-key problem', async () => {
    const rs = await Promise.all([replica(10), replica(20), replica(30)]);
    const h = await shim(rs.map((r) => r.url));
    expect(h.gate.status.state).toBe('open');
    expect(h.replicas!.replicas.map((r) => [r.keyIds, r.shadowed])).toEqual([[[10], false], [[20], false], [[30], false]]);

    for (const [i, r] of rs.entries()) {
      const t = await through(h.url, r.url);
      const plain = chat(r.url, false);
      const res = await t.f(plain.url, plain.init);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(MINI_TOKENS.join(''));
      const streamed = chat(r.url, true);
      const sres = await t.f(streamed.url, streamed.init);
      expect(await sres.text()).toContain('mini ');
      expect(t.receipts).toHaveLength(2);
      // Only the replica owning the id saw these requests.
      expect(rs.map((o) => o.mini.seen.length)).toEqual(rs.map((_, j) => (j <= i ? 2 : 0)));
    }

    const unknown = await rawPost(h.url, 99);
    expect(unknown.status).toBe(400);
    expect(unknown.headers.get('content-type')).toBe(MEDIA_PROBLEM_JSON);
    expect(((await unknown.json()) as { type: string; code: string })).toMatchObject({ type: PROBLEM_TYPE_OHTTP_KEY, code: 'OHTTP_KEY_CONFIG' });
    expect(rs.every((r) => r.mini.seen.length === 2)).toBe(true);

    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const list = await fetch(`${h.url}/v1/attestation?all=1&nonce=${hex(nonce)}`);
    expect(list.status).toBe(200);
    const bundles = decodeBundleList(new Uint8Array(await list.arrayBuffer()));
    const verified = await Promise.all(bundles.map((b) => verifyEnclaveBundle(b, { nonce, policy, allowSim: true, trust: undefined, now: new Date(), maxAgeMs: policy.maxAgeMs })));
    expect(verified.map((v) => v.keyConfig.keyId).sort()).toEqual([10, 20, 30]);
    // A stale or foreign nonce fails each element: the list is only as fresh as the client's nonce.
    await expect(verifyEnclaveBundle(bundles[0]!, { nonce: fromHex('00'.repeat(32)), policy, allowSim: true, trust: undefined, now: new Date(), maxAgeMs: policy.maxAgeMs })).rejects.toMatchObject({ code: 'NONCE_MISMATCH' });

    expect((await fetch(`${h.url}/v1/attestation?all=2`)).status).toBe(400);
    // A plain attestation request goes to one replica at a time, round robin over the offered ones.
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const a: Attestation = await attest({ base: h.url, fetch: (x, init) => fetch(x, init), policy, allowSim: true, trust: undefined, now: () => new Date() });
      ids.push(a.keyConfig.keyId);
    }
    expect(ids.sort()).toEqual([10, 20, 30]);
  });

  it('drops a replica whose evidence stops passing; the others keep serving', async () => {
    const rs = await Promise.all([replica(40), replica(50)]);
    const h = await shim(rs.map((r) => r.url));
    const t = await through(h.url, rs[1]!.url);
    rs[0]!.mini.measurement = fromHex('11'.repeat(48));
    const st = await h.gate.check();
    expect(st.state).toBe('open');
    expect(h.replicas!.replicas.map((r) => r.status.state)).toEqual(['closed', 'open']);
    expect(h.replicas!.replicas[0]!.status.error?.code).toBe('SNP_POLICY_MEASUREMENT');
    expect((await rawPost(h.url, 40)).headers.get('content-type')).toBe(MEDIA_PROBLEM_JSON);
    expect(rs[0]!.mini.seen).toHaveLength(0);
    const q = chat(rs[1]!.url, false);
    expect((await t.f(q.url, q.init)).status).toBe(200);
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const bundles = decodeBundleList(new Uint8Array(await (await fetch(`${h.url}/v1/attestation?all=1&nonce=${hex(nonce)}`)).arrayBuffer()));
    expect(bundles).toHaveLength(1);
    // The operator sees which replica dropped and why, on the status page and in its JSON.
    const json = (await (await fetch(`${h.url}/status.json`)).json()) as { replicas: { url: string; status: { state: string; error?: { code: string } }; keyIds: number[] }[] };
    expect(json.replicas.map((r) => [r.url, r.status.state, r.status.error?.code, r.keyIds])).toEqual([[rs[0]!.url, 'closed', 'SNP_POLICY_MEASUREMENT', [40]], [rs[1]!.url, 'open', undefined, [50]]]);
    const page = await (await fetch(`${h.url}/`)).text();
    expect(page).toContain('<table id="replicas"');
    expect(page).toContain('SNP_POLICY_MEASUREMENT');
    // Every replica failing closes the relay.
    rs[1]!.mini.measurement = fromHex('11'.repeat(48));
    expect((await h.gate.check()).state).toBe('closed');
    expect((await fetch(`${h.url}/v1/attestation`)).status).toBe(503);
  });

  it('finds a replica that rotated its key by re-checking on the unknown id', async () => {
    const rs = await Promise.all([replica(60), replica(70)]);
    const h = await shim(rs.map((r) => r.url));
    await rs[1]!.mini.rotate();
    const t = await through(h.url, rs[1]!.url);
    expect(t.a.keyConfig.keyId).toBe(71);
    const q = chat(rs[1]!.url, false);
    expect((await t.f(q.url, q.init)).status).toBe(200);
    expect(h.replicas!.replicas[1]!.keyIds).toEqual([71]);
    expect(h.replicas!.routeFor(70)).toBe(rs[1]!.url); // the previous id still routes to it for its grace period
  });

  it('routes a colliding key id to the first replica and offers the second to no client until it rotates', async () => {
    const rs = await Promise.all([replica(80), replica(80), replica(90)]);
    const h = await shim(rs.map((r) => r.url));
    expect(h.gate.status.state).toBe('open');
    expect(h.replicas!.replicas.map((r) => r.shadowed)).toEqual([false, true, false]);
    expect(h.replicas!.routeFor(80)).toBe(rs[0]!.url);
    expect(h.replicas!.offered()).toEqual([rs[0]!.url, rs[2]!.url]);
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const bundles = decodeBundleList(new Uint8Array(await (await fetch(`${h.url}/v1/attestation?all=1&nonce=${hex(nonce)}`)).arrayBuffer()));
    expect(bundles).toHaveLength(2);
    const direct = (u: string) => attest({ base: u, fetch: (x, init) => fetch(x, init), policy, allowSim: true, trust: undefined, now: () => new Date() });
    const shadowedKey = hex((await direct(rs[1]!.url)).receiptKey);
    for (let i = 0; i < 4; i++) expect(hex((await direct(h.url)).receiptKey)).not.toBe(shadowedKey);
    await rs[1]!.mini.rotate();
    await h.gate.check();
    expect(h.replicas!.replicas.map((r) => r.shadowed)).toEqual([false, false, false]);
    expect(h.replicas!.routeFor(81)).toBe(rs[1]!.url);
    expect(h.replicas!.routeFor(80)).toBe(rs[0]!.url);
    expect(h.replicas!.offered()).toHaveLength(3);
  });

  it('never hands out a bundle whose key id the relay routes elsewhere: a rotation onto a taken id is caught before any client sees it', async () => {
    const rs = await Promise.all([replica(121), replica(120)]);
    const h = await shim(rs.map((r) => r.url));
    const direct = (u: string) => attest({ base: u, fetch: (x, init) => fetch(x, init), policy, allowSim: true, trust: undefined, now: () => new Date() });
    await rs[1]!.mini.rotate(); // 120 -> 121: the id replica 1 serves; the relay has not checked replica 2 since
    const rotatedKey = hex((await direct(rs[1]!.url)).receiptKey);
    expect(h.replicas!.replicas[1]!.keyIds).toEqual([120]);
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const bundles = decodeBundleList(new Uint8Array(await (await fetch(`${h.url}/v1/attestation?all=1&nonce=${hex(nonce)}`)).arrayBuffer()));
    const listed = await Promise.all(bundles.map((b) => verifyEnclaveBundle(b, { nonce, policy, allowSim: true, trust: undefined, now: new Date(), maxAgeMs: policy.maxAgeMs })));
    expect(listed.map((a) => hex(a.receiptKey))).not.toContain(rotatedKey);
    expect(listed).toHaveLength(1);
    // The re-check it triggered found the collision: replica 2 is shadowed until it rotates again.
    expect(h.replicas!.replicas.map((r) => [r.keyIds, r.shadowed])).toEqual([[[121], false], [[121], true]]);
    for (let i = 0; i < 4; i++) expect(hex((await direct(h.url)).receiptKey)).not.toBe(rotatedKey);
  });
});
