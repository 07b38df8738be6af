/**
 * The local OpenAI endpoint of `gm proxy` (docs/design.md §5): a plain HTTP/1.1 server on node:http that any
 * OpenAI client (the Python `openai` package, curl, editors, agents) talks to, and that forwards each request it
 * accepts through the SDK's encrypted fetch to the attested enclave. Nothing a client sends leaves this process in
 * clear: the request becomes a sealed binary HTTP message (RFC 9292 in RFC 9458 OHTTP) for the enclave's attested
 * key, and the answer is opened here.
 *
 * Routes (OpenAI API reference): POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models and
 * /v1/models/{id}. Every answer carries `gm-verified: <platform> <measurement prefix>`; an answer with a receipt
 * carries `gm-receipt: <seq>/<sha256 of the signed receipt>` and `gm-request-id` (as headers for whole answers, as
 * HTTP/1.1 trailers, RFC 9112 §7.1.2, for streams, whose receipt arrives last), and the signed receipt itself is kept
 * for GET /v1/gm/receipts/{requestId} in the envelope `gm receipts verify` reads.
 *
 * Errors are OpenAI-shaped (`{error:{message,type,code,param}}`); local logs name the event and code, never a body.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GmError } from '../../attestation/errors.ts';
import type { ClientReceipt, GmClient } from '../../client/index.ts';
import { hex } from '../../attestation/bytes.ts';
import { receiptEnvelope, type SignedReceipt } from '../../protocol/receipt.ts';

export interface ProxyOptions {
  /** The verified SDK client every request goes through. */
  readonly client: GmClient;
  readonly hostname: string;
  readonly port: number;
  /** When set, every request must carry `Authorization: Bearer <token>` (required for a non-loopback address). */
  readonly token?: string;
  /**
   * The API key the enclave sees. Without it the client's own `Authorization` is sealed into the request as it
   * came (except in token mode, where that header is the proxy's token and is never forwarded).
   */
  readonly apiKey?: string;
  /** Largest request body accepted (default 8 MiB). */
  readonly maxBodyBytes?: number;
  /** Largest whole (non-streamed) answer read (default 64 MiB). */
  readonly maxAnswerBytes?: number;
  /** Receipts kept for GET /v1/gm/receipts/{id}, newest first out last (default 10000). */
  readonly receiptsKept?: number;
  /** One structured event per request outcome; fields never hold a body, prompt or key. */
  readonly log?: (event: string, fields: Readonly<Record<string, string | number | boolean | undefined>>) => void;
}

export interface RunningProxy {
  readonly url: string;
  readonly server: Server;
  /** The receipt kept for a request id, if any. */
  receipt(requestId: string): SignedReceipt | undefined;
  close(): Promise<void>;
}

/** Inner request headers copied from the client: only what an OpenAI request needs. */
const FORWARD = ['content-type', 'accept', 'openai-beta'];
/** Answer headers copied back; hop-by-hop and length headers are the local server's own. */
const ANSWER_DROP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'trailer', 'upgrade', 'te']);

