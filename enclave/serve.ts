/**
 * Serving a hono app on Node (@hono/node-server) with the listening URL, a bounded header size, and a clean stop
 * that closes idle keep-alive sockets and ends in-flight ones after a grace period. Shared by the enclave, the worker
 * and the dev-model.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';

export interface Served {
  readonly url: string;
  readonly server: Server;
  close(graceMs?: number): Promise<void>;
}

export interface ServeOptions {
  readonly fetch: (req: Request, env: { incoming: IncomingMessage; outgoing: ServerResponse }) => Response | Promise<Response>;
  /** host:port, :port or port; default 127.0.0.1:0 (an ephemeral loopback port). */
  readonly listen?: string;
  /** Maximum size of the request head in bytes (node's maxHeaderSize); larger heads get 431 before any handler runs. */
  readonly maxHeaderSize?: number;
  /** Milliseconds to receive the whole request head. */
  readonly headersTimeoutMs?: number;
}

export function parseListen(s: string | undefined): { host: string; port: number } {
  if (!s) return { host: '127.0.0.1', port: 0 };
  const m = /^(?:(\[[^\]]+\]|[^:]*):)?(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--listen must be HOST:PORT, :PORT or PORT (got ${s})`);
  return { host: (m[1] || '127.0.0.1').replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export async function serve(o: ServeOptions): Promise<Served> {
  const { host, port } = parseListen(o.listen);
  const listener = getRequestListener(o.fetch as Parameters<typeof getRequestListener>[0], { overrideGlobalObjects: false });
  const server = createServer({ maxHeaderSize: o.maxHeaderSize ?? 16 * 1024, headersTimeout: o.headersTimeoutMs ?? 10_000, requestTimeout: 0, keepAliveTimeout: 5_000 }, listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
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
