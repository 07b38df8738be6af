/**
 * Worker registry and attestation gate (docs/design.md §1 "worker", §4, §5, §7). A worker is usable only while
 * verified: its evidence bundle (CPU report + GPU reports bound to it by gpuNonceFor(REPORT_DATA), keys bound in
 * REPORT_DATA with role `worker`) passed the worker policy, and a fresh nonce challenge to its URL returned evidence
 * for the same keys within the freshness window. It is re-challenged before the window ends and dropped when that
 * fails or it stops answering. `usable(id)` is the gate the dispatcher checks right before sending plaintext.
 *
 * Evidence is public, so it does not identify the registrant: each registration (URL, models, offers, bundle, time)
 * must be signed by the Ed25519 key bound in the evidence (protocol/registration.ts), recent, and newer than the last
 * one accepted for that worker; and a worker id (a hash of that key) never changes platform or sim status.
 */
import { decodeBundle, type EvidenceBundle } from '../../attestation/bundle.ts';
import { type BundleVerification, verifyBundle, type BundlePolicy } from '../../attestation/bundle-verify.ts';
import { equalBytes, hex, sha256 } from '../../attestation/bytes.ts';
import { GmError, protocolError, rejected, unavailable } from '../../attestation/errors.ts';
import type { GpuCollateral } from '../../attestation/nvidia/index.ts';
import type { TrustStore } from '../../attestation/trust.ts';
import { gpuNonceFor, reportData } from '../../protocol/binding.ts';
import { decodeManifest, type ModelIdentity } from '../../protocol/model-identity.ts';
import { verifyRegistration } from '../../protocol/registration.ts';
import { newCredential } from '../../protocol/worker-auth.ts';
import { chooseKeyConfig, decodeKeyConfigs, type KeyConfig } from '../../protocol/ohttp.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { PooledTransport } from '../dispatch/transport.ts';

export interface WorkerPolicy {
  readonly policy: BundlePolicy;
  readonly allowSim: boolean;
  readonly simRoots?: readonly Uint8Array[];
  readonly trust?: TrustStore;
  /** How long a verification stays valid; re-challenged at half of it. */
  readonly freshnessMs: number;
  /**
   * GPU collateral for worker verification (`gm enclave --collateral`: OCSP and RIMs from the host shim's cache,
   * client/collateral.ts). Verified like any collateral; whether it must be had is the GPU policy's call.
   */
  readonly gpuCollateral?: GpuCollateral;
  /** With allowSim: the sim NVIDIA RIM roots (DER) sim GPUs' RIMs must chain to (tests). */
  readonly simRimRoots?: readonly Uint8Array[];
}

export type WorkerState = 'verified' | 'reverifying';

/**
 * One GPU of a verified worker as the public listing shows it: its verified claims (attestation/nvidia/claims.ts)
 * reduced to what tells an operator which hardware serves (no serial, nonce or measurements).
 */
export interface WorkerGpu {
  readonly arch: string;
  readonly hwmodel: string | undefined;
  readonly driverVersion: string | undefined;
  readonly ccMode: string | undefined;
}

/**
 * Each GPU's identity from its verified device certificate chain: the leaf's serial number (NVIDIA's UEID), hex,
 * prefixed `sim:` for sim GPUs so a sim serial never stands for a real device; undefined when the claims carry none.
 * Kept by the registry only (one GPU, one seller), never listed.
 */
function gpuIdsOf(v: BundleVerification): (string | undefined)[] {
  return v.claims.gpu.map((g) => {
    const d = typeof g.detail === 'object' && g.detail !== null ? (g.detail as Record<string, unknown>) : {};
    const ueid = typeof d.ueid === 'string' && /^[0-9a-fA-F]{1,64}$/.test(d.ueid) ? d.ueid.toLowerCase() : undefined;
    return ueid === undefined ? undefined : `${d.sim === true || v.claims.sim ? 'sim:' : ''}${ueid}`;
  });
}