const ROUTES: readonly { method: string; re: RegExp }[] = [
  { method: 'POST', re: /^\/v1\/chat\/completions$/ },
  { method: 'POST', re: /^\/v1\/completions$/ },
  { method: 'POST', re: /^\/v1\/embeddings$/ },
  { method: 'GET', re: /^\/v1\/models$/ },
  { method: 'GET', re: /^\/v1\/models\/[^?#]+$/ },
];
const RECEIPT_ROUTE = /^\/v1\/gm\/receipts\/([A-Za-z0-9._:-]{1,128})$/;

export async function startProxy(o: ProxyOptions): Promise<RunningProxy> {
  const maxBody = o.maxBodyBytes ?? 8 * 1024 * 1024;
  const maxAnswer = o.maxAnswerBytes ?? 64 * 1024 * 1024;
  const kept = new Map<string, { readonly r: ClientReceipt; readonly s: SignedReceipt }>();
  const keep = o.receiptsKept ?? 10_000;
  const log = o.log ?? (() => {});
  const token = o.token === undefined ? undefined : Buffer.from(o.token);

  const remember = (r: ClientReceipt, s: SignedReceipt): void => {
    kept.delete(r.receipt.requestId);
    kept.set(r.receipt.requestId, { r, s });
    // Map iteration is insertion order: the oldest receipt goes first.
    if (kept.size > keep) kept.delete(kept.keys().next().value!);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0]!;
    const search = (req.url ?? '').slice(path.length);
    if (token && !bearerMatches(req.headers.authorization, token)) {
      return sendError(res, 401, 'invalid_api_key', 'this gm proxy needs its bearer token', 'invalid_request_error');
    }
    const receiptPath = RECEIPT_ROUTE.exec(path);
    if (receiptPath && req.method === 'GET') {
      const k = kept.get(receiptPath[1]!);
      if (!k) return sendError(res, 404, 'receipt_not_found', 'no receipt is kept for this request id', 'invalid_request_error');
      return sendJson(res, 200, receiptEnvelope(k.s, k.r.offer));
    }
    const route = ROUTES.find((x) => x.re.test(path));
    if (!route) return sendError(res, 404, 'not_found', `${req.method} ${path} is not served by gm proxy`, 'invalid_request_error');
    if (req.method !== route.method) return sendError(res, 405, 'method_not_allowed', `${path} takes ${route.method}`, 'invalid_request_error');

    let body: Uint8Array | undefined;
    if (route.method === 'POST') {
      body = await readBody(req, maxBody);
      if (!body) return sendError(res, 413, 'request_too_large', `the request body is larger than ${maxBody} bytes`, 'invalid_request_error');
    }
    const headers: Record<string, string> = {};
    for (const h of FORWARD) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    const auth = o.apiKey !== undefined ? `Bearer ${o.apiKey}` : token ? undefined : req.headers.authorization;
    if (auth) headers.authorization = auth;

    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    // The SDK verified the receipt against the attested key before handing it over.
    let receipt: SignedReceipt | undefined;
    const f = o.client.fetchWith((r) => {
      receipt = { receipt: r.receipt, signed: r.signed, hash: r.hash };
      remember(r, receipt);
    });
    let answer: Response;
    try {
      answer = await f(`${o.client.baseURL}${path.slice(3)}${search}`, { method: route.method, headers, ...(body ? { body: body as Uint8Array<ArrayBuffer> } : {}), signal: abort.signal });
    } catch (e) {
      if (abort.signal.aborted) return;
      const g = e instanceof GmError ? e : undefined;
      log('proxy.upstream_error', { code: g?.code ?? 'INTERNAL' });
      return sendError(res, g?.kind === 'protocol' || g?.kind === 'rejected' ? 502 : 503, (g?.code ?? 'internal_error').toLowerCase(), g ? g.message : 'the request could not be sent', 'server_error');
    }
    const out: Record<string, string | string[]> = { ...verifiedHeaders(o.client) };
    answer.headers.forEach((v, k) => {
      if (!ANSWER_DROP.has(k)) out[k] = v;
    });
    const streaming = (answer.headers.get('content-type') ?? '').startsWith('text/event-stream');
    try {
      if (streaming) {
        res.writeHead(answer.status, { ...out, trailer: 'gm-receipt, gm-request-id', 'cache-control': 'no-cache' });
        res.flushHeaders();
        if (answer.body) {
          for await (const chunk of answer.body as unknown as AsyncIterable<Uint8Array>) {
            if (!res.write(chunk)) await new Promise<void>((ok) => res.once('drain', ok).once('close', ok));
            if (res.destroyed) break;
          }
        }
        if (receipt) res.addTrailers(receiptHeaders(receipt));
        res.end();
      } else {
        const bytes = await readAll(answer, maxAnswer);
        res.writeHead(answer.status, { ...out, ...(receipt ? receiptHeaders(receipt) : {}), 'content-length': String(bytes.length) });
        res.end(bytes);
      }
      log('proxy.request', { route: route.re.source.includes('models\\/') ? '/v1/models/{id}' : path, status: answer.status, stream: streaming, receipt: receipt !== undefined });
    } catch (e) {
      // The answer broke off after the status was sent (the enclave's stream failed or a receipt did not verify):
      // end the connection without a clean end, so the client sees an incomplete answer, not a complete one.
      const g = e instanceof GmError ? e : undefined;
      log('proxy.answer_error', { code: g?.code ?? 'INTERNAL' });
      if (!res.headersSent) return sendError(res, 502, (g?.code ?? 'internal_error').toLowerCase(), 'the answer could not be read', 'server_error');
      res.destroy();
    }
  };

  const server = createServer({ requestTimeout: 0, headersTimeout: 10_000 }, (req, res) => {
    handle(req, res).catch((e: unknown) => {
      log('proxy.internal_error', { code: e instanceof GmError ? e.code : 'INTERNAL' });
      if (!res.headersSent) sendError(res, 500, 'internal_error', 'internal error', 'server_error');
      else res.destroy();
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port, o.hostname, () => (server.off('error', fail), ok()));
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}`,
    server,
    receipt: (id) => kept.get(id)?.s,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      }),
  };
}

/** `gm-verified: <platform> <measurement prefix>[ sim]`, from the attestation in force now. */
function verifiedHeaders(c: GmClient): Record<string, string> {
  return { 'gm-verified': `${c.claims.platform} ${c.claims.cpu.measurement.slice(0, 16)}${c.claims.sim ? ' sim' : ''}` };
}

/** `gm-receipt: <seq>/<hash>`: the receipt's place in the enclave's chain (the hash the next receipt's `prev` holds). */
function receiptHeaders(s: SignedReceipt): Record<string, string> {
  return { 'gm-receipt': `${s.receipt.seq}/${hex(s.hash)}`, 'gm-request-id': s.receipt.requestId };
}

function bearerMatches(header: string | undefined, token: Buffer): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (!m) return false;
  const got = Buffer.from(m[1]!);
  return got.length === token.length && timingSafeEqual(got, token);
}

async function readBody(req: IncomingMessage, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) {
    req.resume();
    return undefined;
  }
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) {
      req.resume();
      return undefined;
    }
    parts.push(c);
  }
  return new Uint8Array(Buffer.concat(parts));
}

async function readAll(r: Response, max: number): Promise<Uint8Array> {
  if (!r.body) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of r.body as unknown as AsyncIterable<Uint8Array>) {
    n += c.length;
    if (n > max) throw new GmError('protocol', 'ANSWER_TOO_LARGE', `the answer is larger than ${max} bytes`);
    parts.push(c);
  }
  return new Uint8Array(Buffer.concat(parts));
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(bytes.length) });
  res.end(bytes);
}

function sendError(res: ServerResponse, status: number, code: string, message: string, type: string): void {
  sendJson(res, status, { error: { message, type, code, param: null } });
}
