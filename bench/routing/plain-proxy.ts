/**
 * The reference hop of the routing bench: a plain Node reverse proxy (node:http server, undici Pool with keep-alive
 * to its upstream), no encryption, no parsing beyond HTTP. `node bench/routing/plain-proxy.ts <upstream>` prints
 * `listening on <url>`. Two of them in a row are the plain two-hop chain gm's throughput is compared with.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';

const upstream = process.argv[2];
if (!upstream) throw new Error('usage: plain-proxy.ts <upstream url>');
const pool = new Pool(upstream, { connections: 64, pipelining: 1 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'content-length']);

const server = createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !HOP.has(k)) headers[k] = v;
    const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    pool.request({ path: req.url ?? '/', method: (req.method ?? 'GET') as 'POST', headers, ...(body.length > 0 ? { body } : {}) }).then(
      (r) => {
        const out: Record<string, string> = {};
        for (const [k, v] of Object.entries(r.headers)) if (typeof v === 'string' && !HOP.has(k)) out[k] = v;
        res.writeHead(r.statusCode, out);
        r.body.pipe(res);
      },
      () => {
        res.writeHead(502);
        res.end();
      },
    );
  });
});
server.keepAliveTimeout = 5_000;
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as AddressInfo;
  process.stdout.write(`plain proxy listening on http://127.0.0.1:${a.port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
