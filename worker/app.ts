/**
 * The worker agent (docs/design.md §1, §2 worker/): beside an OpenAI-compatible inference server in a CC-mode
 * GPU VM. Keys generated in memory at start: an OHTTP key configuration (its gateway accepts only requests
 * encapsulated to it) and an Ed25519 offer-signing key, both bound in REPORT_DATA (role `worker`); GPU evidence is
 * bound to the CPU evidence by gpuNonceFor(REPORT_DATA).
 *
 *   GET  /v1/attestation[?nonce=<64 hex>]  evidence bundle (CBOR), fresh for a nonce
 *   GET  /.well-known/ohttp-gateway       application/ohttp-keys
 *   POST /v1/ohttp                        the gateway (plain and chunked) in front of the upstream, for the enclaves
 *                                         it registered with only (a MAC under their credential, protocol/worker-auth.ts)
 *   GET  /healthz, /metrics
 */
import { Hono } from 'hono';
import { type EvidenceBundle, encodeBundle } from '../attestation/bundle.ts';
import { fromHex, hex, sha256 } from '../attestation/bytes.ts';
import { GmError, protocolError } from '../attestation/errors.ts';
import { generateWorkerKey } from '../protocol/offer.ts';
import type { GatewayKey } from '../protocol/ohttp.ts';
import { MEDIA_OHTTP_KEYS } from '../protocol/media.ts';
import { ReplayCache } from '../protocol/replay.ts';
import { beginAuthentication, openCredential, verifierFor, WORKER_AUTH_HEADER } from '../protocol/worker-auth.ts';
import { StreamLimiter } from '../enclave/http/limits.ts';
import { asGmError, errorResponse, gatewayProblem, logError } from '../enclave/http/errors.ts';
import type { Logger } from '../enclave/log.ts';
import { CONTENT_TYPE, Metrics } from '../enclave/metrics.ts';
import { handleOhttp, nodeIncoming } from '../enclave/ohttp/gateway.ts';
import { requestFromBhttp } from '../enclave/ohttp/messages.ts';
import { readIncomingLimited, readLimited } from '../enclave/http/limits.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Field } from '../protocol/bhttp.ts';
import type { FieldForwarder } from './forward.ts';
import { createSessionGateway, MEDIA_SESSION_INIT, MEDIA_SESSION_REPLY, SESSION_PATH } from './session-gateway.ts';
import { generateGatewayKeys, type GatewayKeySet } from '../enclave/keys.ts';
import { makeBundle, type GpuEvidenceSource } from '../enclave/tee/evidence.ts';
import type { TeeProvider } from '../enclave/tee/provider.ts';

/** What serving needs: the gateway keys and the signing key's public half (bound in the evidence). */
export interface ServingKeys {
  readonly gateway: readonly GatewayKey[];
  readonly keyConfigs: Uint8Array;
  readonly signing: { readonly publicKey: Uint8Array };
  readonly workerId: string;
}

export interface WorkerKeys extends ServingKeys {
  readonly signing: { readonly publicKey: Uint8Array; readonly privateKey: CryptoKey };
}

export async function generateWorkerKeys(kems?: readonly number[]): Promise<WorkerKeys> {
  // The same pair as the enclave's (enclave/keys.ts): X-Wing first, X25519 second, so the enclave->worker hop is
  // post-quantum too whenever both sides have X-Wing.
  const [g, signing] = await Promise.all([generateGatewayKeys([], undefined, kems), generateWorkerKey()]);
  return { ...g, signing, workerId: workerIdFor(await sha256(signing.publicKey)) };
}

/** A stable, non-secret worker id: the first 8 bytes of SHA-256 of its signing key. */
export const workerIdFor = (digest: Uint8Array) => `w-${hex(digest.subarray(0, 8))}`;

