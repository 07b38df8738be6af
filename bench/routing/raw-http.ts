/**
 * A lean HTTP/1.1 client for the load generator's enclave-only load (RFC 9112: one request at a time on a keep-alive
 * connection, the answer framed by `content-length`). It exists so that the load generator spends little CPU per
 * request where the enclave alone is measured: undici's request API costs the load generator about as much per
 * request as the enclave's own work there, on the same cores. Answers framed any other way are refused, not guessed.
 */
import { connect, type Socket } from 'node:net';

export interface RawAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const HEAD_MAX = 16 * 1024;

/** One keep-alive connection; `post` must not be called again before its answer arrived. */
export class RawConnection {
  readonly #socket: Socket;
  readonly #head: string;
  #buf: Buffer = Buffer.alloc(0);
  #wait: { resolve: (a: RawAnswer) => void; reject: (e: Error) => void } | undefined;
  #failed: Error | undefined;
  /** Settles once the connection has closed. */
  readonly ended: Promise<void>;

  private constructor(socket: Socket, host: string, path: string, contentType: string) {
    this.#socket = socket;
    this.#head = `POST ${path} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: ${contentType}\r\ncontent-length: `;
    socket.setNoDelay(true);
    socket.on('data', (b: Buffer) => this.#data(b));
    const fail = (e: Error) => {
      this.#failed ??= e;
      const w = this.#wait;
      this.#wait = undefined;
      w?.reject(e);
    };
    socket.on('error', fail);
    this.ended = new Promise((resolve) =>
      socket.on('close', () => {
        fail(new Error('connection closed'));
        resolve();
      }),
    );
  }

  static open(url: string, path: string, contentType: string): Promise<RawConnection> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const s = connect(Number(u.port), u.hostname, () => {
        s.off('error', reject);
        resolve(new RawConnection(s, u.host, path, contentType));
      });
      s.once('error', reject);
    });
  }

  post(body: Uint8Array): Promise<RawAnswer> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#wait) return Promise.reject(new Error('a request is already in flight on this connection'));
    return new Promise((resolve, reject) => {
      this.#wait = { resolve, reject };
      this.#socket.cork();
      this.#socket.write(`${this.#head}${body.length}\r\n\r\n`, 'latin1');
      this.#socket.write(body);
      this.#socket.uncork();
    });
  }

  /** Whether the connection ended (a server closes an idle keep-alive connection after its timeout). */
  get closed(): boolean {
    return this.#failed !== undefined;
  }

  close(): void {
    this.#socket.destroy();
  }

  #data(b: Buffer): void {
    this.#buf = this.#buf.length === 0 ? b : Buffer.concat([this.#buf, b]);
    const end = this.#buf.indexOf(HEAD_END);
    if (end < 0) {
      if (this.#buf.length > HEAD_MAX) this.#socket.destroy(new Error('answer head too long'));
      return;
    }
    const lines = this.#buf.toString('latin1', 0, end).split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(`${lines[0]} `);
    let length = -1;
    let contentType = '';
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      if (k === 'content-length' && /^\d+$/.test(v)) length = Number(v);
      else if (k === 'content-type') contentType = v.split(';')[0]!.trim();
      else if (k === 'transfer-encoding') length = -2;
    }
    if (!m || length < 0) {
      this.#socket.destroy(new Error(m ? 'answer not framed by content-length' : 'not an HTTP/1.1 answer'));
      return;
    }
    if (this.#buf.length < end + 4 + length) return;
    const body = this.#buf.subarray(end + 4, end + 4 + length);
    if (this.#buf.length > end + 4 + length) {
      this.#socket.destroy(new Error('bytes after the answer'));
      return;
    }
    this.#buf = Buffer.alloc(0);
    const w = this.#wait;
    this.#wait = undefined;
    w?.resolve({ status: Number(m[1]), contentType, body });
  }
}
