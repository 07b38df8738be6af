import { describe, expect, it } from 'vitest';
import { encodeBundle } from '../../attestation/bundle.ts';
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
import { type Registration, WorkerRegistry } from './registry.ts';

async function fixture(freshnessMs = 60_000) {
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
  const reg = new WorkerRegistry({
    policy: { policy: { 'sev-snp': simWorkerPolicy(), tdx: { ...DEFAULT_TDX_POLICY } }, allowSim: true, freshnessMs },
    log,
    metrics: new Metrics(),
    now: () => clock,
    challenge: async (_url, nonce) => {
      challenges++;
      if (answer === 'down') throw new Error('connection refused');
      if (answer === 'other-keys') return encodeBundle(await makeBundle({ tee: simProvider({ amd }), role: 'worker', keyConfigs, signingKey: new Uint8Array(32).fill(1), gpu: simGpuSource({ signer: nvidia }), nonce, now: () => clock }));
      return encodeBundle(await bundle(nonce));
    },
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
  };
}

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
