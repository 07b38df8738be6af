/**
 * Connection hand-off for a service run as several processes (`gm enclave --processes N`, `gm worker --processes N`):
 * the primary listens and accepts, and hands each connection, unread, to one ready process in turn over the node:cluster
 * IPC channel; the process serves it with `serveHanded` (enclave/serve.ts).
 *
 * - A process is handed connections once it says it serves (`ready`), and none while it has not taken the last one it
 *   was handed (busy, or stuck) while another is free; meanwhile connections wait in the primary, unread.
 * - The primary keeps its own descriptor of a handed connection until the process says it took it (said before any
 *   byte is read). A connection handed to a process that dies before taking it goes to another process, never left
 *   open with no one to read it: node:cluster's own round-robin holds such a connection until its client gives up.
 * - Once taken, the connection is that process's alone: if it dies, the kernel closes the connection and its client
 *   fails at once.
 */
import type { Worker } from 'node:cluster';
import { createServer, type Socket } from 'node:net';
import { listenOn } from './serve.ts';

/** Primary → process: a connection (the message's handle), to take. */
interface Handed {
  readonly gm: 'connection';
  readonly id: number;
}
/** Process → primary: the connection is the process's; the primary may close its descriptor. */
interface Took {
  readonly gm: 'took';
  readonly id: number;
}

export interface Handoff {
  /** The URL the primary listens on. */
  readonly url: string;
  /** Processes handed connections now (ready and not ended). */
  readonly serving: number;
  /** Follows a forked process (call at once): what it took, and its end (what it never took goes to another). */
  follow(w: Worker): void;
  /** The process serves: connections are handed to it from now on, in turn with the others. */
  ready(w: Worker): void;
  /** Accepts no more; connections waiting, or handed and never taken, are closed. */
  close(): void;
}

/** Listens on `listen` (host:port, :port or port; enclave/serve.ts listenOn); rejects when it cannot. */
export async function listenHandoff(listen: string | undefined): Promise<Handoff> {
  const server = createServer({ pauseOnConnect: true });
  const url = await listenOn(server, listen);
  // Processes ready to serve, in the order connections are handed to them.
  const ready: Worker[] = [];
  let turn = 0;
  const ended = new Set<Worker>();
  // Connections handed to a process and not yet taken (the primary's descriptor stays open until then), and those
  // waiting for a free process.
  const handed = new Map<number, { readonly socket: Socket; readonly to: Worker }>();
  const queued: Socket[] = [];
  let ids = 0;
  let stopping = false;

  /** The next process in turn among those that took the last connection they were handed. */
  const free = (): Worker | undefined => {
    const waitingOn = new Set([...handed.values()].map((h) => h.to));
    const k = ready.findIndex((_, i) => !waitingOn.has(ready[(turn + i) % ready.length]!));
    if (k < 0) return undefined;
    turn += k + 1;
    return ready[(turn - 1) % ready.length];
  };
  const give = (socket: Socket, to: Worker) => {
    const id = ++ids;
    handed.set(id, { socket, to });
    // keepOpen: the primary's descriptor is closed when the process took the connection (or handed on if it died).
    to.send({ gm: 'connection', id } satisfies Handed, socket, { keepOpen: true }, (e: Error | null) => {
      if (e) rehand(id);
    });
  };
  /** Hands waiting connections on, oldest first, while a process is free. */
  const drain = () => {
    while (queued.length > 0) {
      const to = free();
      if (!to) return;
      give(queued.shift()!, to);
    }
  };
  const rehand = (id: number) => {
    const h = handed.get(id);
    if (!h) return;
    handed.delete(id);
    if (stopping) {
      h.socket.destroy();
      return;
    }
    queued.unshift(h.socket); // accepted before those waiting
    drain();
  };
  server.on('connection', (socket: Socket) => {
    // A client that goes away while its connection waits is closed with it; nothing is read here.
    socket.on('error', () => socket.destroy());
    if (stopping) {
      socket.destroy();
      return;
    }
    // While no process is free the connection waits here, unread.
    queued.push(socket);
    drain();
  });

  return {
    url,
    get serving() {
      return ready.length;
    },
    follow(w) {
      const unready = () => {
        ended.add(w);
        const i = ready.indexOf(w);
        if (i >= 0) ready.splice(i, 1);
      };
      w.on('message', (m: Partial<Took> | null) => {
        if (m?.gm !== 'took' || typeof m.id !== 'number') return;
        const h = handed.get(m.id);
        if (h?.to !== w) return;
        handed.delete(m.id);
        h.socket.destroy(); // the primary's descriptor only: the process holds its own
        drain();
      });
      // It exited and its channel was read to the end: every message it sent has been seen (a 'took' included), so
      // the connections still handed to it were not taken and none of their bytes was read: they go to another
      // process. (Not on 'disconnect': node defers that while a handle it sent waits for the dead process's receipt.)
      w.on('disconnect', unready);
      w.on('exit', unready);
      w.process.once('close', () => {
        unready();
        for (const id of [...handed].filter(([, h]) => h.to === w).map(([id]) => id)) rehand(id);
        drain();
      });
    },
    ready(w) {
      if (ended.has(w) || ready.includes(w)) return;
      ready.push(w);
      drain();
    },
    close() {
      stopping = true;
      server.close();
      for (const s of queued.splice(0)) s.destroy();
    },
  };
}

/**
 * In a process: takes the connection of a hand-off message (`handle` is its socket) into `take` (a `serveHanded`
 * server's), saying so first; returns false for any other message. Said before any byte is read, so a connection the
 * primary hands on (to a process dying before this message left) was read by no one.
 */
export function takeHanded(m: unknown, handle: unknown, take: ((socket: Socket) => void) | undefined): boolean {
  if ((m as Partial<Handed> | null)?.gm !== 'connection') return false;
  process.send!({ gm: 'took', id: (m as Handed).id } satisfies Took);
  const socket = handle as Socket | undefined;
  if (socket && take) take(socket);
  else socket?.destroy(); // never: connections come only after the process said it is ready
  return true;
}
