/**
 * Runs a worker: the gateway app on a socket, the forwarder to the upstream, and registration with each enclave
 * (POST <enclave>/v1/workers, docs/operator.md), renewed at the interval the enclave asks for and retried with
 * backoff when an enclave is unreachable. A refused registration is logged with its code and retried later (the
 * operator may fix the node), never silently ignored.
 *
 * Each registration starts by attesting the enclave as a client does (client/attest.ts: a fresh nonce, the policy of
 * `--enclave-policy`, the vendor roots of the trust directory, the keys bound in REPORT_DATA); an enclave that fails
 * is not registered with. Its answer must be signed by the receipt key just attested (protocol/registration.ts), so
 * the credential this worker then serves under comes from that enclave and not from whoever sits on the path
 * (docs/protocol.md §12.1).
 *
 * Every request the agent makes (the upstream's models, attestation, registration, cancels) goes through `fetch`, and
 * every time it reads or signs comes from `now`: both are options, defaulted by the caller (worker/main.ts).
 *
 * Withdrawing an offer (docs/market.md): `withdraw(model)` signs a cancel (worker key + hotkey, protocol/offer.ts)
 * and posts it to every enclave (POST <enclave>/v1/workers/<id>/offers/cancel); later registrations omit the offer.
 * An enclave that could not be reached gets the cancel again after its next successful registration; one that
 * refuses it with a code is not asked again (the refusal is logged and returned).
 */
