/**
 * Binary HTTP (RFC 9292) ⇄ fetch Request/Response, for the layers on either side of an OHTTP gateway. Hop-by-hop
 * and framing fields (RFC 9110 §7.6.1, content-length, transfer-encoding) are dropped: each leg frames its own body.
 */
import { GmError, protocolError } from '../../attestation/errors.ts';
import type { BhttpRequest, Field, ResponseDecoder } from '../../protocol/bhttp.ts';

export const HOP_FIELDS: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'content-length', 'host']);

export function fieldsFromHeaders(h: Headers): Field[] {
  const out: Field[] = [];
  h.forEach((v, k) => {
    if (!HOP_FIELDS.has(k)) out.push([k, v]);
  });
  return out;
}

export function headersFromFields(fields: readonly Field[]): Headers {
  const h = new Headers();
  for (const [k, v] of fields) if (!HOP_FIELDS.has(k.toLowerCase())) h.append(k, v);
  return h;
}

/**
 * A response decoded as its encrypted records arrive (indeterminate-length binary HTTP, RFC 9292 §3.2): waits for
 * the head, then serves the content as a pull stream. `step` returns at least one decoded event, or the last ones
 * once the message ended (`ended()`); `cancel` stops the transport. A message that ends before its head fails with
 * `truncatedCode`.
 */
export async function streamedResponse(
  step: () => Promise<ReturnType<ResponseDecoder['push']>>,
  ended: () => boolean,
  cancel: () => void,
  truncatedCode: string,
): Promise<{ status: number; headers: Headers; body: ReadableStream<Uint8Array> }> {
  const pending: Uint8Array[] = [];
  let head: { status: number; headers: Headers } | undefined;
  while (!head) {
    const evs = await step().catch((e: unknown) => {
      cancel();
      throw e;
    });
    for (const e of evs) {
      if (e.type === 'head') head = { status: e.status, headers: headersFromFields(e.headers) };
      else if (e.type === 'content') pending.push(e.data);
    }
    if (!head && ended()) throw protocolError(truncatedCode, 'response ended before its head');
  }
  let finished = false;
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(ctl) {
        for (;;) {
          if (pending.length > 0) {
            ctl.enqueue(pending.shift()!);
            return;
          }
          if (finished) {
            ctl.close();
            return;
          }
          let evs;
          try {
            evs = await step();
          } catch (e) {
            cancel();
            ctl.error(e);
            return;
          }
          for (const e of evs) {
            if (e.type === 'content' && e.data.length > 0) pending.push(e.data.slice());
            else if (e.type === 'end') finished = true;
          }
          if (ended()) finished = true;
        }
      },
      cancel() {
        cancel();
      },
    },
    { highWaterMark: 0 },
  );
  return { status: head.status, headers: head.headers, body };
}

/** RFC 9110 §5.6.2 token (method and field names). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5 field value: visible characters, obs-text, SP and HTAB; never CR, LF, NUL or another control. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** An origin-form path (RFC 9110 §7.1, RFC 3986 characters): starts with "/", visible ASCII only. */
const PATH = /^\/[\x21-\x7e]*$/;
/** Methods fetch refuses to carry (Fetch standard, "forbidden method"). */
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);

const invalid = (code: string, message: string) => new GmError('protocol', code, message);

/**
 * The inner request a gateway hands to its handler. The authority is never used for routing. A decrypted request
 * that is not a valid HTTP request (method, path, field name or value) fails with a coded GmError whose message is
 * fixed text: a rejected value (an API key with a stray newline, say) is never copied into an error, a log or a cause.
 */
export function requestFromBhttp(r: BhttpRequest, signal?: AbortSignal): Request {
  checkInnerRequest(r);
  const hasBody = r.content.length > 0 && r.method !== 'GET' && r.method !== 'HEAD';
  try {
    return new Request(`https://gm.inner${r.path}`, {
      method: r.method,
      headers: headersFromFields(r.headers),
      ...(hasBody ? { body: r.content as Uint8Array<ArrayBuffer> } : {}),
      ...(signal ? { signal } : {}),
    });
  } catch {
    // Whatever fetch still refuses; its message may quote the value, so it is dropped, not kept as a cause.
    throw invalid('INNER_REQUEST_INVALID', 'the inner request is not a valid HTTP request');
  }
}

/** The checks of requestFromBhttp without building a Request (the worker's session path forwards fields as they are). */
export function checkInnerRequest(r: BhttpRequest): void {
  if (!TOKEN.test(r.method) || FORBIDDEN_METHODS.has(r.method.toUpperCase())) throw invalid('INNER_METHOD_INVALID', 'the inner request method is not a valid token');
  if (!PATH.test(r.path)) throw invalid('INNER_PATH_INVALID', 'the inner request path is not an origin-form path');
  checkFields(r.headers);
  checkFields(r.trailers);
}

function checkFields(fields: readonly Field[]): void {
  for (const [k, v] of fields) {
    if (!TOKEN.test(k)) throw invalid('INNER_FIELD_NAME_INVALID', 'an inner field name is not a valid token');
    if (!FIELD_VALUE.test(v)) throw invalid('INNER_FIELD_VALUE_INVALID', 'an inner field value has a control character');
  }
}

export function bhttpRequest(method: string, path: string, headers: readonly Field[], content: Uint8Array): BhttpRequest {
  return { method, scheme: 'https', authority: '', path, headers, content, trailers: [] };
}
