/**
 * `gm enclave --processes N` (node:cluster): one listening socket shared by N processes of one enclave.
 *
 * - Keys: the primary makes the key material once (gateway private keys and the receipt-signing seed) and hands it
 *   to each process over the cluster's IPC channel (a pipe between processes of the same TEE, never a file or the
 *   environment); every process imports the same keys and so serves and attests the same key configuration. Key
 *   rotation is the primary's: it makes the next material and pushes it to every process at once.
 * - Workers: a registration accepted by one process is relayed through the primary to every other one, which adopts
 *   it through the same verification (signature, freshness, its own challenge) with the credential the worker was
 *   given; the registration is answered only when all of them hold the worker, so it is routable from each. Signed
 *   cancels are relayed likewise. The primary keeps the latest relayed registration per worker (in memory) and gives
 *   them to a process that replaces one that died; a registration older than the enclave's skew limit is refused
 *   there and the worker is learnt at its next renewal.
 * - Ledger: each process opens the same ledger (SQLite in WAL mode with a busy timeout, or PostgreSQL); holds are
 *   reservations in the database, so processes cannot spend the same funds twice. The house and sim accounts are
 *   created once, by the primary. An in-memory ledger cannot be shared: with it the enclave runs one process.
 * - Connections: the primary listens and accepts, and hands each connection to one ready process in turn (a process is
 *   ready once it holds the keys and the workers the enclave holds, and serves), as enclave/handoff.ts does for every
 *   multi-process service: none to a process that has not taken the last one it was handed, and a connection handed
 *   to a process that dies before taking it goes to another, never left open with no one to read it.
 * - A process that exits unexpectedly is replaced; what it had answered is in the ledger already (a receipt is
 *   durable before its answer leaves), and requests it was serving fail on their connections.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { DEFAULT_SYMMETRIC, encodeKeyConfigs, gatewayKeyFromPrivateKey } from '../protocol/ohttp.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import type { RelayedRegistration } from './app.ts';
import { listenHandoff, takeHanded } from './handoff.ts';
import { GATEWAY_KEMS, type EnclaveKeys, type GatewayKeySet } from './keys.ts';
import { signerFromSeed } from './ledger/signer.ts';
import type { Logger } from './log.ts';

/** The private key material of one rotation period's gateway keys. */
export interface GatewayMaterial {
  readonly keys: readonly { readonly keyId: number; readonly kemId: number; readonly sk: Uint8Array }[];
}
export interface KeyMaterial {
  readonly gateway: GatewayMaterial;
  readonly receiptSeed: Uint8Array;
}

/** Fresh gateway material: random distinct key ids outside `avoid`, a 32-byte secret per KEM (X-Wing seed, X25519 scalar). */
export function newGatewayMaterial(avoid: readonly number[] = [], kems: readonly number[] = GATEWAY_KEMS): GatewayMaterial {
  const ids: number[] = [];
  while (ids.length < kems.length) {
    const id = randomBytes(1)[0]!;
    if (!avoid.includes(id) && !ids.includes(id)) ids.push(id);
  }
  return { keys: kems.map((kemId, i) => ({ keyId: ids[i]!, kemId, sk: new Uint8Array(randomBytes(32)) })) };
}

export async function gatewayKeysFrom(m: GatewayMaterial): Promise<GatewayKeySet> {
  const gateway = await Promise.all(m.keys.map((k) => gatewayKeyFromPrivateKey(k.keyId, k.sk, DEFAULT_SYMMETRIC, { backend: nodeBackend, kemId: k.kemId })));
  return { gateway, keyConfigs: encodeKeyConfigs(gateway.map((g) => g.config)) };
}

export async function enclaveKeysFrom(m: KeyMaterial): Promise<EnclaveKeys> {
  return { ...(await gatewayKeysFrom(m.gateway)), receipt: signerFromSeed(m.receiptSeed) };
}

/** Primary → process. */
type Down =
  | { readonly gm: 'start'; readonly instance: number; readonly material: KeyMaterial; readonly shared: unknown; readonly registrations: readonly RelayedRegistration[] }
  | { readonly gm: 'rotate'; readonly gateway: GatewayMaterial }
  | { readonly gm: 'adopt'; readonly id: number; readonly registration: RelayedRegistration }
  | { readonly gm: 'adopt-cancel'; readonly id: number; readonly workerId: string; readonly cancel: Uint8Array }
  | { readonly gm: 'relayed'; readonly id: number };
