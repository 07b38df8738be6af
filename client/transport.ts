/**
 * The encrypted fetch (docs/design.md §5): each application request becomes a binary HTTP message (RFC 9292),
 * encapsulated to the attested key configuration (RFC 9458; chunked OHTTP for streams), posted to the gateway
 * through the relay, and the encrypted answer is opened and handed back as an ordinary `Response`, streaming when
 * the answer streams. The outer request carries only ciphertext and fixed headers.
 *
 * Key configuration mismatch (the gateway rotated its key, RFC 9458 §6 "ohttp-key" problem): re-attest once and
 * retry once, never more (CONTRIBUTING.md, convention 10), so a hostile relay cannot make the client loop or downgrade.
 */
import { configError, protocolError, unavailable } from '../attestation/errors.ts';
import { type Field, encodeRequest } from '../protocol/bhttp.ts';
import { MEDIA_PROBLEM_JSON, PROBLEM_TYPE_OHTTP_KEY } from '../protocol/media.ts';
import { formatRequestTime, GATEWAY_TIME_FIELD, REQUEST_TIME_FIELD } from '../protocol/request-time.ts';
import { RECEIPT_TRAILER } from '../protocol/receipt.ts';
import type { Attestation, FetchLike } from './attest.ts';
import { sealQuestion } from './encap.ts';
import { fetchFailure } from './net-cause.ts';
import { checkStreamCommitment } from '../protocol/stream-chain.ts';
import { acceptReceipt, type ClientReceipt, receiptFromField, stripReceiptEvents } from './receipts.ts';

export interface Session {
  /**
   * The verified attestation to seal the next request to (never undefined: a Session exists only after
   * verification passed). With several replicas each call may name another one (client/replicas.ts).
   */
  current(): Attestation;
  /** Fresh attestation replacing the current one(s); throws when it fails (the session stays on the old ones). */
  reattest(): Promise<Attestation>;
  /** Bumped by every successful re-attestation; without it, a changed `current()` tells the same. */
  generation?(): number;
}

export interface TransportOptions {
  /** The enclave's origin: requests for any other origin are refused, never sent somewhere by mistake. */
  readonly origin: string;
  /** Gateway base: the relay when configured, else the enclave. */
  readonly base: string;
  /** The enclave's authority, for the inner request's `:authority` (never sent in clear). */
  readonly authority: string;
  readonly fetch: FetchLike;
  readonly onReceipt: (r: ClientReceipt) => void;
  /** Clock (ms) for the request time sealed into every request (docs/protocol.md §13). */
  readonly now: () => number;
  /**
   * The gateway's clock minus ours (ms), learned from a sealed REQUEST_TIME_SKEW answer; shared by every fetch of
   * one client so a correction learned once holds for all of them.
   */
  readonly skew?: { offset: number };
}

/** Request headers never copied into the inner request: hop-by-hop or set by the HTTP stack itself. */
const DROP = new Set(['host', 'content-length', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'proxy-authorization', 'cookie', REQUEST_TIME_FIELD]);

export function encryptedFetch(session: Session, o: TransportOptions): FetchLike {
  const skew = o.skew ?? { offset: 0 };
  return async (input, init) => {
    const req = new Request(input, init);
    const url = new URL(req.url);
    if (url.origin !== o.origin) throw configError('BAD_URL', `client.fetch only talks to the attested enclave (${o.origin}); got a request for ${url.origin}`);
    const content = new Uint8Array(await req.arrayBuffer());
    const headers: Field[] = [];
    req.headers.forEach((v, k) => {
      if (!DROP.has(k)) headers.push([k, v]);
    });
    const streaming = wantsStream(req, content);
    // Chunked requests carry indeterminate-length binary HTTP (draft-ietf-ohai-chunked-ohttp-08 §3). The request
    // time rides inside, so the gateway keeps this request's encapsulated key only for a short window.
    const encode = () => encodeRequest(
      { method: req.method, scheme: 'https', authority: o.authority, path: `${url.pathname}${url.search}`, headers: [...headers, [REQUEST_TIME_FIELD, formatRequestTime(o.now() + skew.offset)]], content, trailers: [] },
      { framing: streaming ? 'indeterminate-length' : 'known-length' },
    );
    const inner = encode();

    const gen = session.generation?.();
    let a = session.current();
    let outer = await send(a, inner, streaming, o, req.signal);
    if (isKeyMismatch(outer)) {
      // Another request may already have re-attested since this one was sealed: use that, else re-attest now.
      const moved = session.generation ? session.generation() !== gen : session.current() !== a;
      a = moved ? session.current() : await session.reattest();
      outer = await send(a, inner, streaming, o, req.signal);
      if (isKeyMismatch(outer)) {
        throw protocolError('KEY_CONFIG_MISMATCH', 'the gateway refused the freshly attested key configuration twice');
      }
    }
    const res = await answer(outer, a, o);
    const gatewayTime = res.status === 400 ? res.headers.get(GATEWAY_TIME_FIELD) : null;
    if (gatewayTime === null || !/^[0-9]{1,12}$/.test(gatewayTime)) return res;
    // Our clock is outside the gateway's window (the attested gateway said so inside the encryption): take its
    // time and retry once with a fresh encapsulation; a second refusal is returned as it is.
    await res.body?.cancel().catch(() => undefined);
    skew.offset = Number(gatewayTime) * 1000 - o.now();
    return answer(await send(a, encode(), streaming, o, req.signal), a, o);
  };
}

