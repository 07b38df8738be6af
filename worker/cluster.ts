/**
 * `gm worker --processes N` (node:cluster): N processes serving one attested worker from one listening socket
 * (docs/performance.md "Every core", docs/protocol.md §14.4).
 *
 * - One identity. The primary makes the worker's keys once: the gateway key material (sent to each process over the
 *   cluster's IPC channel, a pipe inside the same TEE, never a file or the environment) and the offer-signing key,
 *   which never leaves the primary (the processes hold its public key: they sign nothing). Evidence comes from one
 *   place: a process asks the primary to produce the CPU and GPU evidence for the REPORT_DATA it computed, so every
 *   bundle any process serves binds the same keys, the same worker id and the same model manifest.
 * - Registration is the primary's (worker/agent.ts): it attests each enclave, registers, renews and rotates. The
 *   credential an enclave returns, a rotation's next keys and the model manifest are pushed to every process and
 *   acknowledged by each before the primary goes on (a registration is reported only once every process can serve
 *   the enclave).
 * - Sessions stay in the process that accepted their connection (worker/session-gateway.ts binds each session to its
 *   connection), so nothing about them is shared. The per-request OHTTP hop is not served by a multi-process worker:
 *   its replay window would be per process, and a message replayed to another process would be opened again.
 * - Connections: the primary listens and hands each connection, unread, to one process that serves (enclave/handoff.ts):
 *   none to a process that has not taken the last one it was handed, and one handed to a process that dies before
 *   taking it goes to another process instead of waiting, unanswered, on the enclave's side until its timeout.
 * - A process that exits unexpectedly is replaced with the current keys, manifest and credentials; the exchanges it
 *   was serving fail on their connections, and the enclave makes new sessions on new connections.
 */
import cluster, { type Worker } from 'node:cluster';
import { GmError } from '../attestation/errors.ts';
import type { GatewayMaterial } from '../enclave/cluster.ts';
import { listenHandoff, takeHanded } from '../enclave/handoff.ts';
import type { Logger } from '../enclave/log.ts';
import type { HandedServer } from '../enclave/serve.ts';
import type { GpuEvidence } from '../attestation/bundle.ts';
import type { GpuEvidenceSource } from '../enclave/tee/evidence.ts';
import type { CpuEvidence, TeeProvider } from '../enclave/tee/provider.ts';

/** What every process must hold; pushed to all of them (and given to a replacement at its start). */
export type Shared =
  | { readonly rotate: GatewayMaterial }
  | { readonly manifest: Uint8Array | undefined }
  | { readonly credential: readonly [enclave: string, sealed: Uint8Array] };

/** Primary → process. */
type Down =
  | { readonly gm: 'start'; readonly start: ProcessStart }
  | { readonly gm: 'push'; readonly id: number; readonly shared: Shared }
  | { readonly gm: 'evidence'; readonly id: number; readonly ok: true; readonly value: CpuEvidence | readonly GpuEvidence[] }
  | { readonly gm: 'evidence'; readonly id: number; readonly ok: false; readonly code: string; readonly message: string };
/** Process → primary. */
type Up =
  | { readonly gm: 'ready' }
  | { readonly gm: 'ack'; readonly id: number }
  | { readonly gm: 'cpu'; readonly id: number; readonly reportData: Uint8Array }
  | { readonly gm: 'gpu'; readonly id: number; readonly nonce: Uint8Array };

/** A process's start: the identity and everything pushed so far. */
export interface ProcessStart {
  readonly instance: number;
  readonly sim: boolean;
  readonly workerId: string;
  readonly signingKey: Uint8Array;
  /** The served gateway material and the one before it (still accepted until the next rotation). */
  readonly gateway: GatewayMaterial;
  readonly previous?: GatewayMaterial;
  readonly manifest?: Uint8Array;
  readonly credentials: readonly (readonly [string, Uint8Array])[];
}

export interface WorkerPrimaryOptions {
  readonly processes: number;
  readonly log: Logger;
  readonly tee: TeeProvider;
  readonly gpu: GpuEvidenceSource;
  readonly workerId: string;
  readonly signingKey: Uint8Array;
  readonly gateway: GatewayMaterial;
  /** host:port, :port or port (enclave/serve.ts parseListen); the primary listens, the processes serve. */
  readonly listen?: string;
}