export interface WorkerAppOptions {
  readonly keys: ServingKeys;
  readonly tee: TeeProvider;
  readonly gpu: GpuEvidenceSource;
  readonly handler: (req: Request) => Promise<Response>;
  /**
   * The session path's forwarder (worker/forward.ts `forward`: fields in, bytes out, no web objects); without it the
   * session path adapts `handler`.
   */
  readonly forward?: FieldForwarder;
  /** How long an enclave's session is served before it must make a new one (default 30 min). */
  readonly sessionLifetimeMs?: number;
  readonly now?: () => number;
  readonly log: Logger;
  readonly maxRequestBytes?: number;
  /** Replay window; must exceed two rotation periods (agent default: rotation 1 h). */
  readonly replayWindowMs?: number;
  /** Gateway exchanges served at once (default 64); past it a request is refused with TOO_MANY_STREAMS. */
  readonly maxConcurrentStreams?: number;
  /**
   * The model manifest (protocol/model-identity.ts) each bundle carries and binds in REPORT_DATA, read at every
   * bundle (the agent learns its models from the upstream after the app exists); undefined: none.
   */
  readonly manifest?: () => Uint8Array | undefined;
  /**
   * False: POST /v1/ohttp is refused (OHTTP_HOP_UNAVAILABLE). A worker of several processes serves the session hop
   * only, since this gateway's replay window is per process (worker/cluster.ts).
   */
  readonly ohttpHop?: boolean;
  /** Which process of several this is (1..N): said by /healthz. */
  readonly instance?: number;
}

export interface WorkerApp {
  readonly app: Hono;
  readonly metrics: Metrics;
  bundle(nonce?: Uint8Array): Promise<EvidenceBundle>;
  /**
   * Rotates the OHTTP key configuration: the new one is attested and served at once, the previous one stays accepted
   * until the next rotation (so requests already sealed to it still open), then retires and the replay cache forgets
   * it. The agent re-registers right after, so enclaves learn the new configuration.
   */
  rotateKeys(next?: GatewayKeySet): Promise<void>;
  /** The application/ohttp-keys bytes currently served and attested. */
  readonly keyConfigs: Uint8Array;
  /**
   * Takes the credential an enclave returned in its registration answer (sealed to this worker's key configuration);
   * from then on the gateway serves requests that enclave authorizes with it, replacing the enclave's previous one.
   */
  acceptCredential(enclave: string, sealed: Uint8Array): Promise<void>;
  /**
   * The lean request path of the session (POST /v1/session/request) on node:http; true when it took the request.
   * The server calls it before the hono app.
   */
  direct(req: IncomingMessage, res: ServerResponse): boolean;
}

/** A web handler as a field forwarder (tests and embedders that give only `handler`). */
function adaptHandler(handler: (req: Request) => Promise<Response>): FieldForwarder {
  return (req, sink) => {
    const ac = new AbortController();
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    let live = true;
    let paused = false;
    let wake: (() => void) | undefined;
    const resume = () => {
      paused = false;
      const w = wake;
      wake = undefined;
      w?.();
    };
    const pump = async () => {
      const res = await handler(requestFromBhttp(req, ac.signal));
      if (!live) return void res.body?.cancel().catch(() => undefined);
      const headers: Field[] = [];
      for (const [k, v] of res.headers) headers.push([k, v]);
      sink.head(res.status, headers);
      reader = res.body?.getReader();
      for (;;) {
        while (paused && live) await new Promise<void>((r) => (wake = r));
        const x = live && reader ? await reader.read() : { done: true as const };
        if (!live) return;
        if (x.done) break;
        if (!sink.data(x.value)) paused = true;
      }
      live = false;
      sink.end();
    };
    pump().catch((e: unknown) => {
      if (!live) return;
      live = false;
      sink.fail(e);
    });
    return {
      cancel() {
        if (!live) return;
        live = false;
        ac.abort();
        void reader?.cancel().catch(() => undefined);
        resume();
      },
      resume,
    };
  };
}

