/** Serves a fetch handler with @hono/node-server on a host:port (port 0 picks one) and closes it cleanly. */
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';

export interface Listening {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export function listen(fetch: (req: Request) => Response | Promise<Response>, hostname = '127.0.0.1', port = 0): Promise<Listening> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, hostname, port }, (info: AddressInfo) => {
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
    });
    (server as Server).once('error', reject);
  });
}
