import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeBundle } from '../../attestation/bundle.ts';
import { fromHex } from '../../attestation/bytes.ts';
import { isGmError } from '../../attestation/errors.ts';
import { encodeKeyConfigs, generateKeyConfig } from '../../protocol/ohttp.ts';
import { generateWorkerKey } from '../../protocol/offer.ts';
import { signRegistration } from '../../protocol/registration.ts';
import { simVendors, simWorkerPolicy } from '../../test/stack/harness.ts';
import { simGpuSource } from '../../worker/gpu.ts';
import { encodeManifest } from '../../protocol/model-identity.ts';
import { testIdentity } from '../../test/market-fixtures.ts';
import { DEFAULT_TDX_POLICY } from '../../attestation/tdx/index.ts';
import { memoryLogger } from '../log.ts';
import { Metrics } from '../metrics.ts';
import { makeBundle } from '../tee/evidence.ts';
import { simProvider } from '../tee/sim.ts';
import { type Registration, type RegistryFetch, WorkerRegistry } from './registry.ts';

/**
 * A registry over sim workers. By default its challenge is a function of the fixture and its network refuses every
 * request; with `network`, it has no challenge or health function of its own and reaches the worker through a fake
 * network (the `fetch` of its options) that serves the worker's attestation and /healthz and records each request.
 */
async function fixture(freshnessMs = 60_000, o: { readonly network?: boolean } = {}) {
  const { amd, nvidia } = await simVendors();
  const keyConfigs = encodeKeyConfigs([(await generateKeyConfig(1)).config]);
  const key = await generateWorkerKey();
  const signingKey = key.publicKey;
  let clock = Date.now();
  // The same worker key, on one sim platform or the other (a registration must not move it between them).
  const tees = { 'sim-sev-snp': simProvider({ amd }), 'sim-tdx': simProvider({ platform: 'sim-tdx' }) };
  let platform: keyof typeof tees = 'sim-sev-snp';
  let models: Uint8Array | undefined;
  const bundle = (nonce?: Uint8Array) => makeBundle({ tee: tees[platform], role: 'worker', keyConfigs, signingKey, gpu: simGpuSource({ signer: nvidia }), now: () => clock, ...(models ? { models } : {}), ...(nonce ? { nonce } : {}) });
  let answer: 'ok' | 'down' | 'other-keys' = 'ok';
  let challenges = 0;
  const { log, lines } = memoryLogger('enclave');
  const closed: string[] = [];
  const challenge = async (nonce: Uint8Array): Promise<Uint8Array> => {
    challenges++;
    if (answer === 'down') throw new Error('connection refused');
    if (answer === 'other-keys') return encodeBundle(await makeBundle({ tee: simProvider({ amd }), role: 'worker', keyConfigs, signingKey: new Uint8Array(32).fill(1), gpu: simGpuSource({ signer: nvidia }), nonce, now: () => clock }));
    return encodeBundle(await bundle(nonce));
  };
  const requests: { url: string; signal: AbortSignal | null | undefined }[] = [];
  const network: RegistryFetch = async (url, init) => {
    if (!o.network) throw new Error(`unexpected request to ${url}`);
    requests.push({ url, signal: init?.signal });
    const u = new URL(url);
    if (u.pathname === '/healthz') return new Response('{}', { status: answer === 'down' ? 503 : 200 });
    if (u.pathname === '/v1/attestation' && answer !== 'down') return new Response(await challenge(fromHex(u.searchParams.get('nonce') ?? '')) as Uint8Array<ArrayBuffer>);
    return new Response(null, { status: 503 });
  };
  const reg = new WorkerRegistry({
    policy: { policy: { 'sev-snp': simWorkerPolicy(), tdx: { ...DEFAULT_TDX_POLICY } }, allowSim: true, freshnessMs },
    log,
    metrics: new Metrics(),
    now: () => clock,
    fetch: network,
    ...(o.network ? {} : { challenge: (_url: string, nonce: Uint8Array) => challenge(nonce) }),
    transportFor: (url) => ({ send: async () => { throw new Error('unused'); }, close: async () => void closed.push(url) }),
  });
  /** A registration signed by the worker key, at the fixture's clock (each one a millisecond later). */
  let signed = 0;
  const registration = async (r: Omit<Registration, 'time' | 'signature'>): Promise<Registration> => {
    const time = Math.max(clock, signed + 1);
    signed = time;
    return { ...r, time, signature: await signRegistration({ ...r, time }, key.privateKey) };
  };
  return {
    reg, bundle, lines, closed, key, registration,
    tick: (ms: number) => { clock += ms; },
    set: (a: typeof answer) => { answer = a; },
    on: (p: typeof platform) => { platform = p; },
    manifest: (m: Uint8Array | undefined) => { models = m; },
    challenges: () => challenges,
    requests: () => requests,
  };
}