export function createWorkerApp(o: WorkerAppOptions): WorkerApp {
  const metrics = new Metrics();
  // Counted in plain numbers and read at scrape time: no label lookup per request.
  const outcomes = { ok: 0, cancelled: 0, error: 0 };
  metrics.counter('gm_worker_requests_total', 'Gateway requests by outcome', {
    labels: ['outcome'],
    collect: () => (Object.keys(outcomes) as (keyof typeof outcomes)[]).filter((k) => outcomes[k] > 0).map((k) => [{ outcome: k }, outcomes[k]] as const),
  });
  // One audience: the worker serves its own requests' plaintext, so its operator may count the sealed errors too.
  const errors = metrics.errors({ split: false });
  const latency = metrics.histogram('gm_worker_request_duration_seconds', 'Gateway request duration (to the last byte)');
  const replay = new ReplayCache({ maxEntries: 2_000_000, windowMs: o.replayWindowMs ?? 2 * 3600_000 + 60_000 });
  metrics.gauge('gm_worker_replay_cache_entries', 'Encapsulated keys remembered by the replay guard', { collect: () => [[{}, replay.size]] });
  const simHeader: Record<string, string> = o.tee.sim ? { 'gm-tee': 'sim' } : {};
  // Credentials by enclave, and their verification keys by credential id (what a request's header names).
  const byEnclave = new Map<string, { readonly kid: string; readonly credential: Uint8Array }>();
  const verifiers = new Map<string, Uint8Array>();
  const streams = new StreamLimiter(o.maxConcurrentStreams ?? 64);
  metrics.gauge('gm_worker_active_streams', 'Gateway exchanges in progress', { collect: () => [[{}, streams.active]] });
  let served: GatewayKeySet = { gateway: o.keys.gateway, keyConfigs: o.keys.keyConfigs };
  let accepted: readonly GatewayKey[] = o.keys.gateway;
  const bundle = (nonce?: Uint8Array) => {
    const models = o.manifest?.();
    return makeBundle({ tee: o.tee, role: 'worker', keyConfigs: served.keyConfigs, signingKey: o.keys.signing.publicKey, gpu: o.gpu, ...(models ? { models } : {}), ...(nonce ? { nonce } : {}) });
  };
  const rotateKeys = async (given?: GatewayKeySet) => {
    // Every served configuration (X-Wing and X25519) rotates together, same KEMs, to ids no accepted key holds.
    // Given: made by the primary of several processes for all of them (ids chosen the same way).
    const next = given ?? (await generateGatewayKeys(accepted.map((k) => k.config.keyId), undefined, served.gateway.map((k) => k.config.kemId)));
    const prev = served.gateway;
    served = next;
    const retiring = accepted.filter((k) => !prev.includes(k));
    accepted = [...next.gateway, ...prev];
    // The retiring keys' private keys are gone: the replay cache forgets their encapsulated keys (and their ids may return).
    for (const k of retiring) {
      replay.retire(k.config.keyId);
      sessions.dropKey(k.config.keyId);
    }
    o.log.info('worker.keys_rotated', { keyIds: next.gateway.map((k) => k.config.keyId).join(','), previous: prev.map((k) => k.config.keyId).join(',') });
  };

  const sessions = createSessionGateway({
    workerId: o.keys.workerId,
    keys: () => accepted,
    forward: o.forward ?? adaptHandler(o.handler),
    log: o.log,
    maxRequestBytes: o.maxRequestBytes ?? 4 * 1024 * 1024,
    admit: () => streams.acquire(),
    headers: simHeader,
    ...(o.now ? { now: o.now } : {}),
    ...(o.sessionLifetimeMs ? { lifetimeMs: o.sessionLifetimeMs } : {}),
    onDone: (outcome, t0) => {
      outcomes[outcome]++;
      latency.observe({}, (performance.now() - t0) / 1000);
    },
    onError: (code, sealed) => (sealed ? errors.sealed(code) : errors.sent(code)),
  });
  metrics.gauge('gm_worker_sessions', 'Enclave sessions held', { collect: () => [[{}, sessions.size]] });

  const app = new Hono();
  app.use('*', async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(simHeader)) c.res.headers.set(k, v);
  });
  app.onError((e, c) => {
    const g = asGmError(e);
    errors.sent(g.code);
    logError(o.log, 'request.failed', g, { path: c.req.path });
    // An unauthorized sender learns only that it is not authorized (nothing was read past the header or decrypted).
    // So does a sender told this worker serves no OHTTP hop (nothing was read either).
    return c.req.path === '/v1/ohttp' && !g.code.startsWith('WORKER_AUTH_') && g.code !== 'OHTTP_HOP_UNAVAILABLE' ? gatewayProblem(g, simHeader) : errorResponse(g, simHeader);
  });
  app.get('/healthz', (c) => c.json({ ok: true, sim: o.tee.sim, workerId: o.keys.workerId, ...(o.instance ? { process: o.instance } : {}) }));
  app.get('/metrics', async (c) => c.text(await metrics.render(), 200, { 'content-type': CONTENT_TYPE }));
  app.get('/.well-known/ohttp-gateway', () => new Response(served.keyConfigs as Uint8Array<ArrayBuffer>, { headers: { 'content-type': MEDIA_OHTTP_KEYS, 'cache-control': 'max-age=60', ...simHeader } }));
  app.get('/v1/attestation', async (c) => {
    const n = c.req.query('nonce');
    if (n !== undefined && !/^[0-9a-fA-F]{64}$/.test(n)) throw protocolError('BAD_NONCE', 'nonce must be 64 hex digits');
    const b = await bundle(n ? fromHex(n) : undefined);
    return new Response(encodeBundle(b) as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/cbor', 'cache-control': 'no-store', ...simHeader } });
  });
  app.post('/v1/ohttp', async (c) => {
    if (o.ohttpHop === false) throw new GmError('protocol', 'OHTTP_HOP_UNAVAILABLE', 'this worker serves the enclave session only (several processes)');
    const t0 = performance.now();
    // Only enclaves this worker registered with: checked on the header before the body is read, then over the body.
    const authenticated = beginAuthentication(c.req.header(WORKER_AUTH_HEADER), verifiers);
    const type = c.req.header('content-type') ?? '';
    const res = await handleOhttp(c.req.raw, {
      keys: () => accepted,
      replay,
      // An error answer of the inference server (or of the forwarder in front of it) counts by its status.
      handler: async (req) => {
        const res = await o.handler(req);
        if (res.status >= 400) errors.sealed(`INNER_STATUS_${res.status}`);
        return res;
      },
      onInnerRejected: (code) => errors.sealed(code),
      authenticate: (body) => authenticated(type, body),
      admit: () => streams.acquire(),
      ...nodeIncoming(c),
      maxRequestBytes: o.maxRequestBytes ?? 4 * 1024 * 1024,
      onDone: (outcome) => {
        outcomes[outcome]++;
        latency.observe({}, (performance.now() - t0) / 1000);
      },
    });
    return res;
  });
  // A session handshake: only from an enclave this worker registered with (its MAC over the init), once per session.
  app.post(SESSION_PATH, async (c) => {
    const header = c.req.header(WORKER_AUTH_HEADER);
    const authenticated = beginAuthentication(header, verifiers);
    const { incoming } = nodeIncoming(c);
    const init = await (incoming ? readIncomingLimited(incoming, 64 * 1024) : readLimited(c.req.raw.body, 64 * 1024));
    await authenticated(MEDIA_SESSION_INIT, init);
    const kid = header!.split(' ')[1]!;
    // The session is bound to this connection (worker/session-gateway.ts); an app served without node:http has none.
    const connection = (incoming as IncomingMessage | undefined)?.socket;
    if (!connection) throw new GmError('protocol', 'SESSION_NO_CONNECTION', 'a session needs a connection to bind to');
    const reply = await sessions.handshake(kid, verifiers.get(kid)!, init, connection);
    return new Response(reply as Uint8Array<ArrayBuffer>, { headers: { 'content-type': MEDIA_SESSION_REPLY, 'cache-control': 'no-store', ...simHeader } });
  });
  app.all('*', () => {
    throw new GmError('protocol', 'NOT_FOUND', 'no such endpoint');
  });
  const acceptCredential = async (enclave: string, sealed: Uint8Array): Promise<void> => {
    const previous = byEnclave.get(enclave);
    const next = await verifierFor(await openCredential(accepted, o.keys.workerId, sealed));
    byEnclave.set(enclave, next);
    if (previous && previous.kid !== next.kid) sessions.dropCredential(previous.kid);
    // An enclave's previous credential (it restarted and made a new one) stops working now.
    verifiers.clear();
    for (const v of byEnclave.values()) verifiers.set(v.kid, v.credential);
  };
  return {
    app, metrics, bundle, rotateKeys, acceptCredential,
    direct: (req, res) => sessions.direct(req, res),
    get keyConfigs() {
      return served.keyConfigs;
    },
  };
}
