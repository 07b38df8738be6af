/**
 * The cause of a failed fetch, said in one short phrase: `fetch failed: ECONNREFUSED 127.0.0.1:8443`. WHATWG fetch
 * rejects with a bare TypeError("fetch failed"); Node's undici keeps the system error (code, address, port) as its
 * `cause`, browsers keep nothing, so the phrase is as precise as the runtime allows and never includes a body.
 */
export function fetchFailure(e: unknown): string {
  const err = e as { message?: unknown; name?: unknown; cause?: { code?: unknown; address?: unknown; port?: unknown; hostname?: unknown; message?: unknown; errors?: unknown } } | undefined;
  const base = typeof err?.message === 'string' && err.message.length <= 120 ? err.message : typeof err?.name === 'string' ? err.name : 'fetch failed';
  let c = err?.cause;
  // Happy-eyeballs connects fail with an AggregateError whose first error carries the code.
  if (c && typeof c.code !== 'string' && Array.isArray(c.errors) && c.errors.length > 0) c = c.errors[0] as typeof c;
  if (!c || typeof c.code !== 'string' || !/^[A-Z0-9_]{1,40}$/.test(c.code)) return base;
  const host = typeof c.address === 'string' ? c.address : typeof c.hostname === 'string' ? c.hostname : undefined;
  const where = host ? ` ${host.includes(':') ? `[${host}]` : host}${typeof c.port === 'number' ? `:${c.port}` : ''}` : '';
  return `${base}: ${c.code}${where}`;
}
