/**
 * A local HTTP server standing in for a vendor collateral service (AMD KDS, Intel PCS, NVIDIA RIM/OCSP) in tests
 * and the demo: a fixed route table, a log of every request, scripted failures (429 with Retry-After, 5xx), and
 * `close()` to cut "the network to the vendor".
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeResponse {
  readonly status?: number;
  readonly body: Uint8Array | string;
  readonly headers?: Record<string, string>;
}

export interface FakeVendor {
  readonly url: string;
  /** Every request as `METHOD path?query`. */
  readonly log: string[];
  /** Path (with query) → response. Mutable: tests swap responses. */
  readonly routes: Map<string, FakeResponse>;
  /** Responses served before the route table, one per request (scripted failures). */
  readonly script: FakeResponse[];
  /** Consulted after the script and before the route table, e.g. to answer a POST by its body (OCSP requests). */
  respond: ((method: string, url: string, body: Uint8Array) => FakeResponse | undefined) | undefined;
  close(): Promise<void>;
}

export async function startFakeVendor(routes: Record<string, FakeResponse> = {}): Promise<FakeVendor> {
  const table = new Map(Object.entries(routes));
  const log: string[] = [];
  const script: FakeResponse[] = [];
  const self: { respond: FakeVendor['respond'] } = { respond: undefined };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      log.push(`${req.method} ${req.url}`);
      const r = script.shift() ?? self.respond?.(req.method ?? 'GET', req.url ?? '', new Uint8Array(Buffer.concat(chunks))) ?? table.get(req.url ?? '') ?? { status: 404, body: 'not found' };
      res.writeHead(r.status ?? 200, r.headers ?? {});
      res.end(typeof r.body === 'string' ? r.body : Buffer.from(r.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    routes: table,
    script,
    get respond() {
      return self.respond;
    },
    set respond(f) {
      self.respond = f;
    },
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
