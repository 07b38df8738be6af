/**
 * The enclave service (docs/design.md §4, §5), as layers that tests can replace: TEE provider, keys, worker
 * registry (attestation gate), router (the market replaces the default), dispatch (OHTTP client to the worker), and
 * the OpenAI surface behind the OHTTP gateway.
 *
 *   GET  /v1/attestation[?nonce=<64 hex>]  evidence bundle (CBOR; JSON view with Accept: application/json)
 *   GET  /.well-known/ohttp-gateway       application/ohttp-keys (RFC 9458 §3)
 *   POST /v1/ohttp                        gateway: message/ohttp-req and message/ohttp-chunked-req
 *   POST /v1/workers                      worker registration (docs/operator.md)
 *   GET  /v1/workers                      verified workers (public claims only: id, state, evidence digest, models, GPUs)
 *   GET  /v1/market/offers                the live signed offers of verified workers (docs/market.md "Listing")
 *   GET  /v1/ledger/head                  the ledger's latest periodic signed chain head (docs/market.md)
 *   POST /v1/workers/{id}/offers/cancel   a worker withdraws an offer with a signed cancel (docs/market.md)
 *   GET  /healthz, /metrics               health; public metrics (nothing per worker or per request)
 *   GET  /v1/operator/metrics             every metric, per worker too (bearer token; docs/operator.md §7.1)
 *
 * Under sim every response carries `gm-tee: sim` and every log line `"sim":true`.
 */
import { Hono } from 'hono';
import { bundleToJson, type EnclaveSettings, encodeBundle, type EvidenceBundle, type LedgerMode } from '../attestation/bundle.ts';
import { workerPolicyDigest } from './policy.ts';
import { fromBase64, fromHex, hex, toBase64 } from '../attestation/bytes.ts';
import { sealCredential } from '../protocol/worker-auth.ts';
import { signRegistrationAnswer } from '../protocol/registration.ts';
import { configError, GmError, protocolError, rejected } from '../attestation/errors.ts';
import { MEDIA_OHTTP_KEYS } from '../protocol/media.ts';
import { RecentReplayCache, ReplayCache } from '../protocol/replay.ts';
import { DEFAULT_REQUEST_TIME_WINDOW, type RequestTimeWindow } from '../protocol/request-time.ts';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { createHash, timingSafeEqual } from 'node:crypto';
import { dispatchSummary } from './api/dispatch-summary.ts';
import { type Dispatch, openaiSurface } from './api/openai.ts';
import { sendChunked, sendPlain } from './ohttp/client.ts';
import { DEFAULT_TIMEOUTS, poolTransport, type PoolTimeouts } from './dispatch/transport.ts';
import { sessionDispatch, type SessionDispatchOptions } from './dispatch/session.ts';
import { asGmError, errorResponse, gatewayCode, gatewayProblem, logError } from './http/errors.ts';
import { readLimited, StreamLimiter } from './http/limits.ts';
import { generateEnclaveKeys, generateGatewayKeys, type EnclaveKeys, type GatewayKeySet } from './keys.ts';
import type { GatewayKey } from '../protocol/ohttp.ts';
import type { Logger } from './log.ts';
import { CONTENT_TYPE, Metrics } from './metrics.ts';
import { type GatewayOptions, handleOhttp, nodeIncoming, serveOhttp } from './ohttp/gateway.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MarketSurface } from './market/router.ts';
import { firstVerifiedRouter, type Router } from './router.ts';
import { REPLICATION_JOIN_PATH, replicationHandler, type ReplicationOptions } from './replication/routes.ts';
import { makeBundle } from './tee/evidence.ts';
import type { TeeProvider } from './tee/provider.ts';
import { type Registration, type RegistryOptions, type VerifiedWorker, type WorkerPolicy, WorkerRegistry } from './workers/registry.ts';

/** The gateway's label set (one object for every observation). */
const OHTTP_ROUTE = { route: 'ohttp' } as const;