export interface WorkerProcesses {
  /** The URL the primary listens on (and the processes serve). */
  readonly url: string;
  /** Pushes to every process; resolves when each has taken it (a process that exits meanwhile counts as done). */
  push(s: Shared): Promise<void>;
  /** SIGTERM to every process; resolves when all have exited. */
  close(): Promise<void>;
}

const failure = (e: unknown) => ({ code: (e as { code?: unknown }).code === undefined ? 'EVIDENCE_FAILED' : String((e as { code?: unknown }).code), message: String((e as Error).message ?? e) });

/**
 * Listens, starts the processes and resolves once every one serves (rejects when it cannot listen, or when a process
 * exits before it served: it would fail again, so nothing is restarted then).
 */
export async function startWorkerProcesses(o: WorkerPrimaryOptions): Promise<WorkerProcesses> {
  const handoff = await listenHandoff(o.listen);
  cluster.setupPrimary({ serialization: 'advanced' });
  let gateway = o.gateway;
  let previous: GatewayMaterial | undefined;
  let manifest: Uint8Array | undefined;
  const credentials = new Map<string, Uint8Array>();
  const processes = new Map<Worker, number>();
  // Processes sent their start: later state reaches them as pushes (the others get it in their start).
  const sent = new Set<Worker>();
  const serving = new Set<Worker>();
  let stopping = false;
  let next = 0;
  const pending = new Map<number, Set<Worker>>();
  const acked = new Map<number, () => void>();
  const done = (id: number, w: Worker) => {
    const waiting = pending.get(id);
    if (!waiting) return;
    waiting.delete(w);
    if (waiting.size === 0) {
      pending.delete(id);
      acked.get(id)?.();
      acked.delete(id);
    }
  };

  return new Promise((resolve, reject) => {
    let started = false;
    const answer = (w: Worker, id: number, p: Promise<CpuEvidence | readonly GpuEvidence[]>) =>
      p.then(
        (value) => w.isConnected() && w.send({ gm: 'evidence', id, ok: true, value } satisfies Down),
        (e: unknown) => w.isConnected() && w.send({ gm: 'evidence', id, ok: false, ...failure(e) } satisfies Down),
      );
    const spawn = (instance: number) => {
      const w = cluster.fork();
      processes.set(w, instance);
      handoff.follow(w);
      w.on('online', () => {
        const start: ProcessStart = { instance, sim: o.tee.sim, workerId: o.workerId, signingKey: o.signingKey, gateway, ...(previous ? { previous } : {}), ...(manifest ? { manifest } : {}), credentials: [...credentials] };
        w.send({ gm: 'start', start } satisfies Down);
        sent.add(w);
      });
      w.on('message', (m: Up) => {
        if (m.gm === 'ready') {
          if (serving.has(w) || !processes.has(w)) return;
          serving.add(w);
          handoff.ready(w);
          if (!started && serving.size >= o.processes) {
            started = true;
            resolve(group);
          }
        } else if (m.gm === 'ack') done(m.id, w);
        else if (m.gm === 'cpu') void answer(w, m.id, o.tee.cpuEvidence(m.reportData));
        else if (m.gm === 'gpu') void answer(w, m.id, o.gpu(m.nonce));
      });
      w.on('exit', (code, signal) => {
        processes.delete(w);
        sent.delete(w);
        for (const id of [...pending.keys()]) done(id, w);
        if (stopping) return;
        o.log.warn('worker.process_exited', { instance, code: code ?? -1, signal: signal ?? '' });
        if (!serving.has(w)) {
          void group.close();
          if (!started) reject(new GmError('config', 'WORKER_PROCESS_FAILED', `worker process ${instance} exited before it served (code ${code ?? -1})`));
          else {
            // A replacement that cannot start would fail again: the worker stops as on SIGTERM (offers withdrawn).
            o.log.error('worker.process_failed', { instance, code: code ?? -1 });
            process.kill(process.pid, 'SIGTERM');
          }
          return;
        }
        spawn(instance);
      });
    };

    const group: WorkerProcesses = {
      url: handoff.url,
      push(s) {
        // Kept first, so a process started from now on gets it in its start.
        if ('rotate' in s) {
          previous = gateway;
          gateway = s.rotate;
        } else if ('manifest' in s) manifest = s.manifest;
        else credentials.set(s.credential[0], s.credential[1]);
        const to = [...sent].filter((w) => w.isConnected());
        if (to.length === 0) return Promise.resolve();
        const id = ++next;
        return new Promise<void>((ok) => {
          pending.set(id, new Set(to));
          acked.set(id, ok);
          for (const w of to) w.send({ gm: 'push', id, shared: s } satisfies Down);
        });
      },
      close() {
        stopping = true;
        handoff.close();
        const left = [...processes.keys()];
        return Promise.all(left.map((w) => new Promise<void>((ok) => {
          if (w.isDead()) return ok();
          w.once('exit', () => ok());
          w.process.kill('SIGTERM');
        }))).then(() => undefined);
      },
    };
    for (let i = 1; i <= o.processes; i++) spawn(i);
  });
}