describe('worker registry: the network it is given', () => {
  afterEach(() => vi.unstubAllGlobals());

  it("challenges and health-checks a worker through its options' fetch, each request with a timeout, never the global fetch", async () => {
    const global: string[] = [];
    vi.stubGlobal('fetch', async (input: unknown) => {
      global.push(String(input));
      throw new Error('the global fetch was called');
    });
    const f = await fixture(60_000, { network: true });
    const registered = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: ['m'], offers: [] })).catch((e: unknown) => e);
    expect(global).toEqual([]);
    expect(f.requests().map((r) => r.url)).toEqual([expect.stringMatching(/^http:\/\/w1\.test\/v1\/attestation\?nonce=[0-9a-f]{64}$/)]);
    expect(f.reg.usable((registered as { id: string }).id)).toBeDefined();
    await f.reg.probe();
    expect(f.requests().map((r) => r.url).at(-1)).toBe('http://w1.test/healthz');
    // Its answers are the ones acted on: a 503 health check re-challenges the worker, and a failed challenge drops it.
    f.set('down');
    await f.reg.probe();
    expect(f.requests().map((r) => new URL(r.url).pathname).slice(-2)).toEqual(['/healthz', '/v1/attestation']);
    expect(f.lines.some((l) => l.includes('"worker.unhealthy"') && l.includes('WORKER_UNHEALTHY'))).toBe(true);
    expect(f.lines.some((l) => l.includes('"worker.dropped"') && l.includes('WORKER_CHALLENGE_FAILED'))).toBe(true);
    expect(f.reg.size).toBe(0);
    for (const r of f.requests()) expect(r.signal, r.url).toBeInstanceOf(AbortSignal);
    expect(global).toEqual([]);
  });
});

describe('worker registry: model identity in the evidence', () => {
  const fp8 = encodeManifest([{ model: 'm', identity: testIdentity('fp8') }]);
  const bf16 = encodeManifest([{ model: 'm', identity: testIdentity('bf16') }]);

  it('keeps the identities the verified evidence states', async () => {
    const f = await fixture();
    f.manifest(fp8);
    const w = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: ['m'], offers: [] }));
    expect(w.identities.get('m')?.quantization).toBe('fp8');
  });

  it('a manifest swapped into a bundle after its report was made does not match REPORT_DATA and is refused', async () => {
    const f = await fixture();
    f.manifest(fp8);
    const swapped = encodeBundle({ ...(await f.bundle()), models: bf16 });
    const e = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: swapped, models: ['m'], offers: [] })).then(() => undefined, (x: unknown) => x);
    expect(isGmError(e) && e.code).toBe('SNP_POLICY_REPORT_DATA');
    expect(f.reg.size).toBe(0);
  });

  it('a re-challenge answering another manifest drops the worker (WORKER_MODELS_CHANGED)', async () => {
    const f = await fixture(60_000);
    f.manifest(fp8);
    const w = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: ['m'], offers: [] }));
    f.manifest(bf16);
    expect(await f.reg.reverify(w.id)).toBe(false);
    expect(f.lines.some((l) => l.includes('WORKER_MODELS_CHANGED'))).toBe(true);
    expect(f.reg.usable(w.id)).toBeUndefined();
  });
});