export interface EnclaveLimits {
  /** Encapsulated request body (413 before decryption). */
  readonly maxRequestBytes: number;
  readonly maxConcurrentStreams: number;
  /** Registration body. */
  readonly maxRegistrationBytes: number;
  /**
   * Replay guard for requests without a request time (kept for a key's lifetime, ~2 h): entries and bytes. Its own
   * budget, so filling it cannot refuse requests that carry a request time.
   */
  readonly replayEntries: number;
  readonly replayBytes: number;
  /** Replay guard for requests with a request time (kept ~90 s): entries and bytes. */
  readonly recentReplayEntries: number;
  readonly recentReplayBytes: number;
}
export const DEFAULT_LIMITS: EnclaveLimits = {
  maxRequestBytes: 4 * 1024 * 1024, maxConcurrentStreams: 1024, maxRegistrationBytes: 2 * 1024 * 1024,
  replayEntries: 1_000_000, replayBytes: 64 * 1024 * 1024, recentReplayEntries: 4_000_000, recentReplayBytes: 192 * 1024 * 1024,
};

export interface EnclaveOptions {
  readonly tee: TeeProvider;
  readonly log: Logger;
  readonly workerPolicy: WorkerPolicy;
  readonly limits?: Partial<EnclaveLimits>;
  readonly timeouts?: Partial<PoolTimeouts>;
  readonly keys?: EnclaveKeys;
  /** Replace the router (the market); receives the registry so it can mirror workers. */
  readonly router?: (registry: WorkerRegistry) => Router;
  readonly onWorkerChange?: RegistryOptions['onChange'];
  /**
   * The settings the enclave attests besides those it derives from `workerPolicy` (docs/protocol.md §12.3): whether
   * requests without an API key are served (`--open-access`) and where the market's ledger lives. Default: no open
   * access, and a ledger in memory when `market` is given, none otherwise; a caller running a market says which.
   */
  readonly settings?: { readonly openAccess: boolean; readonly ledger: LedgerMode };
  /** The market's public listing and signed cancels (marketRouter's `surface`); absent with the `first` router. */
  readonly market?: MarketSurface;
  /** Replace dispatch (tests). */
  readonly dispatch?: Dispatch;
  /**
   * How requests reach workers: over an attested session (default; docs/protocol.md §14), or one OHTTP
   * encapsulation per request (`ohttp`, the older hop, kept for comparison).
   */
  readonly workerHop?: 'session' | 'ohttp';
  /**
   * Several processes of one enclave (enclave/cluster.ts): a registration accepted here is handed to `relay` (which
   * resolves once the other processes adopted it) before it is answered, and likewise a signed cancel.
   */
  readonly relay?: {
    registered(r: RelayedRegistration, workerId: string): Promise<void>;
    cancelled(workerId: string, cancel: Uint8Array): Promise<void>;
  };
  /** This process's number among the enclave's processes, shown by /healthz (absent: one process). */
  readonly instance?: number;
  /** Rotate the OHTTP keys on this process's own timer (default); false when a primary process pushes them. */
  readonly rotationTimer?: boolean;
  /** Session rekey policy (requests, age). */
  readonly session?: SessionDispatchOptions;
  /** The network the worker registry challenges and health-checks workers through (default: the process's `fetch`). */
  readonly fetch?: RegistryOptions['fetch'];
  readonly challenge?: RegistryOptions['challenge'];
  readonly health?: RegistryOptions['health'];
  /** How often workers' health is checked (default 5 s): a stopped worker leaves the verified set within it. */
  readonly healthIntervalMs?: number;
  readonly now?: () => number;
  /**
   * OHTTP key rotation period (default 1 h). A new key configuration (new key id) is attested and served; the previous
   * one stays accepted for one more period, then retires, so the replay cache can forget its encapsulated keys
   * (protocol/replay.ts: entries are kept for a key's whole window). Clients holding a retired key get
   * OHTTP_KEY_CONFIG and re-attest once.
   */
  readonly keyRotationMs?: number;
  /**
   * Bearer token of `GET /v1/operator/metrics`, the only place per-worker and per-request counters are served
   * (docs/operator.md §7.1). Without it that endpoint does not exist.
   */
  readonly operatorToken?: string;
  /**
   * Refuse requests whose inner request carries no `gm-sent-at` (REQUEST_TIME_REQUIRED, sealed): then every entry
   * of the replay guard lives ~90 s, and standard OHTTP clients that do not send the field are not served.
   */
  readonly requireRequestTime?: boolean;
  /** The accepted request time window (default DEFAULT_REQUEST_TIME_WINDOW: 60 s behind, 30 s ahead). */
  readonly requestTimeWindow?: RequestTimeWindow;
  /** How often per-worker dispatch counts are logged (default 10 min) and the fewest a logged window holds (default 20). */
  readonly dispatchSummary?: { readonly intervalMs?: number; readonly minDispatches?: number };
  /** Release the shared ledger key to verified replicas of this enclave (enclave/replication/, docs/design.md §10.1). */
  readonly replication?: ReplicationOptions;
}