interface Sent {
  readonly r: Response;
  readonly open: Awaited<ReturnType<typeof sealQuestion>>['open'];
  /** For error answers only: the parsed JSON error body (small; read once, never shown). */
  readonly problem: { readonly type?: unknown; readonly code?: unknown; readonly error?: { readonly code?: unknown } } | undefined;
}

async function send(a: Attestation, inner: Uint8Array, streaming: boolean, o: TransportOptions, signal: AbortSignal): Promise<Sent> {
  const q = await sealQuestion(a.keyConfig, inner, streaming);
  let r: Response;
  try {
    r = await o.fetch(`${o.base}/v1/ohttp`, { method: 'POST', headers: { 'content-type': q.contentType, accept: q.accept, ...q.headers }, body: q.body as Uint8Array<ArrayBuffer>, signal });
  } catch (e) {
    if (signal.aborted) throw e;
    throw unavailable('GATEWAY_UNREACHABLE', `could not reach the gateway at ${o.base} (${fetchFailure(e)})`, { cause: e });
  }
  let problem: Sent['problem'];
  if (!r.ok) {
    const text = (await r.text()).slice(0, 64 * 1024);
    try {
      problem = JSON.parse(text) as Sent['problem'];
    } catch {
      problem = undefined;
    }
  }
  return { r, open: q.open, problem };
}

/** RFC 9458 §6: the gateway does not accept the key configuration the request was sealed to. */
function isKeyMismatch(s: Sent): boolean {
  return !s.r.ok && (s.r.headers.get('content-type') ?? '').startsWith(MEDIA_PROBLEM_JSON) && s.problem?.type === PROBLEM_TYPE_OHTTP_KEY;
}

async function answer(s: Sent, a: Attestation, o: TransportOptions): Promise<Response> {
  const { r, open } = s;
  if (!r.ok) {
    const raw = s.problem?.error?.code ?? s.problem?.code;
    const code = typeof raw === 'string' && /^[A-Z0-9_]{1,64}$/.test(raw) ? raw : undefined;
    throw unavailable(code ?? 'GATEWAY_ERROR', `the gateway refused the request: HTTP ${r.status}${code ? ` (${code})` : ''}`);
  }
  const opened = await open(r);
  const head = opened.head;
  const h = new Headers();
  for (const [k, v] of head.headers) h.append(k, v);
  const field = h.get(RECEIPT_TRAILER);
  if (field) {
    h.delete(RECEIPT_TRAILER);
    o.onReceipt(await receiptFromField(field, a.receiptKey));
  }
  const onTrailers = async (trailers: readonly Field[]): Promise<void> => {
    for (const [k, v] of trailers) if (k.toLowerCase() === RECEIPT_TRAILER) o.onReceipt(await receiptFromField(v, a.receiptKey));
  };
  let body = opened.body(onTrailers);
  if ((h.get('content-type') ?? '').startsWith('text/event-stream')) {
    body = body.pipeThrough(stripReceiptEvents(async (data, received) => {
      let env: unknown;
      try {
        env = JSON.parse(data);
      } catch (e) {
        throw protocolError('RECEIPT_MALFORMED', 'gm.receipt event data is not JSON', { cause: e });
      }
      const r = await acceptReceipt(env, a.receiptKey);
      // The signed chain must be the chain over exactly what this stream delivered, after decryption.
      checkStreamCommitment(r.receipt.stream, received);
      o.onReceipt(r);
    }));
  }
  const nullBody = head.status === 204 || head.status === 304;
  return new Response(nullBody ? null : body, { status: head.status, headers: h });
}

function wantsStream(req: Request, content: Uint8Array): boolean {
  if ((req.headers.get('accept') ?? '').includes('text/event-stream')) return true;
  if (!(req.headers.get('content-type') ?? '').includes('json') || content.length === 0 || content.length > 1 << 20) return false;
  try {
    return (JSON.parse(new TextDecoder().decode(content)) as { stream?: unknown }).stream === true;
  } catch {
    return false;
  }
}