describe('worker registry', () => {
  it('verifies a registration (posted bundle + nonce challenge) and gates on the freshness window', async () => {
    const f = await fixture(60_000);
    const w = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: ['m'], offers: [] }));
    expect(f.challenges()).toBe(1);
    expect(f.reg.usable(w.id)).toBeDefined();
    f.tick(60_001);
    expect(f.reg.usable(w.id)).toBeUndefined(); // past the window: never dispatched to, even before the timer runs
    expect(f.reg.list()).toEqual([]);
  });

  it('re-challenges after half the window and extends it; drops a worker that stops answering', async () => {
    const f = await fixture(60_000);
    const w = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: ['m'], offers: [] }));
    f.tick(20_000);
    await f.reg.tick();
    expect(f.challenges()).toBe(1); // not yet half
    f.tick(11_000);
    await f.reg.tick();
    expect(f.challenges()).toBe(2);
    expect(f.reg.usable(w.id)!.expiresAt).toBeGreaterThan(Date.now() + 60_000);
    f.set('down');
    f.tick(31_000);
    await f.reg.tick();
    expect(f.reg.usable(w.id)).toBeUndefined();
    expect(f.closed).toEqual(['http://w1.test/']);
    expect(f.lines.some((l) => l.includes('"worker.dropped"'))).toBe(true);
  });

  it('drops a worker that answers the challenge with other keys, and refuses such a registration', async () => {
    const f = await fixture();
    const w = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: ['m'], offers: [] }));
    f.set('other-keys');
    expect(await f.reg.reverify(w.id)).toBe(false);
    const e = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: ['m'], offers: [] })).catch((x: unknown) => x);
    expect(isGmError(e, 'WORKER_KEYS_CHANGED')).toBe(true);
  });

  it('refuses stale evidence and a bundle that is not a worker bundle', async () => {
    const f = await fixture(60_000);
    const old = encodeBundle(await f.bundle());
    f.tick(61_000);
    expect(isGmError(await f.reg.register(await f.registration({ url: 'http://w.test', bundle: old, models: [], offers: [] })).catch((x: unknown) => x), 'EVIDENCE_STALE')).toBe(true);
    const { amd } = await simVendors();
    const enclaveBundle = encodeBundle(await makeBundle({ tee: simProvider({ amd }), role: 'enclave', keyConfigs: new Uint8Array(4), signingKey: new Uint8Array(32) }));
    expect(isGmError(await f.reg.register(await f.registration({ url: 'http://w.test', bundle: enclaveBundle, models: [], offers: [] })).catch((x: unknown) => x), 'WORKER_ROLE_MISMATCH')).toBe(true);
    expect(isGmError(await f.reg.register(await f.registration({ url: 'ftp://w.test', bundle: old, models: [], offers: [] })).catch((x: unknown) => x), 'WORKER_URL_INVALID')).toBe(true);
  });

  it('refuses a worker that announces no model, saying why, and does not list it', async () => {
    const f = await fixture();
    const e = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: [], offers: [] })).catch((x: unknown) => x);
    expect(isGmError(e, 'WORKER_NO_MODELS')).toBe(true);
    expect((e as Error).message).toMatch(/upstream model server is down or serves none/);
    expect(f.reg.list()).toEqual([]);
  });

  it("refuses a registration that moves a worker id to another platform, and keeps the worker as it was", async () => {
    const f = await fixture();
    const w = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: ['m'], offers: [] }));
    expect(w.platform).toBe('sim-sev-snp');
    f.on('sim-tdx');
    f.tick(1);
    const e = await f.reg.register(await f.registration({ url: 'http://w1.test', bundle: encodeBundle(await f.bundle()), models: ['other'], offers: [] })).catch((x: unknown) => x);
    expect(isGmError(e, 'WORKER_PLATFORM_CHANGED')).toBe(true);
    expect(f.reg.usable(w.id)?.platform).toBe('sim-sev-snp');
    expect(f.reg.usable(w.id)?.models).toEqual(['m']);
  }, 60_000);
});