function gpusOf(v: BundleVerification): WorkerGpu[] {
  const str = (x: unknown): string | undefined => (typeof x === 'string' && x.length > 0 && x.length <= 128 ? x : undefined);
  return v.claims.gpu.map((g) => {
    // The NVIDIA verifier's full claims (attestation/nvidia/claims.ts GpuClaims) travel in `detail`.
    const d = typeof g.detail === 'object' && g.detail !== null ? (g.detail as Record<string, unknown>) : {};
    return { arch: g.arch, hwmodel: str(d.hwmodel), driverVersion: str(d.driverVersion), ccMode: g.devToolsMode ? 'devtools' : g.ccMode ? 'on' : 'off' };
  });
}

export interface VerifiedWorker {
  readonly id: string;
  readonly url: string;
  /** The configuration the enclave seals to: the worker's attested X-Wing one when listed (ohttp.ts chooseKeyConfig). */
  readonly keyConfig: KeyConfig;
  /** The application/ohttp-keys bytes bound in its evidence. */
  readonly keyConfigs: Uint8Array;
  readonly signingKey: Uint8Array;
  /**
   * The secret this enclave authorizes its requests to the worker with (protocol/worker-auth.ts): made at the first
   * registration, kept while the worker stays registered, returned sealed in each registration answer. Never logged.
   */
  readonly credential: Uint8Array;
  readonly sim: boolean;
  readonly platform: string;
  readonly measurement: string;
  /** The signed `time` of the registration accepted last (a replay of an older one is refused). */
  readonly registeredAt: number;
  /** SHA-256 of the challenged bundle's CBOR (receipts cite it). */
  evidenceDigest: Uint8Array;
  models: readonly string[];
  /** The GPUs of the latest verified evidence, in evidence order. */
  gpus: readonly WorkerGpu[];
  /** Their identities (device certificate serials), in the same order: never listed. */
  gpuIds: readonly string[];
  /**
   * The identity of each model as the worker's verified evidence states it (its bundle's model manifest, bound in
   * REPORT_DATA); empty when the bundle carries none. Offers that declare an identity must match it.
   */
  readonly identities: ReadonlyMap<string, ModelIdentity>;
  /** The manifest bytes behind `identities` (a re-challenge must answer with the same). */
  readonly manifest?: Uint8Array;
  offers: readonly Uint8Array[];
  /** The offers of the latest registration the market refused (by index in `offers`), for the registration answer. */
  refusedOffers: readonly OfferRefusal[];
  verifiedAt: number;
  expiresAt: number;
  state: WorkerState;
  readonly transport: PooledTransport;
}

/** A posted offer the market did not take: its index in the registration's `offers` and the refusal code. */
export interface OfferRefusal {
  readonly index: number;
  readonly code: string;
}

export interface Registration {
  readonly url: string;
  readonly bundle: Uint8Array;
  readonly models: readonly string[];
  readonly offers: readonly Uint8Array[];
  /** Unix milliseconds the worker signed it at. */
  readonly time: number;
  /** Ed25519 signature by the evidence-bound worker key over the fields above (protocol/registration.ts). */
  readonly signature: Uint8Array;
}

/** How far a registration's signed time may be from the enclave's clock. */
export const REGISTRATION_SKEW_MS = 5 * 60_000;

/** The network a registry reaches its workers through (the enclave's entry point hands in the process's `fetch`). */
export type RegistryFetch = (input: string, init?: RequestInit) => Promise<Response>;

