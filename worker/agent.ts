/**
 * Runs a worker: the gateway app on a socket, the forwarder to the upstream, and registration with each enclave
 * (POST <enclave>/v1/workers, docs/operator.md), renewed at the interval the enclave asks for and retried with
 * backoff when an enclave is unreachable. A refused registration is logged with its code and retried later (the
 * operator may fix the node), never silently ignored.
 */
import { encodeBundle } from '../attestation/bundle.ts';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { toBase64 } from '../attestation/bytes.ts';
import type { Logger } from '../enclave/log.ts';
import { serve, type Served } from '../enclave/serve.ts';
import type { GpuEvidenceSource } from '../enclave/tee/evidence.ts';
import type { TeeProvider } from '../enclave/tee/provider.ts';
import { createWorkerApp, generateWorkerKeys, type WorkerKeys } from './app.ts';
import { createForwarder } from './forward.ts';

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
  /** Signed offers to post with the registration (market, issue 7). */
  readonly offers?: (keys: WorkerKeys, models: readonly string[]) => Promise<readonly Uint8Array[]>;
  readonly keys?: WorkerKeys;
  /** OHTTP key rotation period (default 1 h); each rotation is followed by re-registration with every enclave. */
  readonly keyRotationMs?: number;
}

export interface RunningWorker {
  readonly url: string;
  readonly id: string;
  readonly keys: WorkerKeys;
  readonly served: Served;
  /** Resolves when every enclave accepted the first registration (rejects with the first refusal). */
  readonly registered: Promise<void>;
  /** Rotates the OHTTP keys now and re-registers (also done every keyRotationMs). */
  rotateKeys(): Promise<void>;
  stop(): Promise<void>;
}

async function upstreamModels(upstream: string): Promise<string[]> {
  const base = upstream.replace(/\/+$/, '').replace(/\/v1$/, '');
  const r = await fetch(`${base}/v1/models`, { signal: AbortSignal.timeout(10_000) });
  const j = (await r.json()) as { data?: { id?: unknown }[] };
  return (j.data ?? []).map((m) => m.id).filter((x): x is string => typeof x === 'string');
}

export async function startWorker(o: WorkerOptions): Promise<RunningWorker> {
  setDefaultBackend(nodeBackend); // node:crypto HPKE for the server side (docs/protocol.md §10)
  const keys = o.keys ?? (await generateWorkerKeys());
  const fwd = createForwarder({ upstream: o.upstream });
  const rotationMs = o.keyRotationMs ?? 3600_000;
  const wapp = createWorkerApp({ keys, tee: o.tee, gpu: o.gpu, handler: (r) => fwd.handle(r), log: o.log, replayWindowMs: 2 * rotationMs + 60_000 });
  const served = await serve({ fetch: wapp.app.fetch, listen: o.listen ?? '127.0.0.1:0' });
  const url = o.publicUrl ?? served.url;
  const log = o.log.child({ worker: keys.workerId });
  const models = o.models ?? (await upstreamModels(o.upstream).catch(() => []));
  let stopped = false;
  let stopping: Promise<void> | undefined;
  const timers = new Set<ReturnType<typeof setTimeout>>();

  const registerOnce = async (enclave: string): Promise<number> => {
    const bundle = await wapp.bundle();
    const offers = o.offers ? await o.offers(keys, models) : [];
    const r = await fetch(`${enclave.replace(/\/+$/, '')}/v1/workers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url, bundle: toBase64(encodeBundle(bundle)), models, offers: offers.map(toBase64) }),
      signal: AbortSignal.timeout(60_000),
    });
    const j = (await r.json().catch(() => ({}))) as { worker?: { renewAfterMs?: number }; error?: { code?: string } };
    if (r.status !== 200) throw Object.assign(new Error(`enclave refused registration: ${j.error?.code ?? r.status}`), { code: j.error?.code ?? `HTTP_${r.status}` });
    return Math.max(1_000, j.worker?.renewAfterMs ?? 60_000);
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
              if (first) {
                first = false;
                resolve();
              }
              schedule(renewMs);
            },
            (e: Error & { code?: string }) => {
              log.warn('worker.registration_failed', { enclave, code: e.code ?? 'UNREACHABLE', reason: e.message });
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
    await wapp.rotateKeys();
    for (const k of kicks) k();
  };
  const rotation = setInterval(() => void rotateKeys().catch(() => undefined), rotationMs);
  rotation.unref();
  rotation.unref();
  const registered = Promise.all(loops).then(() => undefined);
  registered.catch(() => undefined);
  log.info('worker.started', { url, upstream: o.upstream, enclaves: o.enclaves.length });
  return {
    url,
    id: keys.workerId,
    keys,
    served,
    registered,
    rotateKeys,
    stop() {
      stopping ??= (async () => {
        stopped = true;
        clearInterval(rotation);
        for (const t of timers) clearTimeout(t);
        timers.clear();
        await served.close(500);
        await fwd.close();
      })();
      return stopping;
    },
  };
}