/** A registration as another process of the same enclave receives it, with the credential the worker was given. */
export interface RelayedRegistration {
  readonly registration: Registration;
  readonly credential: Uint8Array;
}

export interface Enclave {
  readonly app: Hono<{ Variables: { route: string } }>;
  /**
   * The gateway (POST /v1/ohttp) on node:http directly, without web Request/Response around the outer message;
   * true when it took the request. The server offers it each request before `app` (enclave/serve.ts `direct`).
   */
  direct(req: IncomingMessage, res: ServerResponse): boolean;
  readonly keys: EnclaveKeys;
  readonly registry: WorkerRegistry;
  readonly metrics: Metrics;
  /** The current boot bundle (changes when the OHTTP keys rotate). */
  readonly bootBundle: EvidenceBundle;
  /** The application/ohttp-keys bytes currently served and attested. */
  readonly keyConfigs: Uint8Array;
  /** Rotates the OHTTP key configuration now (also done on a timer), to `next` when given (a primary's keys). */
  rotateKeys(next?: GatewayKeySet): Promise<void>;
  /** Adopts a registration another process of this enclave accepted (same verification, its credential). */
  adopt(r: RelayedRegistration): Promise<void>;
  /** Applies a signed cancel another process accepted. */
  adoptCancel(workerId: string, cancel: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** The settings an enclave with these options attests (a joining replica states them before the enclave exists). */
export async function enclaveSettings(o: Pick<EnclaveOptions, 'workerPolicy' | 'settings' | 'market'>): Promise<EnclaveSettings> {
  return {
    allowSimWorkers: o.workerPolicy.allowSim,
    workerPolicy: await workerPolicyDigest(o.workerPolicy),
    openAccess: o.settings?.openAccess ?? false,
    ledger: o.settings?.ledger ?? (o.market ? 'memory' : 'none'),
  };
}

export async function createEnclave(o: EnclaveOptions): Promise<Enclave> {
  // Servers use node:crypto for HPKE (synchronous OpenSSL calls; docs/protocol.md §10): same bytes, less latency.
  setDefaultBackend(nodeBackend);
  const limits = { ...DEFAULT_LIMITS, ...o.limits };
  const timeouts = { ...DEFAULT_TIMEOUTS, ...o.timeouts };
  const keys = o.keys ?? (await generateEnclaveKeys());
  const sim = o.tee.sim;
  const now = o.now ?? Date.now;
  // Key state: `served` is attested and served; `accepted` adds the previous configuration during its grace period.
  let served: GatewayKeySet = { gateway: keys.gateway, keyConfigs: keys.keyConfigs };
  let accepted: readonly GatewayKey[] = keys.gateway;
  // Trust-relevant settings, in every bundle and bound in its REPORT_DATA: a client can require them (client/policy.ts).
  const settings = await enclaveSettings(o);
  const bundleFor = (nonce?: Uint8Array) => makeBundle({ tee: o.tee, role: 'enclave', keyConfigs: served.keyConfigs, signingKey: keys.receipt.publicKey, settings, ...(nonce ? { nonce } : {}), now });
  let bootBundle = await bundleFor();
  let bootCbor = encodeBundle(bootBundle);
  const rotationMs = o.keyRotationMs ?? 3600_000;
  const rotateKeys = async (given?: GatewayKeySet) => {
    // Every served configuration (X-Wing and X25519) rotates together, same KEMs, to ids no accepted key holds.
    const next = given ?? (await generateGatewayKeys(accepted.map((k) => k.config.keyId), undefined, served.gateway.map((k) => k.config.kemId)));
    const prev = served.gateway;
    const b = await makeBundle({ tee: o.tee, role: 'enclave', keyConfigs: next.keyConfigs, signingKey: keys.receipt.publicKey, settings, now });
    served = next;
    bootBundle = b;
    bootCbor = encodeBundle(b);
    const retiring = accepted.filter((k) => !prev.includes(k));
    accepted = [...next.gateway, ...prev]; // the previous keys stay accepted for one period; the ones before retire now
    // Their private keys are gone, so the replay cache may forget their encapsulated keys (and a later key may reuse an id).
    for (const k of retiring) replay.retire(k.config.keyId);
    o.log.info('enclave.keys_rotated', { keyIds: next.gateway.map((k) => k.config.keyId).join(','), previous: prev.map((k) => k.config.keyId).join(',') });
  };
  const rotation = o.rotationTimer === false ? undefined : setInterval(() => void rotateKeys().catch((e: unknown) => logError(o.log, 'enclave.rotation_failed', asGmError(e))), rotationMs);
  rotation?.unref();

  // Public metrics move only with what a relay sees on the wire anyway (routes, outer statuses and codes, timing);
  // everything per worker, per model or per inner outcome is operator-only (the default scope).
  const metrics = new Metrics();
  const requests = metrics.tally('gm_requests_total', 'HTTP requests by route and status', { labels: ['route', 'status'], scope: 'public' });
  // Errors the peer was sent in clear are public; errors answered inside the encryption count for the operator only.
  const errors = metrics.errors({ split: true });
  const causes = metrics.counter('gm_error_causes_total', 'Errors by local code (decryption failure causes, inner rejections)', { labels: ['code'] });
  const latency = metrics.histogram('gm_request_duration_seconds', 'Request duration by route (gateway: to the last byte)', { labels: ['route'], scope: 'public' });
  const streams = new StreamLimiter(limits.maxConcurrentStreams);
  metrics.gauge('gm_active_streams', 'Gateway exchanges in progress', { scope: 'public', collect: () => [[{}, streams.active]] });

  const registry = new WorkerRegistry({
    policy: o.workerPolicy,
    log: o.log,
    metrics,
    now,
    fetch: o.fetch ?? ((i, init) => fetch(i, init)),
    transportFor: (url, credential) => poolTransport(url, timeouts, credential),
    ...(o.challenge ? { challenge: o.challenge } : {}),
    ...(o.health ? { health: o.health } : {}),
    ...(o.healthIntervalMs !== undefined ? { healthIntervalMs: o.healthIntervalMs } : {}),
    ...(o.onWorkerChange ? { onChange: o.onWorkerChange } : {}),
  });
  const router = o.router ? o.router(registry) : firstVerifiedRouter(registry);
  const ohttpDispatch: Dispatch = (w, req, d) => (d.stream ? sendChunked(w.transport.send, w.keyConfig, req, d.signal) : sendPlain(w.transport.send, w.keyConfig, req, d.signal));
  const dispatch: Dispatch = o.dispatch ?? (o.workerHop === 'ohttp' ? ohttpDispatch : sessionDispatch({ now, ...o.session }));
  const inner = openaiSurface({ router, usable: (id) => registry.usable(id), dispatch, log: o.log, metrics, now, onError: (code) => errors.sealed(code) });
  // A key is accepted for at most two rotation periods after it is first used: the replay window of requests without
  // a request time. Requests with one are remembered only until it leaves its window (docs/protocol.md §13).
  const replay = new ReplayCache({ maxEntries: limits.replayEntries, maxBytes: limits.replayBytes, windowMs: 2 * rotationMs + 60_000, now });
  const recent = new RecentReplayCache({ maxEntries: limits.recentReplayEntries, maxBytes: limits.recentReplayBytes, now });
  const requestTime = { recent, window: o.requestTimeWindow ?? DEFAULT_REQUEST_TIME_WINDOW, required: o.requireRequestTime ?? false, now };
  metrics.gauge('gm_replay_cache_entries', 'Encapsulated keys remembered by the replay guard, by window (key lifetime or request time)', {
    labels: ['window'], scope: 'public', collect: () => [[{ window: 'key' }, replay.size], [{ window: 'request_time' }, recent.size]],
  });
  metrics.gauge('gm_replay_cache_bytes', 'Bytes held by the replay guard, by window', { labels: ['window'], collect: () => [[{ window: 'key' }, replay.bytes], [{ window: 'request_time' }, recent.bytes]] });
  const dispatches = metrics.findCounter('gm_dispatch_total');
  const summarize = dispatches ? dispatchSummary({ counter: dispatches, log: o.log, minDispatches: o.dispatchSummary?.minDispatches ?? 20 }) : async () => undefined;
  const summaries = setInterval(() => void summarize(), o.dispatchSummary?.intervalMs ?? 600_000);
  summaries.unref();
  if (o.operatorToken !== undefined && !/^[\x21-\x7e]{16,}$/.test(o.operatorToken)) throw configError('OPERATOR_TOKEN_INVALID', 'the operator token must be at least 16 visible ASCII characters');
  const operatorDigest = o.operatorToken === undefined ? undefined : tokenDigest(o.operatorToken);
  const simHeaders: Record<string, string> = sim ? { 'gm-tee': 'sim' } : {};

  const app = new Hono<{ Variables: { route: string } }>();
  // Outer middleware: route label (fixed names, never the URL), status counting, latency, sim header.
  app.use('*', async (c, next) => {
    const t0 = performance.now();
    c.set('route', routeName(c.req.method, c.req.path));
    await next();
    for (const [k, v] of Object.entries(simHeaders)) c.res.headers.set(k, v);
    requests.inc(c.get('route'), String(c.res.status));
    if (c.get('route') !== 'ohttp') latency.observe({ route: c.get('route') }, (performance.now() - t0) / 1000);
  });
  app.onError((e, c) => {
    const g = asGmError(e);
    causes.inc({ code: g.code });
    errors.sent(c.get('route') === 'ohttp' ? gatewayCode(g) : g.code);
    logError(o.log, 'request.failed', g, { route: c.get('route') });
    return c.get('route') === 'ohttp' ? gatewayProblem(g, simHeaders) : errorResponse(g, simHeaders);
  });

  app.get('/healthz', (c) => c.json({ ok: true, sim, workers: registry.list().length, ...(o.instance !== undefined ? { process: o.instance } : {}) }));
  app.get('/metrics', async (c) => c.text(await metrics.render('public'), 200, { 'content-type': CONTENT_TYPE }));
  app.get('/v1/operator/metrics', async (c) => {
    if (!operatorDigest) throw new GmError('protocol', 'NOT_FOUND', 'no operator token is configured');
    const m = /^Bearer ([\x21-\x7e]+)$/.exec(c.req.header('authorization') ?? '');
    if (!m || !timingSafeEqual(tokenDigest(m[1]!), operatorDigest)) {
      errors.sent('OPERATOR_UNAUTHORIZED');
      return c.json({ error: { code: 'OPERATOR_UNAUTHORIZED' } }, 401, { 'www-authenticate': 'Bearer', 'cache-control': 'no-store' });
    }
    return c.text(await metrics.render('operator'), 200, { 'content-type': CONTENT_TYPE, 'cache-control': 'no-store' });
  });
  app.get('/.well-known/ohttp-gateway', () => new Response(served.keyConfigs as Uint8Array<ArrayBuffer>, { headers: { 'content-type': MEDIA_OHTTP_KEYS, 'cache-control': 'max-age=60' } }));
  app.get('/v1/attestation', async (c) => {
    const n = c.req.query('nonce');
    if (n !== undefined && !/^[0-9a-fA-F]{64}$/.test(n)) throw protocolError('BAD_NONCE', 'nonce must be 64 hex digits');
    const b = n ? await bundleFor(fromHex(n)) : bootBundle;
    if ((c.req.header('accept') ?? '').includes('application/json')) return c.json(bundleToJson(b), 200, { 'cache-control': 'no-store' });
    return new Response((n ? encodeBundle(b) : bootCbor) as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/cbor', 'cache-control': 'no-store' } });
  });
  // Registration is unauthenticated (the evidence is the credential) and verification costs CPU: bound how many run at once.
  const registrations = new StreamLimiter(8);
  // The body is read before a slot is taken, so a slow body never holds one (the server's timeouts bound it).
  app.post('/v1/workers', async (c) => {
    const raw = await readLimited(c.req.raw.body, limits.maxRegistrationBytes);
    const release = registrations.acquire();
    try {
      return await registerWorker(c, raw);
    } finally {
      release();
    }
  });
  const registerWorker = async (c: import('hono').Context, raw: Uint8Array) => {
    let j: { url?: unknown; bundle?: unknown; models?: unknown; offers?: unknown; time?: unknown; signature?: unknown };
    try {
      j = JSON.parse(new TextDecoder().decode(raw)) as typeof j;
    } catch (e) {
      throw protocolError('REGISTRATION_MALFORMED', 'registration must be JSON', { cause: e });
    }
    if (typeof j !== 'object' || j === null || typeof j.url !== 'string' || typeof j.bundle !== 'string') throw protocolError('REGISTRATION_MALFORMED', 'registration needs url and bundle (base64 CBOR)');
    if (typeof j.signature !== 'string' || typeof j.time !== 'number') throw protocolError('REGISTRATION_MALFORMED', 'registration needs time and signature (the worker key signs it, docs/protocol.md §12.1)');
    // Signed as posted: a list that does not parse is refused, never replaced by an empty one.
    if (j.models !== undefined && !(Array.isArray(j.models) && j.models.every((m) => typeof m === 'string' && m.length <= 256))) throw protocolError('REGISTRATION_MALFORMED', 'models must be strings of at most 256 characters');
    if (j.offers !== undefined && !(Array.isArray(j.offers) && j.offers.every((x) => typeof x === 'string'))) throw protocolError('REGISTRATION_MALFORMED', 'offers must be base64 strings');
    const models = (j.models ?? []) as string[];
    const offers = ((j.offers ?? []) as string[]).map((x) => fromBase64(x, 'offer'));
    const registration: Registration = { url: j.url, bundle: fromBase64(j.bundle, 'bundle'), models, offers, time: j.time, signature: fromBase64(j.signature, 'signature') };
    const w = await registry.register(registration);
    // Answered only once every process of this enclave holds the worker: a registration is routable from all of them.
    await o.relay?.registered({ registration, credential: w.credential }, w.id);
    // The offers the market refused are part of the answer: a registration that lost its offers must not look complete.
    const refused = w.refusedOffers.map((r) => ({ index: r.index, code: r.code }));
    // The credential this enclave authorizes its requests with, sealed so that only the attested worker can open it.
    const sealed = await sealCredential(w.keyConfig, w.id, w.credential);
    // Signed with the attested receipt key: the worker takes the credential only from the enclave it attested.
    const signature = await signRegistrationAnswer({ workerId: w.id, sealedCredential: sealed, registrationSignature: registration.signature }, keys.receipt);
    return c.json({ worker: { id: w.id, state: w.state, expiresAt: new Date(w.expiresAt).toISOString(), renewAfterMs: Math.floor(o.workerPolicy.freshnessMs / 2), offers: { posted: offers.length, refused }, credential: toBase64(sealed), signature: toBase64(signature) } });
  };
  // Public, read-only listings (docs/operator.md §2): what the enclave verified, never payloads, accounts or traffic.
  app.get('/v1/workers', (c) => c.json({ workers: registry.list().map(workerView) }, 200, { 'cache-control': 'no-store' }));
  const market = o.market;
  app.get('/v1/market/offers', (c) => {
    if (!market) throw new GmError('protocol', 'NOT_FOUND', 'this enclave runs no market (--router first)');
    return c.json({ offers: market.offers(now()) }, 200, { 'cache-control': 'no-store' });
  });
  // The ledger's latest periodic signed chain head (docs/market.md "Auditing a ledger"), kept outside the ledger.
  app.get('/v1/ledger/head', (c) => {
    const h = market?.head?.();
    if (!h) throw new GmError('protocol', 'NOT_FOUND', 'this enclave has no signed ledger head yet');
    return c.json(h, 200, { 'cache-control': 'no-store' });
  });
  // A signed cancel (protocol/offer.ts): the worker's evidence-bound key and the offer's hotkey both sign it, so
  // it needs no other credential; the worker must be registered and verified.
  const cancels = new StreamLimiter(8);
  app.post('/v1/workers/:id/offers/cancel', async (c) => {
    const raw = await readLimited(c.req.raw.body, 16 * 1024);
    const release = cancels.acquire();
    try {
      if (!market) throw new GmError('protocol', 'NOT_FOUND', 'this enclave runs no market (--router first)');
      const id = c.req.param('id');
      if (!registry.usable(id)) throw rejected('OFFER_UNKNOWN_WORKER', 'cancel for a worker that is not registered and verified');
      let j: { cancel?: unknown };
      try {
        j = JSON.parse(new TextDecoder().decode(raw)) as typeof j;
      } catch (e) {
        throw protocolError('CANCEL_MALFORMED', 'cancel must be JSON {"cancel": base64}', { cause: e });
      }
      if (typeof j !== 'object' || j === null || typeof j.cancel !== 'string') throw protocolError('CANCEL_MALFORMED', 'cancel must be JSON {"cancel": base64}');
      const cancel = fromBase64(j.cancel, 'cancel');
      const r = await market.cancel(id, cancel);
      await o.relay?.cancelled(id, cancel);
      return c.json({ cancel: r });
    } finally {
      release();
    }
  });
  if (o.replication) app.post(REPLICATION_JOIN_PATH, replicationHandler(o.replication, { tee: o.tee, receiptKey: keys.receipt.publicKey, settings, keyConfigs: () => served.keyConfigs, log: o.log }));
  const ohttpOptions: GatewayOptions = {
    keys: () => accepted,
    replay,
    requestTime,
    service: inner.serve,
    maxRequestBytes: limits.maxRequestBytes,
    // The slot is taken once the body is in: a slow body holds only its socket (bounded by the server's timeouts).
    admit: () => streams.acquire(),
    onInnerRejected: (code: string) => {
      causes.inc({ code });
      errors.sealed(code);
      o.log.warn('request.inner_rejected', { code });
    },
    onDone: (outcome, t0) => {
      latency.observe(OHTTP_ROUTE, (performance.now() - t0) / 1000);
      if (outcome !== 'ok') errors.sent(outcome === 'cancelled' ? 'CLIENT_CANCELLED' : 'STREAM_FAILED');
    },
  };
  app.post('/v1/ohttp', (c) => handleOhttp(c.req.raw, { ...ohttpOptions, ...nodeIncoming(c) }));
  // One listener for every response (`this` is the response), not a closure per request.
  function counted(this: ServerResponse): void {
    requests.inc('ohttp', String(this.statusCode));
  }
  /** The gateway on node:http directly (the hot path): the same options, counters and opaque errors as the route. */
  const direct = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (req.method !== 'POST' || req.url !== '/v1/ohttp') return false;
    res.once('finish', counted);
    serveOhttp(req, res, ohttpOptions, simHeaders).catch(async (e: unknown) => {
      const g = asGmError(e);
      causes.inc({ code: g.code });
      errors.sent(gatewayCode(g));
      logError(o.log, 'request.failed', g, { route: 'ohttp' });
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const p = gatewayProblem(g, simHeaders);
      const headers: Record<string, string> = {};
      for (const [k, v] of p.headers) headers[k] = v;
      res.writeHead(p.status, headers);
      res.end(await p.text());
    });
    return true;
  };
  app.all('*', () => {
    throw new GmError('protocol', 'NOT_FOUND', 'no such endpoint');
  });

  registry.start();
  o.log.info('enclave.started', { platform: bootBundle.platform, keyIds: served.gateway.map((k) => k.config.keyId).join(',') });
  o.log.info('enclave.settings', { allowSimWorkers: settings.allowSimWorkers, workerPolicy: hex(settings.workerPolicy), openAccess: settings.openAccess, ledger: settings.ledger });
  return {
    app, keys, registry, metrics, rotateKeys, direct,
    adopt: async (r) => {
      await registry.register(r.registration, { credential: r.credential });
    },
    adoptCancel: async (workerId, cancel) => {
      if (market && registry.usable(workerId)) await market.cancel(workerId, cancel);
    },
    get bootBundle() {
      return bootBundle;
    },
    get keyConfigs() {
      return served.keyConfigs;
    },
    close: async () => {
      if (rotation) clearInterval(rotation);
      clearInterval(summaries);
      await registry.close();
    },
  };
}

/** The public view of a verified worker: claims from its verified evidence (GPUs too), nothing secret, no URL. */
function workerView(w: VerifiedWorker): Record<string, unknown> {
  return {
    id: w.id, state: w.state, platform: w.platform, measurement: w.measurement, sim: w.sim, evidenceDigest: hex(w.evidenceDigest),
    workerKey: hex(w.signingKey), models: w.models, gpus: w.gpus, verifiedAt: new Date(w.verifiedAt).toISOString(), expiresAt: new Date(w.expiresAt).toISOString(),
  };
}

function routeName(method: string, path: string): string {
  if (path === '/v1/ohttp') return 'ohttp';
  if (path === '/v1/attestation') return 'attestation';
  if (path === '/.well-known/ohttp-gateway') return 'keys';
  if (path === '/v1/workers') return 'workers';
  if (path === '/v1/market/offers') return 'market_offers';
  if (path === '/v1/ledger/head') return 'ledger_head';
  if (/^\/v1\/workers\/[^/]+\/offers\/cancel$/.test(path)) return 'offer_cancel';
  if (path === '/healthz') return 'healthz';
  if (path === '/metrics') return 'metrics';
  if (path === '/v1/operator/metrics') return 'operator_metrics';
  if (path === REPLICATION_JOIN_PATH) return 'replication_join';
  return method === 'GET' || method === 'POST' ? 'other' : 'other';
}

/** Tokens are compared as SHA-256 digests: equal length, so timingSafeEqual applies and the length does not leak. */
function tokenDigest(t: string): Buffer {
  return createHash('sha256').update(t, 'utf8').digest();
}
