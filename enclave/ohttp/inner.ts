/**
 * The inner exchange behind an OHTTP gateway without web objects: the decrypted binary HTTP request (RFC 9292) goes
 * to an `InnerService` as its fields and content, and the answer comes back as a status, fields and either the whole
 * content or a pull source of content pieces, which the gateway encodes and seals as they come. No `Request`,
 * `Response`, `Headers` or web stream is built for it (each costs allocations and promise hops per request).
 *
 * The adapters at the end connect the same answers to fetch-style code (hono routes, tests that drive an app with
 * `app.request()`), so each route has one implementation whichever side calls it.
 */
import { concat } from '../../attestation/bytes.ts';
import type { BhttpRequest, Field } from '../../protocol/bhttp.ts';
import { tooLarge } from '../http/limits.ts';
import { fieldsFromHeaders } from './messages.ts';

/**
 * Content pieces pulled one at a time: `read` resolves the next non-empty piece, or undefined once the content
 * ended; it rejects when the content failed. `cancel` stops the producer (the reader went away); read after it
 * resolves undefined.
 */
export interface BodySource {
  read(): Promise<Uint8Array | undefined>;
  cancel(reason?: unknown): Promise<void>;
}

/** An inner answer: `content` when it is whole in memory, else `body`; neither means no content. */
export interface InnerAnswer {
  readonly status: number;
  /** Lower-case names, no hop-by-hop or framing fields (each leg frames its own body). */
  readonly headers: readonly Field[];
  readonly content?: Uint8Array;
  readonly body?: BodySource;
}

/**
 * Serves a checked inner request (messages.ts `checkInnerRequest` passed). `signal` aborts when the outer client
 * went away. Answers every request it can; a throw is a failure outside the inner answer.
 */
export type InnerService = (req: BhttpRequest, signal: AbortSignal) => Promise<InnerAnswer>;

const te = new TextEncoder();

/** A JSON answer (`application/json`, as `Response.json` labels it) with the extra fields given. */
export function jsonAnswer(status: number, value: unknown, extra: readonly Field[] = []): InnerAnswer {
  return { status, headers: [['content-type', 'application/json'], ...extra], content: te.encode(JSON.stringify(value)) };
}

/** HTTP whitespace at either end of a field value (RFC 9110 §5.5: not part of the value). */
const OWS_EDGES = /^[\t ]+|[\t ]+$/g;

/**
 * A field's value as `Headers.get` gives it: every field of that name (case-insensitive), trimmed, joined by ", ";
 * undefined when there is none.
 */
export function fieldValue(fields: readonly Field[], name: string): string | undefined {
  let out: string | undefined;
  for (const [k, v] of fields) {
    if (k.length !== name.length || k.toLowerCase() !== name) continue;
    const t = v.replace(OWS_EDGES, '');
    out = out === undefined ? t : `${out}, ${t}`;
  }
  return out;
}

/** Reads a source to the end, refusing more than `limit` bytes (TOO_LARGE, the source cancelled). */
export async function readSource(src: BodySource, limit: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const v = await src.read();
    if (v === undefined) break;
    n += v.length;
    if (n > limit) {
      await src.cancel().catch(() => undefined);
      throw tooLarge(limit);
    }
    parts.push(v);
  }
  return parts.length === 1 ? parts[0]! : concat(...parts);
}

/** A web stream as a source (the content of a fetch-style answer). Empty pieces are skipped. */
export function sourceOf(stream: ReadableStream<Uint8Array>): BodySource {
  const reader = stream.getReader();
  let cancelled = false;
  return {
    async read() {
      for (;;) {
        if (cancelled) return undefined;
        const x = await reader.read();
        if (x.done) return undefined;
        if (x.value.length > 0) return x.value;
      }
    },
    async cancel(reason) {
      cancelled = true;
      await reader.cancel(reason);
    },
  };
}

/** A source as a web stream that pulls one piece per read (backpressure as the source's). */
export function streamOf(src: BodySource): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(ctl) {
        const v = await src.read();
        if (v === undefined) ctl.close();
        else ctl.enqueue(v);
      },
      cancel: (reason) => src.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/** A fetch-style answer as an inner answer (its hop-by-hop and framing fields dropped). */
export function answerOf(res: Response): InnerAnswer {
  return { status: res.status, headers: fieldsFromHeaders(res.headers), ...(res.body ? { body: sourceOf(res.body) } : {}) };
}

/** An inner answer as a fetch-style `Response` (hono routes and tests). */
export function responseOf(a: InnerAnswer): Response {
  const body = a.content ? (a.content as Uint8Array<ArrayBuffer>) : a.body ? streamOf(a.body) : null;
  return new Response(body, { status: a.status, headers: a.headers as [string, string][] });
}
