/**
 * Binary HTTP (RFC 9292) ⇄ fetch Request/Response, for the layers on either side of an OHTTP gateway. Hop-by-hop
 * and framing fields (RFC 9110 §7.6.1, content-length, transfer-encoding) are dropped: each leg frames its own body.
 */
import type { BhttpRequest, Field } from '../../protocol/bhttp.ts';

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'content-length', 'host']);

export function fieldsFromHeaders(h: Headers): Field[] {
  const out: Field[] = [];
  h.forEach((v, k) => {
    if (!HOP.has(k)) out.push([k, v]);
  });
  return out;
}

export function headersFromFields(fields: readonly Field[]): Headers {
  const h = new Headers();
  for (const [k, v] of fields) if (!HOP.has(k.toLowerCase())) h.append(k, v);
  return h;
}

/** The inner request a gateway hands to its handler. The authority is never used for routing. */
export function requestFromBhttp(r: BhttpRequest, signal?: AbortSignal): Request {
  const path = r.path.startsWith('/') ? r.path : `/${r.path}`;
  const hasBody = r.content.length > 0 && r.method !== 'GET' && r.method !== 'HEAD';
  return new Request(`https://gm.inner${path}`, {
    method: r.method,
    headers: headersFromFields(r.headers),
    ...(hasBody ? { body: r.content as Uint8Array<ArrayBuffer> } : {}),
    ...(signal ? { signal } : {}),
  });
}

export function bhttpRequest(method: string, path: string, headers: readonly Field[], content: Uint8Array): BhttpRequest {
  return { method, scheme: 'https', authority: '', path, headers, content, trailers: [] };
}
