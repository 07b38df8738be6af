/**
 * The enclave → worker transport: one undici Pool per verified worker (keep-alive connections, pipelining off),
 * posting encapsulated requests to the worker's gateway. Timeouts: connect, first byte (response headers), and idle
 * between body chunks; a client disconnect aborts the request through `signal`. Reading is pull-based, so a slow
 * client slows the worker's socket (backpressure end to end) instead of filling memory.
 */
import { Pool } from 'undici';
import { unavailable } from '../../attestation/errors.ts';
import type { Transport, TransportResponse } from '../ohttp/client.ts';
import { requestAuthorizer, WORKER_AUTH_HEADER } from '../../protocol/worker-auth.ts';

export interface PoolTimeouts {
  readonly connectMs: number;
  readonly firstByteMs: number;
  readonly idleMs: number;
  readonly connections: number;
}

export const DEFAULT_TIMEOUTS: PoolTimeouts = { connectMs: 5_000, firstByteMs: 120_000, idleMs: 60_000, connections: 128 };

export interface PooledTransport {
  readonly send: Transport;
  /**
   * POSTs to another path of the worker (the session endpoints, enclave/dispatch/session.ts); `authorized` adds the
   * credential's MAC over the body. Absent on transports that speak OHTTP only (tests).
   */
  readonly post?: (path: string, contentType: string, body: Uint8Array, signal: AbortSignal | undefined, authorized?: boolean) => Promise<TransportResponse>;
  close(): Promise<void>;
}

/**
 * `credential`: the worker's credential from its registration (protocol/worker-auth.ts); each request then carries
 * its MAC, without which the worker's gateway refuses it.
 */
export function poolTransport(workerUrl: string, t: PoolTimeouts = DEFAULT_TIMEOUTS, credential?: Uint8Array): PooledTransport {
  const base = new URL(workerUrl);
  const path = `${base.pathname.replace(/\/+$/, '')}/v1/ohttp`;
  let closing: Promise<void> | undefined;
  const authorize = credential ? requestAuthorizer(credential) : undefined;
  authorize?.catch(() => undefined); // a failure surfaces at the first send, not as an unhandled rejection
  const pool = new Pool(base.origin, { connections: t.connections, connect: { timeout: t.connectMs }, headersTimeout: t.firstByteMs, bodyTimeout: t.idleMs, pipelining: 1 });
  const base_ = base.pathname.replace(/\/+$/, '');
  const post = async (p: string, contentType: string, body: Uint8Array, signal: AbortSignal | undefined, authorized = true): Promise<TransportResponse> => {
    let r;
    try {
      const auth = authorize && authorized ? { [WORKER_AUTH_HEADER]: (await authorize)(contentType, body) } : {};
      r = await pool.request({ path: p, method: 'POST', headers: { 'content-type': contentType, ...(contentType === 'message/ohttp-chunked-req' ? { incremental: '?1' } : {}), ...auth }, body, ...(signal ? { signal } : {}) });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') throw unavailable('WORKER_TIMEOUT', `worker did not answer in time (${code})`, { cause: e });
      throw unavailable('WORKER_UNREACHABLE', `worker request failed (${code ?? (e as Error).name})`, { cause: e });
    }
    const ct = r.headers['content-type'];
    const rb = r.body;
    return {
      status: r.statusCode,
      contentType: (typeof ct === 'string' ? ct : '').split(';')[0]!.trim(),
      body: {
        async *[Symbol.asyncIterator]() {
          try {
            // A view, not a copy; as a plain Uint8Array, so slice() copies as consumers expect (Buffer's would not).
            for await (const c of rb) yield new Uint8Array((c as Buffer).buffer, (c as Buffer).byteOffset, (c as Buffer).length);
          } catch (e) {
            const code = (e as { code?: string }).code;
            if (code === 'UND_ERR_BODY_TIMEOUT') throw unavailable('WORKER_TIMEOUT', 'worker went idle mid-response', { cause: e });
            throw unavailable('WORKER_STREAM_FAILED', `worker connection failed mid-response (${code ?? (e as Error).name})`, { cause: e });
          }
        },
      },
      cancel: () => void rb.destroy(),
    };
  };
  return {
    send: (body, contentType, signal) => post(path, contentType, body, signal),
    post: (p, contentType, body, signal, authorized) => post(`${base_}${p}`, contentType, body, signal, authorized),
    close() {
      closing ??= pool.destroy().catch(() => undefined);
      return closing;
    },
  };
}
