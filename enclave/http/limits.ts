/**
 * Limits applied before any decryption (docs/design.md §7): the body size (413 from Content-Length at once, or while the body
 * streams in), and the number of concurrent streams (503). The header size limit is node's maxHeaderSize
 * (enclave/serve.ts, 431 before any handler); connect, first-byte and idle timeouts are in the dispatcher.
 */
import type { Readable } from 'node:stream';
import type { MiddlewareHandler } from 'hono';
import { concat } from '../../attestation/bytes.ts';
import { GmError, unavailable } from '../../attestation/errors.ts';

export const tooLarge = (limit: number) => new GmError('protocol', 'TOO_LARGE', `request body exceeds ${limit} bytes`);

/** Reads a body to the end, refusing more than `limit` bytes (without reading past the limit). */
export async function readLimited(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > limit) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(limit);
    }
    parts.push(value);
  }
  return concat(...parts);
}

/**
 * readLimited for a Node request stream (the IncomingMessage behind a @hono/node-server request): the same limit,
 * counted as bytes arrive, without the Readable→ReadableStream adapter and the web Request the server would
 * otherwise build around it (~0.13 ms CPU per request measured on a loopback hop; the gateway reads every request
 * this way). Over the limit it stops reading at once and throws TOO_LARGE; the server drains or closes the socket.
 * A peer that goes away before the end gives CLIENT_CANCELLED.
 */
export function readIncomingLimited(incoming: Readable, limit: number): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const finish = (e: Error | undefined) => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('close', onClose);
      if (e) {
        incoming.pause();
        reject(e);
        return;
      }
      const b = parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
      resolve(new Uint8Array(b.buffer, b.byteOffset, b.length));
    };
    const onData = (c: Buffer) => {
      n += c.length;
      if (n > limit) finish(tooLarge(limit));
      else parts.push(c);
    };
    const onEnd = () => finish(undefined);
    const onError = (e: Error) => finish(new GmError('unavailable', 'CLIENT_CANCELLED', 'request body failed', { cause: e }));
    const onClose = () => {
      if (!incoming.readableEnded) finish(new GmError('unavailable', 'CLIENT_CANCELLED', 'client went away'));
    };
    if (incoming.readableEnded) {
      finish(new GmError('protocol', 'BODY_CONSUMED', 'request body already read'));
      return;
    }
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('close', onClose);
  });
}

/** Rejects at once when Content-Length announces more than `limit` (the body is then never read). */
export function contentLengthLimit(limit: number): MiddlewareHandler {
  return async (c, next) => {
    const cl = c.req.header('content-length');
    if (cl !== undefined && (!/^\d+$/.test(cl) || Number(cl) > limit)) throw tooLarge(limit);
    await next();
  };
}

/** A counting semaphore for concurrent streams; over the limit is an immediate 503, never a queue. */
export class StreamLimiter {
  readonly max: number;
  #n = 0;
  constructor(max: number) {
    this.max = max;
  }
  get active(): number {
    return this.#n;
  }
  acquire(): () => void {
    if (this.#n >= this.max) throw unavailable('TOO_MANY_STREAMS', `more than ${this.max} concurrent streams`);
    this.#n++;
    let released = false;
    return () => {
      if (!released) {
        released = true;
        this.#n--;
      }
    };
  }
}
