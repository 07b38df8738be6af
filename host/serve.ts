/**
 * Serves a fetch handler with @hono/node-server on a host:port (port 0 picks one) and closes it cleanly. The server
 * bounds how long a client may take to send its request (head 10 s, head and body 30 s: then 408 and the socket
 * closes) and how many sockets one source may hold open at once (the socket past the cap is closed at accept).
 */
import { serve } from '@hono/node-server';
import type { AddressInfo, Socket } from 'node:net';
import type { Server } from 'node:http';
import { ConnectionCap, sourceOf } from './limits.ts';

export interface Listening {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface ListenLimits {
  /** Milliseconds to receive the request head (default 10 s). */
  readonly headersTimeoutMs?: number;
  /** Milliseconds to receive the whole request, head and body (default 30 s); responses may stream longer. */
  readonly requestTimeoutMs?: number;
  /** Open sockets per source (IPv4 address or IPv6 /64; default 64). */
  readonly connectionsPerSource?: number;
}

export const DEFAULT_LISTEN_LIMITS = { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, connectionsPerSource: 64 } as const;

type Fetch = Parameters<typeof serve>[0]['fetch'];

export function listen(fetch: Fetch, hostname = '127.0.0.1', port = 0, limits: ListenLimits = {}): Promise<Listening> {
  const l = { ...DEFAULT_LISTEN_LIMITS, ...limits };
  const requestTimeout = l.requestTimeoutMs;
  const headersTimeout = Math.min(l.headersTimeoutMs, requestTimeout);
  const cap = new ConnectionCap(l.connectionsPerSource);
  return new Promise((resolve, reject) => {
    const server = serve(
      { fetch: fetch as Fetch, hostname, port, serverOptions: { headersTimeout, requestTimeout, connectionsCheckingInterval: Math.min(1_000, headersTimeout) } },
      (info: AddressInfo) => {
        const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
        resolve({
          url: `http://${host}:${info.port}`,
          port: info.port,
          close: () => new Promise<void>((r) => {
            const s = server as Server;
            s.closeAllConnections?.();
            s.close(() => r());
          }),
        });
      },
    );
    (server as Server).on('connection', (socket: Socket) => {
      const release = cap.admit(sourceOf(socket.remoteAddress));
      if (!release) {
        socket.destroy();
        return;
      }
      socket.once('close', release);
    });
    (server as Server).once('error', reject);
  });
}