export function isWorkerProcess(): boolean {
  return cluster.isWorker;
}

/** In a process forked by startWorkerProcesses: its start, evidence through the primary, and the pushes. */
export interface ProcessLink {
  readonly start: ProcessStart;
  /** The TEE as seen from a process: evidence for REPORT_DATA, made by the primary. */
  readonly tee: TeeProvider;
  readonly gpu: GpuEvidenceSource;
  /** Says the process serves: the primary hands it connections from then on, taken into `server`. */
  ready(server: HandedServer): void;
  /** Takes the pushes (those that came before are handled first, in order); a failed one is logged. */
  serve(h: (s: Shared) => Promise<void>, log: Logger): void;
  close(): void;
}

export function processLink(): Promise<ProcessLink> {
  return new Promise((resolve) => {
    let next = 0;
    const asked = new Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void }>();
    const early: { id: number; shared: Shared }[] = [];
    let handler: ((s: Shared) => Promise<void>) | undefined;
    let handedTo: HandedServer | undefined;
    let log: Logger | undefined;
    // Pushes are applied one after another, in the order sent (a rotation before the credential sealed to it).
    let chain = Promise.resolve();
    const send = (m: Up): void => void process.send!(m);
    const apply = (id: number, s: Shared) => {
      const h = handler!;
      chain = chain
        .then(() => h(s))
        .catch((e: unknown) => log?.error('worker.push_failed', { code: failure(e).code }))
        .then(() => send({ gm: 'ack', id }));
    };
    const ask = <T>(m: (id: number) => Up) =>
      new Promise<T>((ok, fail) => {
        const id = ++next;
        asked.set(id, { ok: ok as (v: unknown) => void, fail });
        send(m(id));
      });
    process.on('message', (m: Down, handle: unknown) => {
      if (takeHanded(m, handle, handedTo && ((socket) => handedTo!.take(socket)))) return;
      if (m.gm === 'start') {
        resolve({
          start: m.start,
          tee: { kind: m.start.sim ? 'sim' : 'configfs', sim: m.start.sim, cpuEvidence: (reportData) => ask<CpuEvidence>((id) => ({ gm: 'cpu', id, reportData })) },
          gpu: (nonce) => ask<readonly GpuEvidence[]>((id) => ({ gm: 'gpu', id, nonce })),
          ready: (server) => {
            handedTo = server;
            send({ gm: 'ready' });
          },
          serve: (h, l) => {
            handler = h;
            log = l;
            for (const x of early.splice(0)) apply(x.id, x.shared);
          },
          close: () => void process.disconnect?.(),
        });
      } else if (m.gm === 'push') {
        if (handler) apply(m.id, m.shared);
        else early.push({ id: m.id, shared: m.shared });
      } else if (m.gm === 'evidence') {
        const a = asked.get(m.id);
        asked.delete(m.id);
        if (m.ok) a?.ok(m.value);
        else a?.fail(new GmError('unavailable', m.code, m.message));
      }
    });
  });
}
