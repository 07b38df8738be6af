/**
 * Server-sent events (WHATWG HTML §9.2) as an OpenAI stream carries them: splits a byte stream into whole events
 * so each is forwarded (and sealed into its own chunked-OHTTP chunk) as soon as it is complete, and holds back the
 * terminal `data: [DONE]` so gm can add its own final event (the receipt) before it.
 *
 * A worker is not trusted to end its events: each event may hold at most `maxEventBytes` (default 1 MiB) of text,
 * and the scan for its end resumes where the last one stopped, so an event that never ends costs linear time and
 * bounded memory before it fails with WORKER_EVENT_TOO_LARGE (a worker fault).
 */
import { unavailable } from '../../attestation/errors.ts';

const te = new TextEncoder();
const td = new TextDecoder();

export const MAX_EVENT_BYTES = 1 << 20;

/** One event's text without its blank-line terminator, and its `data` lines joined (WHATWG's data buffer). */
export interface SseEvent {
  readonly text: string;
  readonly data: string | undefined;
}

export class SseSplitter {
  #buf = '';
  /** Where the terminator scan resumes: everything before it holds no blank line. */
  #scanned = 0;
  readonly #max: number;
  done = false;

  constructor(maxEventBytes = MAX_EVENT_BYTES) {
    this.#max = maxEventBytes;
  }

  /** The complete events in `bytes`, in order, minus `[DONE]`. Throws WORKER_EVENT_TOO_LARGE. */
  push(bytes: Uint8Array): SseEvent[] {
    this.#buf += td.decode(bytes, { stream: true });
    const out: SseEvent[] = [];
    for (;;) {
      const end = this.#terminator();
      if (end === undefined) break;
      const text = this.#buf.slice(0, end[0]);
      this.#buf = this.#buf.slice(end[1]);
      this.#scanned = 0;
      const data = dataOf(text);
      if (data !== undefined && data.trim() === '[DONE]') {
        this.done = true;
        continue;
      }
      out.push({ text, data });
    }
    // Counted in UTF-16 units, which never exceed the UTF-8 bytes they decode from: memory stays bounded.
    if (this.#buf.length > this.#max) throw unavailable('WORKER_EVENT_TOO_LARGE', `the worker sent a stream event over ${this.#max} bytes`);
    return out;
  }

  /** Finds the first blank line at or after the scan mark: [event end, next event start]. */
  #terminator(): [number, number] | undefined {
    const b = this.#buf;
    // A terminator may straddle the previous chunk's end: back up by its longest length minus one.
    for (let i = Math.max(0, this.#scanned - 3); i < b.length; i++) {
      if (b.charCodeAt(i) !== 10) continue;
      const start = i > 0 && b.charCodeAt(i - 1) === 13 ? i - 1 : i;
      if (b.charCodeAt(i + 1) === 10) return [start, i + 2];
      if (b.charCodeAt(i + 1) === 13 && b.charCodeAt(i + 2) === 10) return [start, i + 3];
    }
    this.#scanned = b.length;
    return undefined;
  }

  /** Whatever is left (an unterminated event) when the stream ends. */
  rest(): Uint8Array | undefined {
    const r = this.#buf;
    this.#buf = '';
    this.#scanned = 0;
    return r.trim() ? te.encode(r) : undefined;
  }
}

/** The event's data lines joined by LF (WHATWG HTML §9.2.6), or undefined when it has none. */
function dataOf(text: string): string | undefined {
  let data: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line !== 'data' && !line.startsWith('data:')) continue;
    const v = line.startsWith('data: ') ? line.slice(6) : line.slice(5);
    data = data === undefined ? v : `${data}\n${v}`;
  }
  return data;
}

export const encodeEvent = (e: SseEvent): Uint8Array => te.encode(`${e.text}\n\n`);
export const sseEvent = (event: string | undefined, data: string): Uint8Array => te.encode(`${event ? `event: ${event}\n` : ''}data: ${data}\n\n`);
export const SSE_DONE = te.encode('data: [DONE]\n\n');