/** Process → primary. */
type Up =
  | { readonly gm: 'ready' }
  | { readonly gm: 'registered'; readonly id: number; readonly workerId: string; readonly registration: RelayedRegistration }
  | { readonly gm: 'cancelled'; readonly id: number; readonly workerId: string; readonly cancel: Uint8Array }
  | { readonly gm: 'adopted'; readonly id: number };

export interface PrimaryOptions {
  readonly processes: number;
  readonly log: Logger;
  /** Made once: shared state the processes need (the house account's id, ...), passed along with the keys. */
  readonly shared: unknown;
  readonly material: KeyMaterial;
  readonly rotationMs: number;
  /** host:port, :port or port (enclave/serve.ts parseListen); the primary listens, the processes serve (enclave/handoff.ts). */
  readonly listen?: string;
  /** Called once, when every process is ready, with the URL. */
  onListening(url: string): void;
}

/**
 * Runs the primary until SIGTERM/SIGINT; resolves when every process has exited, with the exit code (1 when a
 * process failed before it was ready: it would fail again, so nothing is restarted). Rejects when it cannot listen.
 */
export async function runPrimary(o: PrimaryOptions): Promise<number> {
  const handoff = await listenHandoff(o.listen);
  cluster.setupPrimary({ serialization: 'advanced' });
  let gateway = o.material.gateway;
  let previousIds: number[] = [];
  const latest = new Map<string, RelayedRegistration>();
  const processes = new Map<Worker, number>();
  const wasReady = new Set<Worker>();
  let stopping = false;
  let failedStart = false;
  let stopAll: () => void = () => undefined;
  let announced = false;
  // Relays in flight: which processes still have to adopt, and who asked.
  const pending = new Map<number, { readonly from: Worker; readonly waiting: Set<Worker> }>();

  const finish = (id: number, w: Worker) => {
    const p = pending.get(id);
    if (!p) return;
    p.waiting.delete(w);
    if (p.waiting.size === 0) {
      pending.delete(id);
      if (p.from.isConnected()) p.from.send({ gm: 'relayed', id } satisfies Down);
    }
  };
  const relay = (from: Worker, m: Down & { id: number }) => {
    const others = [...processes.keys()].filter((w) => w !== from && w.isConnected());
    pending.set(m.id, { from, waiting: new Set(others) });
    for (const w of others) w.send(m);
    if (others.length === 0) finish(m.id, from);
  };

  const spawn = (instance: number) => {
    const w = cluster.fork();
    processes.set(w, instance);
    handoff.follow(w);
    w.on('online', () => w.send({ gm: 'start', instance, material: { ...o.material, gateway }, shared: o.shared, registrations: [...latest.values()] } satisfies Down));
    w.on('message', (m: Up) => {
      if (m.gm === 'ready') {
        if (wasReady.has(w) || !processes.has(w)) return;
        wasReady.add(w);
        handoff.ready(w);
        // Announced once every process of the first start is ready (until then connections reach only some).
        if (!announced && handoff.serving >= o.processes) {
          announced = true;
          o.onListening(handoff.url);
        }
      } else if (m.gm === 'registered') {
        latest.set(m.workerId, m.registration);
        relay(w, { gm: 'adopt', id: m.id, registration: m.registration });
      } else if (m.gm === 'cancelled') relay(w, { gm: 'adopt-cancel', id: m.id, workerId: m.workerId, cancel: m.cancel });
      else if (m.gm === 'adopted') finish(m.id, w);
    });
    w.on('exit', (code, signal) => {
      processes.delete(w);
      // A process that went away adopts nothing more: relays waiting on it complete without it.
      for (const [id] of pending) finish(id, w);
      if (stopping) return;
      o.log.warn('enclave.process_exited', { instance, code: code ?? -1, signal: signal ?? '' });
      if (!wasReady.has(w)) {
        failedStart = true;
        stopAll();
        return;
      }
      spawn(instance);
    });
  };
  for (let i = 1; i <= o.processes; i++) spawn(i);

  const rotation = setInterval(() => {
    const avoid = [...gateway.keys.map((k) => k.keyId), ...previousIds];
    previousIds = gateway.keys.map((k) => k.keyId);
    gateway = newGatewayMaterial(avoid, gateway.keys.map((k) => k.kemId));
    for (const w of processes.keys()) w.send({ gm: 'rotate', gateway } satisfies Down);
  }, o.rotationMs);
  rotation.unref();

  return new Promise((resolve) => {
    const done = () => resolve(failedStart ? 1 : 0);
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      stopping = true;
      clearInterval(rotation);
      handoff.close();
      const left = [...processes.keys()];
      if (left.length === 0) done();
      let n = left.length;
      for (const w of left) {
        w.once('exit', () => {
          if (--n === 0) done();
        });
        w.process.kill('SIGTERM');
      }
    };
    stopAll = stop;
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/** What a process of a multi-process enclave gets from its primary, and how it talks back. */
export interface ChildLink {
  readonly instance: number;
  readonly material: KeyMaterial;
  readonly shared: unknown;
  /** Registrations the enclave already holds (for a process that replaces one). */
  readonly registrations: readonly RelayedRegistration[];
  readonly relay: {
    registered(r: RelayedRegistration & { readonly workerId: string }): Promise<void>;
    cancelled(workerId: string, cancel: Uint8Array): Promise<void>;
  };
  /** Closes the channel to the primary (it would keep this process alive once its server closed). */
  close(): void;
  /**
   * Handles the primary's pushes (keys to rotate to, registrations and cancels to adopt) and serves the connections
   * it hands over with `take`. Resolves once the pushes that arrived before are applied and the primary knows this
   * process is ready: connections come only from then on.
   */
  serve(h: PushHandlers & { take(socket: Socket): void }): Promise<void>;
}

export interface PushHandlers {
  rotate(g: GatewayKeySet): Promise<void>;
  adopt(r: RelayedRegistration): Promise<void>;
  adoptCancel(workerId: string, cancel: Uint8Array): Promise<void>;
}

export function isClusterProcess(): boolean {
  return cluster.isWorker;
}

/** In a process forked by runPrimary: waits for the primary's start message. */
export function childLink(log: Logger): Promise<ChildLink> {
  return new Promise((resolve) => {
    let next = 0;
    const waiting = new Map<number, () => void>();
    let handlers: Parameters<ChildLink['serve']>[0] | undefined;
    // Pushes that arrive before the enclave exists wait for it.
    const early: Down[] = [];
    const send = (m: Up) => process.send!(m);
    const ask = (m: (id: number) => Up) =>
      new Promise<void>((res) => {
        const id = ++next * 1000 + (cluster.worker?.id ?? 0); // unique across processes: the primary keys relays by it
        waiting.set(id, res);
        send(m(id));
      });
    process.on('message', (m: Down, handle: unknown) => {
      if (takeHanded(m, handle, handlers && ((socket) => handlers!.take(socket)))) return;
      if (m.gm === 'start') {
        resolve({
          instance: m.instance,
          material: m.material,
          shared: m.shared,
          registrations: m.registrations,
          relay: {
            registered: (r) => ask((id) => ({ gm: 'registered', id, workerId: r.workerId, registration: { registration: r.registration, credential: r.credential } })),
            cancelled: (workerId, cancel) => ask((id) => ({ gm: 'cancelled', id, workerId, cancel })),
          },
          close: () => process.disconnect?.(),
          serve: async (h) => {
            handlers = h;
            // Pushes that arrived before the enclave existed (a registration relayed while this process started)
            // are applied before it says it is ready.
            await Promise.all(early.splice(0).map((x) => onPush(x)));
            send({ gm: 'ready' });
          },
        });
      } else if (m.gm === 'relayed') {
        waiting.get(m.id)?.();
        waiting.delete(m.id);
      } else if (!handlers) early.push(m);
      else void onPush(m);
    });
    const onPush = async (m: Down): Promise<void> => {
      if (!handlers) return;
      if (m.gm === 'rotate') {
        const h = handlers;
        await gatewayKeysFrom(m.gateway).then((g) => h.rotate(g)).catch((e: unknown) => log.error('enclave.rotation_failed', { cause: String(e) }));
      } else if (m.gm === 'adopt') {
        // A worker another process verified: verified here too (a refusal is logged; the relay completes either way).
        await handlers.adopt(m.registration)
          .catch((e: unknown) => log.warn('enclave.adopt_failed', { code: (e as { code?: string }).code ?? 'INTERNAL' }))
          .finally(() => send({ gm: 'adopted', id: m.id }));
      } else if (m.gm === 'adopt-cancel') {
        await handlers.adoptCancel(m.workerId, m.cancel)
          .catch((e: unknown) => log.warn('enclave.adopt_cancel_failed', { code: (e as { code?: string }).code ?? 'INTERNAL' }))
          .finally(() => send({ gm: 'adopted', id: m.id }));
      }
    };
  });
}