import { fetchFailure } from '../client/net-cause.ts';
import { encodeBundle } from '../attestation/bundle.ts';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { fromBase64, toBase64 } from '../attestation/bytes.ts';
import { configError } from '../attestation/errors.ts';
import type { Logger } from '../enclave/log.ts';
import { serve, type Served } from '../enclave/serve.ts';
import type { GpuEvidenceSource } from '../enclave/tee/evidence.ts';
import type { TeeProvider } from '../enclave/tee/provider.ts';
import { createWorkerApp, generateWorkerKeys, type WorkerKeys } from './app.ts';
import { createForwarder } from './forward.ts';
import type { Shared } from './cluster.ts';
import type { GatewayKeySet } from '../enclave/keys.ts';
import { offerIdFor, type OfferSigner, type SignedCancel } from './offers.ts';
import { signRegistration, verifyRegistrationAnswer } from '../protocol/registration.ts';
import { attest, type FetchLike } from '../client/attest.ts';
import { type ClientPolicy, parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import type { TrustStore } from '../attestation/trust.ts';
import { encodeManifest, type ModelIdentity } from '../protocol/model-identity.ts';

/** Signs the offers posted with each registration; an OfferSigner (worker/offers.ts) can also withdraw them. */
export type OfferSource = ((keys: WorkerKeys, models: readonly string[]) => Promise<readonly Uint8Array[]>) & Partial<Pick<OfferSigner, 'withdraw' | 'restore'>>;

/** One enclave's answer to a withdrawal: removed = a live version left its book. */
export type WithdrawOutcome =
  | { readonly enclave: string; readonly ok: true; readonly removed: boolean }
  | { readonly enclave: string; readonly ok: false; readonly code: string; readonly pending: boolean };

export interface WorkerOptions {
  readonly upstream: string;
  readonly enclaves: readonly string[];
  readonly tee: TeeProvider;
  readonly gpu: GpuEvidenceSource;
  readonly log: Logger;
  readonly listen?: string;
  /** The URL enclaves reach this worker at (default: the listening URL). */
  readonly publicUrl?: string;
  /** Models to announce (default: the upstream's GET /v1/models). */
  readonly models?: readonly string[];
  /** Signed offers to post with the registration (the market, docs/market.md). */
  readonly offers?: OfferSource;
  readonly keys?: WorkerKeys;
  /** Gateway exchanges served at once (default 64); past it requests are refused as busy. */
  readonly maxConcurrentStreams?: number;
  /**
   * What serves each model (weights digest, quantization, engine, context length, parameters): stated in the
   * evidence's model manifest, bound in REPORT_DATA, so offers that repeat it are taken. Undefined for a model: none.
   */
  readonly identity?: (model: string) => ModelIdentity | undefined;
  /** OHTTP key rotation period (default 1 h); each rotation is followed by re-registration with every enclave. */
  readonly keyRotationMs?: number;
  /**
   * The enclaves this worker registers with (`--enclave-policy FILE`, the client policy format). Required with a real
   * TEE; under a sim TEE it defaults to the sim measurement, and sim evidence is accepted only then.
   */
  readonly enclavePolicy?: ClientPolicy;
  /**
   * The pinned vendor anchors the enclaves' evidence is verified against (the trust directory, worker/main.ts).
   * Required with a real TEE; under a sim TEE only a real enclave's evidence needs it.
   */
  readonly trust?: TrustStore;
  /** Every request the agent makes: the upstream's model list, attestation, registration and cancels. */
  readonly fetch: FetchLike;
  /** The time attestation is checked at and registrations are signed with. */
  readonly now: () => Date;
}

export interface RunningWorker {
  readonly url: string;
  readonly id: string;
  readonly keys: WorkerKeys;
  readonly served: Served;
  /** Resolves when every enclave accepted the first registration (rejects with the first refusal). */
  readonly registered: Promise<void>;
  /** The models this worker announces (and signs an offer for). */
  readonly models: readonly string[];
  /** Rotates the OHTTP keys now and re-registers (also done every keyRotationMs). */
  rotateKeys(): Promise<void>;
  /** Withdraws the model's offer from every enclave with a signed cancel; later registrations omit it. */
  withdraw(model: string): Promise<WithdrawOutcome[]>;
  /** Offers the model again: re-registers with every enclave at once (a higher sequence than the cancel). */
  restore(model: string): void;
  stop(): Promise<void>;
}

/**
 * Enclave sessions are bound to their connection (worker/session-gateway.ts): an idle connection is kept 65 s (the
 * enclave's lanes close theirs at 60 s, enclave/dispatch/transport.ts), so a quiet minute costs no new handshake.
 */
export function keepSessionConnections(s: Pick<Served, 'server'>): void {
  s.server.keepAliveTimeout = 65_000;
}

async function upstreamModels(upstream: string, fetch: FetchLike): Promise<string[]> {
  const base = upstream.replace(/\/+$/, '').replace(/\/v1$/, '');
  const r = await fetch(`${base}/v1/models`, { signal: AbortSignal.timeout(10_000) });
  const j = (await r.json()) as { data?: { id?: unknown }[] };
  return (j.data ?? []).map((m) => m.id).filter((x): x is string => typeof x === 'string');
}

/**
 * The gateway served by other processes (worker/cluster.ts): the agent then listens nowhere itself; it registers,
 * attests, rotates and withdraws for them, and pushes to them what they must hold before it relies on it.
 */
export interface ServedElsewhere {
  readonly url: string;
  push(s: Shared): Promise<void>;
  /** The next gateway keys, already held by every process. */
  nextKeys(): Promise<GatewayKeySet>;
  close(): Promise<void>;
}

export function startWorker(o: WorkerOptions): Promise<RunningWorker> {
  return agent(o, undefined) as Promise<RunningWorker>;
}

/** The primary of a worker of several processes (`gm worker --processes N`): `RunningWorker` without a server. */
export function startWorkerPrimary(o: WorkerOptions, elsewhere: ServedElsewhere): Promise<Omit<RunningWorker, 'served'>> {
  return agent(o, elsewhere);
}

async function agent(o: WorkerOptions, elsewhere: ServedElsewhere | undefined): Promise<Omit<RunningWorker, 'served'> & { served?: Served }> {
  setDefaultBackend(nodeBackend); // node:crypto HPKE for the server side (docs/protocol.md §10)
  if (!o.enclavePolicy && !o.tee.sim) throw configError('ENCLAVE_POLICY_REQUIRED', 'a real worker needs --enclave-policy FILE: the enclave measurements it registers with');
  if (!o.trust && !o.tee.sim) throw configError('TRUST_STORE_REQUIRED', "a real worker needs the pinned vendor roots (the trust directory) to verify its enclaves' evidence");
  // Shadows the globals: nothing below reaches the network or the clock but through the options.
  const { fetch, now } = o;
  const enclavePolicy = o.enclavePolicy ?? parseClientPolicy(simPolicyDoc(), 'sim enclave policy');
  const keys = o.keys ?? (await generateWorkerKeys());
  const fwd = createForwarder({ upstream: o.upstream });
  const rotationMs = o.keyRotationMs ?? 3600_000;
  let manifest: Uint8Array | undefined;
  const wapp = createWorkerApp({ keys, manifest: () => manifest, tee: o.tee, gpu: o.gpu, handler: (r) => fwd.handle(r), forward: fwd.forward, log: o.log, replayWindowMs: 2 * rotationMs + 60_000, ...(o.maxConcurrentStreams ? { maxConcurrentStreams: o.maxConcurrentStreams } : {}) });
  const served = elsewhere ? undefined : await serve({ fetch: wapp.app.fetch, direct: wapp.direct, listen: o.listen ?? '127.0.0.1:0' });
  if (served) keepSessionConnections(served);
  const url = o.publicUrl ?? served?.url ?? elsewhere!.url;
  const log = o.log.child({ worker: keys.workerId });
  const models = o.models ?? (await upstreamModels(o.upstream, fetch).catch((e: unknown) => {
    // Said here with its cause (ECONNREFUSED, a timeout); the enclave refuses the registration (WORKER_NO_MODELS).
    const c = (e as { cause?: { code?: unknown } }).cause?.code ?? (e as { name?: unknown }).name;
    log.warn('worker.upstream_unavailable', { cause: typeof c === 'string' ? c : 'unknown' });
    return [];
  }));
  const stated = o.identity ? models.flatMap((model) => {
    const identity = o.identity!(model);
    return identity ? [{ model, identity }] : [];
  }) : [];
  manifest = stated.length > 0 ? encodeManifest(stated) : undefined;
  await elsewhere?.push({ manifest });
  if (models.length === 0) log.warn('worker.no_models', { reason: 'the upstream model server is down or serves no model; enclaves will refuse the registration' });
  let stopped = false;
  let stopping: Promise<void> | undefined;
  const timers = new Set<ReturnType<typeof setTimeout>>();

  let lastSigned = 0; // registration times strictly increase, so an enclave never takes a newer one for a replay
  const registerOnce = async (enclave: string): Promise<number> => {
    const base = enclave.replace(/\/+$/, '');
    // Attested afresh for every registration, so a restarted enclave (new keys) is attested again before it is served.
    const enclaveKey = await attest({ base, fetch, policy: enclavePolicy, allowSim: o.tee.sim, trust: o.trust, now }).then(
      (a) => a.receiptKey,
      (e: Error & { code?: string; cause?: unknown }) => {
        // Unreachable is retried like any network failure (logged with its cause, never a refusal).
        if (e.code === 'ATTESTATION_UNREACHABLE') throw e.cause ?? e;
        throw Object.assign(new Error(`enclave not attested: ${e.code ?? 'ATTESTATION_FAILED'}`), { code: e.code ?? 'ATTESTATION_FAILED' });
      },
    );
    const bundle = encodeBundle(await wapp.bundle());
    const offers = o.offers ? await o.offers(keys, models) : [];
    // Signed with the evidence-bound key: the evidence is public, the signature is what makes this registration ours.
    const time = Math.max(now().getTime(), lastSigned + 1);
    lastSigned = time;
    const signature = await signRegistration({ url, models, offers, bundle, time }, keys.signing.privateKey);
    const r = await fetch(`${base}/v1/workers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url, bundle: toBase64(bundle), models, offers: offers.map(toBase64), time, signature: toBase64(signature) }),
      signal: AbortSignal.timeout(60_000),
    });
    const j = (await r.json().catch(() => ({}))) as { worker?: { renewAfterMs?: number; credential?: unknown; signature?: unknown; offers?: { refused?: { index?: unknown; code?: unknown }[] } }; error?: { code?: string } };
    if (r.status !== 200) throw Object.assign(new Error(`enclave refused registration: ${j.error?.code ?? r.status}`), { code: j.error?.code ?? `HTTP_${r.status}` });
    // The enclave's credential: without it this worker's gateway refuses the enclave's requests.
    const sealed = j.worker?.credential;
    if (typeof sealed !== 'string') throw Object.assign(new Error('enclave answered without a credential'), { code: 'WORKER_CREDENTIAL_MISSING' });
    const answerSignature = j.worker?.signature;
    if (typeof answerSignature !== 'string') throw Object.assign(new Error('enclave answered without a signature'), { code: 'REGISTRATION_ANSWER_SIGNATURE' });
    const sealedBytes = fromBase64(sealed, 'credential');
    // Only a credential the attested enclave signed for this very registration is taken.
    await verifyRegistrationAnswer({ workerId: keys.workerId, sealedCredential: sealedBytes, registrationSignature: signature }, fromBase64(answerSignature, 'signature'), enclaveKey);
    try {
      await wapp.acceptCredential(enclave, sealedBytes);
    } catch (e) {
      throw Object.assign(new Error('enclave credential not sealed to this worker'), { code: (e as { code?: string }).code ?? 'WORKER_CREDENTIAL_INVALID' });
    }
    // Checked here first; then every serving process takes it before the registration counts as done.
    await elsewhere?.push({ credential: [enclave, sealedBytes] });
    // Registered, but some offers were not taken: the operator must hear which and why (the worker is not listed for them).
    const refused = Array.isArray(j.worker?.offers?.refused) ? j.worker.offers.refused : [];
    if (refused.length > 0) log.warn('worker.offers_refused', { enclave, refused: refused.map((x) => `${Number(x.index)}:${String(x.code).slice(0, 64)}`).join(',') });
    return Math.max(1_000, j.worker?.renewAfterMs ?? 60_000);
  };

  // Cancels an enclave has not acknowledged yet (it was unreachable): offerId → cancel, per enclave.
  const pendingCancels = new Map<string, Map<string, SignedCancel>>(o.enclaves.map((e) => [e, new Map()]));
  const postCancel = async (enclave: string, c: SignedCancel): Promise<WithdrawOutcome> => {
    let r: Response;
    try {
      r = await fetch(`${enclave.replace(/\/+$/, '')}/v1/workers/${encodeURIComponent(keys.workerId)}/offers/cancel`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ cancel: toBase64(c.bytes) }),
        signal: AbortSignal.timeout(30_000),
      });
    } catch {
      pendingCancels.get(enclave)?.set(c.offerId, c);
      log.warn('worker.cancel_failed', { enclave, code: 'UNREACHABLE', sequence: c.sequence });
      return { enclave, ok: false, code: 'UNREACHABLE', pending: true };
    }
    const j = (await r.json().catch(() => ({}))) as { cancel?: { removed?: unknown }; error?: { code?: string } };
    if (r.status === 200) {
      pendingCancels.get(enclave)?.delete(c.offerId);
      log.info('worker.offer_withdrawn', { enclave, sequence: c.sequence, removed: j.cancel?.removed === true });
      return { enclave, ok: true, removed: j.cancel?.removed === true };
    }
    const code = j.error?.code ?? `HTTP_${r.status}`;
    // 5xx: the enclave may take it later; a 4xx names what is wrong with this cancel, asking again cannot help.
    const pending = r.status >= 500;
    if (pending) pendingCancels.get(enclave)?.set(c.offerId, c);
    else pendingCancels.get(enclave)?.delete(c.offerId);
    log.warn('worker.cancel_refused', { enclave, code, status: r.status });
    return { enclave, ok: false, code, pending };
  };
  const flushCancels = async (enclave: string): Promise<void> => {
    for (const c of [...(pendingCancels.get(enclave)?.values() ?? [])]) await postCancel(enclave, c);
  };

  const kicks: (() => void)[] = [];
  const loops = o.enclaves.map(
    (enclave) =>
      new Promise<void>((resolve, reject) => {
        let first = true;
        let backoff = 1_000;
        // One pending attempt per enclave: a kick (after a key rotation) replaces the scheduled renewal.
        let pending: ReturnType<typeof setTimeout> | undefined;
        const schedule = (ms: number) => {
          if (pending) {
            clearTimeout(pending);
            timers.delete(pending);
          }
          pending = setTimeout(() => {
            if (pending) timers.delete(pending);
            pending = undefined;
            attempt();
          }, ms);
          pending.unref();
          timers.add(pending);
        };
        const attempt = () => {
          if (stopped) return;
          registerOnce(enclave).then(
            (renewMs) => {
              log.info('worker.registered', { enclave, models: models.length, renewMs });
              backoff = 1_000;
              void flushCancels(enclave);
              if (first) {
                first = false;
                resolve();
              }
              schedule(renewMs);
            },
            (e: Error & { code?: string }) => {
              // A network failure says its cause and address (`fetch failed: ECONNREFUSED 127.0.0.1:8443`).
              log.warn('worker.registration_failed', { enclave, code: e.code ?? 'UNREACHABLE', reason: e.code ? e.message : fetchFailure(e) });
              if (first && e.code) {
                first = false;
                reject(e);
              }
              schedule(backoff);
              backoff = Math.min(backoff * 2, 30_000);
            },
          );
        };
        kicks.push(() => schedule(0));
        attempt();
      }),
  );
  // Rotate the OHTTP keys, then re-register with every enclave at once so they learn the new configuration.
  const rotateKeys = async () => {
    await wapp.rotateKeys(elsewhere ? await elsewhere.nextKeys() : undefined);
    for (const k of kicks) k();
  };
  const rotation = setInterval(() => void rotateKeys().catch(() => undefined), rotationMs);
  rotation.unref();
  const withdraw = async (model: string): Promise<WithdrawOutcome[]> => {
    if (!o.offers?.withdraw) throw configError('OFFERS_NOT_WITHDRAWABLE', 'this worker signs no withdrawable offers (use worker/offers.ts offerSigner)');
    const c = await o.offers.withdraw(keys, model);
    return Promise.all(o.enclaves.map((e) => postCancel(e, c)));
  };
  const restore = (model: string): void => {
    if (!o.offers?.restore) throw configError('OFFERS_NOT_WITHDRAWABLE', 'this worker signs no withdrawable offers (use worker/offers.ts offerSigner)');
    o.offers.restore(model);
    // A cancel still waiting for an unreachable enclave would only tombstone sequences below the restored offer's.
    for (const m of pendingCancels.values()) m.delete(offerIdFor(keys.workerId, model));
    for (const k of kicks) k();
  };
  const registered = Promise.all(loops).then(() => undefined);
  registered.catch(() => undefined);
  log.info('worker.started', { url, upstream: o.upstream, enclaves: o.enclaves.length });
  return {
    url,
    id: keys.workerId,
    keys,
    ...(served ? { served } : {}),
    registered,
    models,
    rotateKeys,
    withdraw,
    restore,
    stop() {
      stopping ??= (async () => {
        stopped = true;
        clearInterval(rotation);
        for (const t of timers) clearTimeout(t);
        timers.clear();
        await (served ? served.close(500) : elsewhere!.close());
        await fwd.close();
      })();
      return stopping;
    },
  };
}