export interface RegistryOptions {
  readonly policy: WorkerPolicy;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The clock (Unix milliseconds) for registration times, evidence age and the freshness window. */
  readonly now: () => number;
  /** Every request to a worker that `challenge` and `health` do not replace goes through it. */
  readonly fetch: RegistryFetch;
  /** Fetches a worker's bundle for a nonce (default: GET <url>/v1/attestation?nonce= within 30 s, through `fetch`). */
  readonly challenge?: (url: string, nonce: Uint8Array) => Promise<Uint8Array>;
  /** Resolves when the worker at `url` answers its health check (default: GET <url>/healthz within 3 s, through `fetch`). */
  readonly health?: (url: string) => Promise<void>;
  /**
   * How often every worker's health is checked (default 5 s). A worker that fails it is re-challenged at once and
   * dropped when that fails too, so a stopped or crashed worker leaves the verified set within one interval plus
   * a refused connection, not at its next re-challenge minutes later.
   */
  readonly healthIntervalMs?: number;
  /** The transport to a worker's gateway, authorizing each request with the worker's credential. */
  readonly transportFor: (url: string, credential: Uint8Array) => PooledTransport;
  /**
   * Called when a worker becomes usable (again) or leaves: the market mirrors the registry, and answers with the
   * offers it refused, which the registration answer reports.
   */
  readonly onChange?: (event: 'verified' | 'removed', w: VerifiedWorker) => void | readonly OfferRefusal[] | Promise<void | readonly OfferRefusal[]>;
}

export async function defaultHealth(f: RegistryFetch, url: string): Promise<void> {
  const r = await f(`${url.replace(/\/+$/, '')}/healthz`, { signal: AbortSignal.timeout(3_000) });
  await r.body?.cancel().catch(() => undefined);
  if (r.status !== 200) throw unavailable('WORKER_UNHEALTHY', `worker answered its health check with ${r.status}`);
}

export async function defaultChallenge(f: RegistryFetch, url: string, nonce: Uint8Array): Promise<Uint8Array> {
  const r = await f(`${url.replace(/\/+$/, '')}/v1/attestation?nonce=${hex(nonce)}`, { signal: AbortSignal.timeout(30_000) });
  if (r.status !== 200) throw unavailable('WORKER_CHALLENGE_FAILED', `worker answered the challenge with ${r.status}`);
  const b = new Uint8Array(await r.arrayBuffer());
  if (b.length > 1024 * 1024) throw protocolError('BUNDLE_MALFORMED', 'worker bundle too large');
  return b;
}

const sameManifest = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean => (a === undefined ? b === undefined : b !== undefined && equalBytes(a, b));

const workerIdFor = (digest: Uint8Array) => `w-${hex(digest.subarray(0, 8))}`;

export class WorkerRegistry {
  readonly #o: RegistryOptions;
  readonly #workers = new Map<string, VerifiedWorker>();
  readonly #now: () => number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #health: ReturnType<typeof setInterval> | undefined;
  readonly #registrations;

