/**
 * Serving a hono app on Node (@hono/node-server) with the listening URL, a bounded header size, head and whole-request
 * timeouts (so a slow client holds a socket for a bounded time), and a clean stop
 * that closes idle keep-alive sockets and ends in-flight ones after a grace period. Shared by the enclave, the worker
 * and the dev-model.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { getRequestListener } from '@hono/node-server';

/** What a service's run() needs from its process (the `gm` command line passes its own). */
export interface ServiceIo {
  out(s: string): void;
  err(s: string): void;
  readFile(path: string): Promise<Uint8Array>;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export interface Served {
  readonly url: string;
  readonly server: Server;
  close(graceMs?: number): Promise<void>;
}

export interface ServeOptions {
  readonly fetch: (req: Request, env: { incoming: IncomingMessage; outgoing: ServerResponse }) => Response | Promise<Response>;
  /**
   * The hot paths on node:http directly (no web Request/Response per request): offered each request first, and
   * returns true when it took it; everything else goes to `fetch` (the control endpoints on hono).
   */
  readonly direct?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** host:port, :port or port; default 127.0.0.1:0 (an ephemeral loopback port). */
  readonly listen?: string;
  /** Maximum size of the request head in bytes (node's maxHeaderSize); larger heads get 431 before any handler runs. */
  readonly maxHeaderSize?: number;
  /** Milliseconds to receive the whole request head (default 10 s); past it node answers 408 and closes. */
  readonly headersTimeoutMs?: number;
  /**
   * Milliseconds to receive the whole request, head and body (default 30 s): a body trickled in byte by byte holds its
   * socket no longer than this (408, then closed). Responses are not bounded by it: a long answer streams on.
   */
  readonly requestTimeoutMs?: number;
}

/** Default head and whole-request timeouts of every gm server (node checks them every second). */
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export function parseListen(s: string | undefined): { host: string; port: number } {
  if (!s) return { host: '127.0.0.1', port: 0 };
  const m = /^(?:(\[[^\]]+\]|[^:]*):)?(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--listen must be HOST:PORT, :PORT or PORT (got ${s})`);
  return { host: (m[1] || '127.0.0.1').replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/**
 * Node server options with the head and whole-request timeouts set (node's `requestTimeout` 0 would let a slow body
 * hold its socket forever). headersTimeout must not exceed requestTimeout; the check runs every second so a short
 * timeout in a test is honoured promptly.
 */
export function serverTimeouts<T extends object>(base: T, o: { headersTimeoutMs?: number; requestTimeoutMs?: number } = {}): T & { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number } {
  const requestTimeout = o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const headersTimeout = Math.min(o.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS, requestTimeout);
  if (!(requestTimeout > 0)) throw new RangeError('requestTimeoutMs must be positive');
  return { ...base, headersTimeout, requestTimeout, connectionsCheckingInterval: Math.min(1_000, headersTimeout) };
}

/** The node:http server of `serve` and `serveHanded`, not yet listening. */
function httpServer(o: Omit<ServeOptions, 'listen'>): Server {
  const listener = getRequestListener(o.fetch as Parameters<typeof getRequestListener>[0], { overrideGlobalObjects: false });
  const direct = o.direct;
  return createServer(serverTimeouts({ maxHeaderSize: o.maxHeaderSize ?? 16 * 1024, keepAliveTimeout: 5_000 }, o), direct ? (req, res) => {
    if (!direct(req, res)) void listener(req, res);
  } : listener);
}

/** Listens on `listen` (host:port, :port or port); resolves with the URL it is reachable at, rejects when it cannot. */
export async function listenOn(server: NetServer, listen: string | undefined): Promise<string> {
  const { host, port } = parseListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
}

export async function serve(o: ServeOptions): Promise<Served> {
  const server = httpServer(o);
  const url = await listenOn(server, o.listen);
  return {
    url,
    server,
    close: (graceMs = 2_000) =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        const t = setTimeout(() => server.closeAllConnections(), graceMs);
        t.unref();
      }),
  };
}

/** A server that listens on nothing and serves the connections it is given. */
export interface HandedServer {
  readonly server: Server;
  /** Serves an accepted connection (after close(): ends it at once). */
  take(socket: Socket): void;
  /** Takes no more; ends idle keep-alive connections now and the rest after the grace period; resolves when none is left. */
  close(graceMs?: number): Promise<void>;
}

/**
 * The server of one process of a multi-process service (enclave/handoff.ts): the primary accepts every connection
 * and hands each to one process, which serves it here with the same handler, head size and timeouts as `serve`.
 */
export function serveHanded(o: Omit<ServeOptions, 'listen'>): HandedServer {
  const server = httpServer(o);
  // node:http tracks connections (the head and whole-request timeouts, closeIdleConnections) from its server's
  // 'listening' event on; this server never binds a socket of its own, so the tracking is started here.
  server.emit('listening');
  const open = new Set<Socket>();
  let closing: (() => void) | undefined;
  return {
    server,
    take(socket) {
      if (closing) {
        socket.destroy();
        return;
      }
      open.add(socket);
      socket.once('close', () => {
        open.delete(socket);
        if (open.size === 0) closing?.();
      });
      server.emit('connection', socket);
    },
    close: (graceMs = 2_000) =>
      new Promise<void>((resolve) => {
        closing = resolve;
        server.close();
        server.closeIdleConnections();
        if (open.size === 0) resolve();
        const t = setTimeout(() => server.closeAllConnections(), graceMs);
        t.unref();
      }),
  };
}

/** Resolves on the first SIGINT/SIGTERM (CLI servers), after which `stop` runs. */
export function onSignal(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const h = () => {
      process.off('SIGINT', h);
      process.off('SIGTERM', h);
      void stop().then(resolve, resolve);
    };
    process.on('SIGINT', h);
    process.on('SIGTERM', h);
  });
}