  constructor(o: RegistryOptions) {
    this.#o = o;
    this.#now = o.now;
    this.#registrations = o.metrics.counter('gm_worker_verifications_total', 'Worker verifications by outcome and code', { labels: ['outcome', 'code'] });
    // Public: the worker listing is public anyway.
    o.metrics.gauge('gm_workers', 'Workers by state', {
      labels: ['state'], scope: 'public',
      collect: () => {
        const by: Record<string, number> = { verified: 0, reverifying: 0 };
        for (const w of this.#workers.values()) by[w.state] = (by[w.state] ?? 0) + 1;
        return Object.entries(by).map(([state, v]) => [{ state }, v] as const);
      },
    });
  }

  /** Verifies a worker bundle against the worker policy; `nonce` when it answers our challenge. */
  async verify(bundle: EvidenceBundle, nonce?: Uint8Array): Promise<BundleVerification> {
    const signing = bundle.keys.signing;
    if (!signing) throw rejected('WORKER_ROLE_MISMATCH', 'bundle is not a worker bundle (it binds no signing key)');
    // The model manifest is decoded before it is trusted for anything: a malformed one refuses the bundle.
    if (bundle.models) decodeManifest(bundle.models);
    const rd = await reportData({ role: 'worker', nonce: bundle.nonce, keyConfigs: bundle.keys.ohttp, signingKey: signing, ...(bundle.models ? { models: bundle.models } : {}) });
    const p = this.#o.policy;
    return verifyBundle(bundle, {
      expectedReportData: rd,
      ...(nonce ? { expectedNonce: nonce } : {}),
      expectedGpuNonce: await gpuNonceFor(rd),
      requireGpu: true,
      policy: p.policy,
      allowSim: p.allowSim,
      ...(p.simRoots ? { simRoots: p.simRoots } : {}),
      ...(p.simRimRoots ? { simRimRoots: p.simRimRoots } : {}),
      ...(p.trust ? { trust: p.trust } : {}),
      ...(p.gpuCollateral ? { fetched: { gpu: p.gpuCollateral } } : {}),
      now: new Date(this.#now()),
      maxAgeMs: p.freshnessMs,
    });
  }

  /** Verifies the posted bundle, then challenges the worker's URL with a fresh nonce for the same keys. */
  /**
   * `credential`: adopt this credential instead of keeping or making one (another process of the same enclave
   * accepted the registration first and gave the worker this credential; enclave/cluster.ts).
   */
  async register(reg: Registration, o: { readonly credential?: Uint8Array } = {}): Promise<VerifiedWorker> {
    let url: URL;
    try {
      url = new URL(reg.url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme');
    } catch (e) {
      throw protocolError('WORKER_URL_INVALID', 'worker url must be an http(s) URL', { cause: e });
    }
    try {
      const posted = decodeBundle(reg.bundle);
      const postedKey = posted.keys.signing;
      if (!postedKey) throw rejected('WORKER_ROLE_MISMATCH', 'bundle is not a worker bundle (it binds no signing key)');
      // Before any verification work or outbound challenge: only the holder of the evidence-bound key may register it.
      await verifyRegistration(reg, reg.signature, postedKey);
      const now0 = this.#now();
      if (Math.abs(now0 - reg.time) > REGISTRATION_SKEW_MS) throw rejected('REGISTRATION_STALE', `registration signed ${Math.round((now0 - reg.time) / 1000)} s from the enclave's clock (at most ${REGISTRATION_SKEW_MS / 1000} s)`);
      this.#checkNewer(workerIdFor(await sha256(postedKey)), reg.time); // before the challenge, so a replay costs no outbound request
      const first = await this.verify(posted);
      // A worker with nothing to serve (its model server down, or serving no model) is not a verified worker with
      // zero models: it is refused, saying why, before the enclave spends a challenge on it.
      if (reg.models.length === 0) throw rejected('WORKER_NO_MODELS', 'the worker announces no model: its upstream model server is down or serves none');
      const { bundle, verification, digest } = await this.#challenge(url.href, posted);
      const signingKey = bundle.keys.signing!;
      const id = workerIdFor(await sha256(signingKey));
      const configs = decodeKeyConfigs(bundle.keys.ohttp);
      if (configs.length === 0) throw protocolError('WORKER_KEY_CONFIG', 'worker bundle has no OHTTP key configuration');
      const old = this.#workers.get(id);
      // The key was generated inside the TEE that attested it: the same key on another platform, or moving between
      // sim and hardware, is not the same worker.
      if (old && (old.platform !== bundle.platform || old.sim !== verification.claims.sim)) throw rejected('WORKER_PLATFORM_CHANGED', `worker ${id} is registered as ${old.platform}; a registration may not change its platform or sim status`);
      this.#checkNewer(id, reg.time); // again: another registration of this worker may have completed meanwhile
      const gpus = gpusOf(verification);
      const gpuIds = this.#checkGpus(id, gpuIdsOf(verification));
      const now = this.#now();
      const credential = o.credential ?? old?.credential ?? newCredential();
      const sameTransport = old?.url === url.href.replace(/\/+$/, '') && equalBytes(old.credential, credential);
      const w: VerifiedWorker = {
        id, url: url.href.replace(/\/+$/, ''), keyConfig: chooseKeyConfig(configs), keyConfigs: bundle.keys.ohttp, signingKey, credential, sim: verification.claims.sim, platform: bundle.platform,
        measurement: verification.claims.cpu.measurement, registeredAt: reg.time, evidenceDigest: digest, models: reg.models.slice(0, 64), gpus, gpuIds,
        identities: bundle.models ? decodeManifest(bundle.models) : new Map(), ...(bundle.models ? { manifest: bundle.models } : {}), offers: reg.offers, refusedOffers: [],
        verifiedAt: now, expiresAt: now + this.#o.policy.freshnessMs, state: 'verified',
        transport: sameTransport ? old.transport : this.#o.transportFor(url.href, credential),
      };
      if (old && old.transport !== w.transport) void old.transport.close();
      this.#workers.set(id, w);
      this.#registrations.inc({ outcome: 'verified', code: 'OK' });
      this.#o.log.info('worker.verified', { worker: id, url: w.url, platform: w.platform, sim: w.sim, measurement: w.measurement, expiresAt: new Date(w.expiresAt).toISOString(), checks: first.report.checks.length });
      w.refusedOffers = (await this.#o.onChange?.('verified', w)) ?? [];
      return w;
    } catch (e) {
      const g = e instanceof GmError ? e : unavailable('WORKER_VERIFY_FAILED', 'worker verification failed', { cause: e });
      this.#registrations.inc({ outcome: 'refused', code: g.code });
      const failed = g.report?.checks.find((c) => c.status === 'fail');
      this.#o.log.warn('worker.refused', { url: reg.url, code: g.code, reason: g.message, check: failed?.id });
      throw g;
    }
  }

  /**
   * One GPU, one seller: every GPU of a worker's verified evidence must carry an identity (its device certificate
   * serial, GPU_IDENTITY_MISSING otherwise), appear once, and be held by no other live worker identity
   * (GPU_ALREADY_REGISTERED), so one GPU cannot be offered twice under two worker keys.
   */
  #checkGpus(id: string, ids: readonly (string | undefined)[]): string[] {
    const mine = new Set<string>();
    for (const g of ids) {
      if (g === undefined) throw rejected('GPU_IDENTITY_MISSING', 'a GPU of the evidence carries no device identity (UEID)');
      if (mine.has(g)) throw rejected('GPU_ALREADY_REGISTERED', 'the evidence lists one GPU twice');
      mine.add(g);
    }
    for (const w of this.#workers.values()) {
      if (w.id === id) continue;
      if (w.gpuIds.some((g) => mine.has(g))) throw rejected('GPU_ALREADY_REGISTERED', `a GPU of this evidence is held by another live worker (${w.id})`);
    }
    return [...mine];
  }

  /** A registration must be newer than the last one accepted for the worker: an older one is a replay. */
  #checkNewer(id: string, time: number): void {
    const w = this.#workers.get(id);
    if (w && time <= w.registeredAt) throw rejected('REGISTRATION_REPLAYED', 'a newer registration of this worker was accepted already');
  }

  async #challenge(url: string, expect?: EvidenceBundle) {
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const bytes = await (this.#o.challenge ?? ((u: string, n: Uint8Array) => defaultChallenge(this.#o.fetch, u, n)))(url, nonce);
    const bundle = decodeBundle(bytes);
    if (expect && (!equalBytes(bundle.keys.ohttp, expect.keys.ohttp) || !equalBytes(bundle.keys.signing ?? new Uint8Array(), expect.keys.signing ?? new Uint8Array(1))))
      throw rejected('WORKER_KEYS_CHANGED', 'the worker at this URL answers with other keys than the registered bundle');
    if (expect && !sameManifest(bundle.models, expect.models)) throw rejected('WORKER_MODELS_CHANGED', 'the worker at this URL attests other model identities than the registered bundle');
    const verification = await this.verify(bundle, nonce);
    return { bundle, verification, digest: await sha256(bytes) };
  }

  /** Re-challenges one worker; drops it on any failure (fail closed). */
  async reverify(id: string): Promise<boolean> {
    const w = this.#workers.get(id);
    if (!w) return false;
    w.state = 'reverifying';
    try {
      const { bundle, digest, verification } = await this.#challenge(w.url);
      if (!equalBytes(bundle.keys.ohttp, w.keyConfigs) || !equalBytes(bundle.keys.signing!, w.signingKey))
        throw rejected('WORKER_KEYS_CHANGED', 'worker answers with other keys (restarted?); it must register again');
      if (!sameManifest(bundle.models, w.manifest)) throw rejected('WORKER_MODELS_CHANGED', 'worker attests other model identities now; it must register again');
      const now = this.#now();
      w.evidenceDigest = digest;
      w.gpuIds = this.#checkGpus(id, gpuIdsOf(verification));
      w.gpus = gpusOf(verification);
      w.verifiedAt = now;
      w.expiresAt = now + this.#o.policy.freshnessMs;
      w.state = 'verified';
      this.#registrations.inc({ outcome: 'reverified', code: 'OK' });
      this.#o.log.info('worker.reverified', { worker: id, expiresAt: new Date(w.expiresAt).toISOString() });
      await this.#o.onChange?.('verified', w);
      return true;
    } catch (e) {
      const g = e instanceof GmError ? e : unavailable('WORKER_UNREACHABLE', 'worker did not answer the challenge', { cause: e });
      this.#registrations.inc({ outcome: 'dropped', code: g.code });
      this.#o.log.warn('worker.dropped', { worker: id, code: g.code, reason: g.message });
      await this.remove(id);
      return false;
    }
  }

  async remove(id: string): Promise<void> {
    const w = this.#workers.get(id);
    if (!w) return;
    this.#workers.delete(id);
    await this.#o.onChange?.('removed', w);
    await w.transport.close().catch(() => undefined);
  }

  /** The gate: verified, and inside the freshness window right now. */
  usable(id: string): VerifiedWorker | undefined {
    const w = this.#workers.get(id);
    if (!w || this.#now() >= w.expiresAt) return undefined;
    return w;
  }

  /** Workers usable now, in registration order. */
  list(): VerifiedWorker[] {
    const now = this.#now();
    return [...this.#workers.values()].filter((w) => now < w.expiresAt);
  }

  get size(): number {
    return this.#workers.size;
  }

  /** Re-challenges workers past half their window; drops expired ones. */
  async tick(): Promise<void> {
    const now = this.#now();
    const half = this.#o.policy.freshnessMs / 2;
    await Promise.all(
      [...this.#workers.values()].map(async (w) => {
        if (now >= w.expiresAt) {
          this.#o.log.warn('worker.expired', { worker: w.id });
          await this.remove(w.id);
        } else if (now - w.verifiedAt >= half && w.state === 'verified') await this.reverify(w.id);
      }),
    );
  }

  /** Checks every verified worker's health; one that fails is re-challenged now (and dropped if that fails). */
  async probe(): Promise<void> {
    const health = this.#o.health ?? ((u: string) => defaultHealth(this.#o.fetch, u));
    await Promise.all(
      [...this.#workers.values()].filter((w) => w.state === 'verified').map(async (w) => {
        try {
          await health(w.url);
        } catch (e) {
          const code = e instanceof GmError ? e.code : 'WORKER_UNREACHABLE';
          this.#o.log.warn('worker.unhealthy', { worker: w.id, code });
          if (this.#workers.get(w.id) === w && w.state === 'verified') await this.reverify(w.id);
        }
      }),
    );
  }

  start(intervalMs = Math.max(1_000, Math.floor(this.#o.policy.freshnessMs / 10))): void {
    this.#timer ??= setInterval(() => void this.tick(), intervalMs);
    this.#timer.unref();
    let probing = false;
    this.#health ??= setInterval(() => {
      if (probing) return;
      probing = true;
      void this.probe().finally(() => (probing = false));
    }, this.#o.healthIntervalMs ?? 5_000);
    this.#health.unref();
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#health) clearInterval(this.#health);
    this.#timer = undefined;
    this.#health = undefined;
    await Promise.all([...this.#workers.values()].map((w) => w.transport.close().catch(() => undefined)));
    this.#workers.clear();
  }
}
