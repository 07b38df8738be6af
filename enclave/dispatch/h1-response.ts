/**
 * A strict, push-based reader of HTTP/1.1 responses (RFC 9112) for the enclave's lanes to its workers: status line
 * (§4), field lines (§5), and the message body framed by Content-Length (§6.3 rule 6) or the chunked transfer coding
 * (§7.1). It reads what a gm worker (node:http) or an inference server sends and refuses, rather than guesses at,
 * everything a well-formed peer never sends: bare CR or LF, obs-fold (§5.2), whitespace before a field's colon
 * (§5.1), Transfer-Encoding other than `chunked` alone, Content-Length beside Transfer-Encoding or twice (§6.3 rules
 * 3–5: the framings request smuggling plays on), an upgrade (101), and bytes past the answer. A body framed by the
 * connection's close (§6.3 rule 8) is read only where the caller allows it (an inference server may send one; a gm
 * worker never does), and ends at `closed()`.
 *
 * On the enclave's lanes the framing is not trusted for integrity: the session records inside it are authenticated
 * (docs/protocol.md §14). A parse failure ends the exchange and the connection.
 *
 * Body bytes are handed on as views of the buffers pushed, never copied.
 */

export class H1ParseError extends Error {
  readonly code = 'H1_BAD_RESPONSE';
}

export interface ResponseSink {
  /** The final response's head (1xx responses are read and dropped). `close`: the peer ends the connection after it. */
  head(status: number, fields: Readonly<Record<string, string>>, close: boolean): void;
  /** Body bytes, a view of the pushed buffer. */
  data(chunk: Uint8Array): void;
  /** The body ended (trailers, if any, were read and dropped). */
  end(): void;
}

/** The largest head (status line and fields, or a chunked body's trailers) read before the answer is refused. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** The largest chunk-size line, extensions included (§7.1.1). */
const MAX_CHUNK_LINE = 1024;

const STATUS_LINE = /^HTTP\/1\.1 ([1-9]\d\d) [\t\x20-\x7e\x80-\xff]*$/;
/** field-name ":" OWS field-value OWS, the value of VCHAR, obs-text, SP and HTAB (§5, RFC 9110 §5.5). */
const FIELD_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*$/;
/** chunk-size [ chunk-ext ] (§7.1, §7.1.1): the extensions are read past, bounded by MAX_CHUNK_LINE. */
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,12})(?:[\t ]*;[\t\x20-\x7e\x80-\xff]*)?$/;
const DIGITS = /^\d{1,15}$/;
const CRLF = 0x0d0a;

const HEAD = 0;
const LENGTH = 1;
const CHUNK_LINE = 2;
const CHUNK_DATA = 3;
const CHUNK_END = 4;
const TRAILERS = 5;
const DONE = 6;
const UNTIL_CLOSE = 7;

export interface ExpectOptions {
  /** The request was HEAD: the answer has no body whatever its fields say (RFC 9110 §9.3.2). */
  readonly head?: boolean;
  /** A body framed by neither Content-Length nor chunked runs to the connection's close (§6.3 rule 8). */
  readonly closeDelimited?: boolean;
}

function bad(message: string): never {
  throw new H1ParseError(message);
}

/** Field lines of a head or a trailer section, CRLF-separated, without the final empty line. */
function fieldsOf(lines: string[], from: number): Record<string, string> {
  const fields: Record<string, string> = {};
  const seen = new Set<string>();
  for (let i = from; i < lines.length; i++) {
    const m = FIELD_LINE.exec(lines[i]!);
    if (!m) bad('malformed field line');
    const k = m[1]!.toLowerCase();
    if (seen.has(k)) {
      if (k === 'content-length' || k === 'transfer-encoding') bad(`${k} appears twice`);
      // Fields read here hold one value; a repeated one keeps its first (as node's `headers` does for these).
      continue;
    }
    seen.add(k);
    fields[k] = m[2]!;
  }
  return fields;
}

/** Lines of a head (latin1) with every line ending a CRLF: a CR or LF anywhere else is refused. */
function linesOf(text: string): string[] {
  const lines = text.split('\r\n');
  for (const l of lines) if (l.includes('\r') || l.includes('\n')) bad('bare CR or LF in the head');
  return lines;
}

/** One response after another on a connection; `expect()` before each request, `push` as bytes arrive. */
export class ResponseReader {
  #state = DONE;
  #sink: ResponseSink | undefined;
  /** Bytes of an incomplete head, chunk line or trailer section. */
  #pending: Buffer | undefined;
  #remaining = 0;
  #o: ExpectOptions = {};

  /** Readies the reader for the answer to the request just sent. */
  expect(sink: ResponseSink, o: ExpectOptions = {}): void {
    if (this.#state !== DONE) throw new Error('an answer is still being read');
    this.#sink = sink;
    this.#o = o;
    this.#state = HEAD;
  }

  /**
   * The connection closed: a body framed by the close ends here (true); any other answer still being read is cut
   * short (false), and nothing more reaches its sink.
   */
  closed(): boolean {
    if (this.#state === DONE) return true;
    if (this.#state === UNTIL_CLOSE) {
      this.#finish();
      return true;
    }
    this.#state = DONE;
    this.#sink = undefined;
    return false;
  }

  /** Whether the last expected answer has been read to its end. */
  get idle(): boolean {
    return this.#state === DONE;
  }

  /** Reads what arrived; throws H1ParseError on anything outside the grammar, or on bytes no answer was expected for. */
  push(b: Buffer): void {
    let at = 0;
    if (this.#pending) {
      b = Buffer.concat([this.#pending, b]);
      this.#pending = undefined;
    }
    while (at < b.length) {
      switch (this.#state) {
        case DONE:
          return bad('bytes with no answer expected');
        case UNTIL_CLOSE:
          this.#sink!.data(at === 0 ? b : b.subarray(at));
          return;
        case HEAD:
        case TRAILERS: {
          if (this.#state === TRAILERS && b.length - at >= 2 && b.readUInt16BE(at) === CRLF) {
            // No trailers: the empty line right after the last chunk.
            at += 2;
            this.#finish();
            break;
          }
          const end = this.#delimited(b, at, '\r\n\r\n', MAX_HEAD_BYTES, 'head too long');
          if (end < 0) return;
          const text = b.toString('latin1', at, end);
          at = end + 4;
          if (this.#state === TRAILERS) {
            fieldsOf(linesOf(text), 0);
            this.#finish();
          } else this.#head(text);
          break;
        }
        case LENGTH:
          at = this.#counted(b, at);
          if (this.#remaining === 0) this.#finish();
          break;
        case CHUNK_LINE: {
          const end = this.#delimited(b, at, '\r\n', MAX_CHUNK_LINE, 'chunk-size line too long');
          if (end < 0) return;
          const line = b.toString('latin1', at, end);
          if (line.includes('\r') || line.includes('\n')) bad('bare CR or LF in a chunk-size line');
          const m = CHUNK_SIZE.exec(line);
          if (!m) bad('malformed chunk size');
          at = end + 2;
          this.#remaining = Number.parseInt(m[1]!, 16);
          this.#state = this.#remaining === 0 ? TRAILERS : CHUNK_DATA;
          break;
        }
        case CHUNK_DATA:
          at = this.#counted(b, at);
          if (this.#remaining === 0) this.#state = CHUNK_END;
          break;
        case CHUNK_END: {
          if (b.length - at < 2) {
            if (b[at] !== 0x0d) bad('chunk data not followed by CRLF');
            this.#pending = b.subarray(at);
            return;
          }
          if (b.readUInt16BE(at) !== CRLF) bad('chunk data not followed by CRLF');
          at += 2;
          this.#state = CHUNK_LINE;
          break;
        }
      }
    }
  }

  /**
   * Where `delim` starts at or after `at`, within `max` bytes (else `tooLong` is thrown); -1 when it has not arrived
   * yet, the bytes from `at` kept for the next push.
   */
  #delimited(b: Buffer, at: number, delim: string, max: number, tooLong: string): number {
    const end = b.indexOf(delim, at, 'latin1');
    if ((end < 0 ? b.length : end) - at > max) bad(tooLong);
    if (end < 0) this.#pending = b.subarray(at);
    return end;
  }

  /** Hands on what arrived of a counted body (Content-Length or one chunk's data); returns where it stopped. */
  #counted(b: Buffer, at: number): number {
    const n = Math.min(this.#remaining, b.length - at);
    this.#remaining -= n;
    this.#sink!.data(b.subarray(at, at + n));
    return at + n;
  }

  #head(text: string): void {
    const lines = linesOf(text);
    const m = STATUS_LINE.exec(lines[0]!);
    if (!m) bad('malformed status line');
    const status = Number(m[1]);
    const fields = fieldsOf(lines, 1);
    if (status < 200) {
      // An interim response (RFC 9110 §15.2) has no body: the final one follows. An upgrade is not one gm asked for.
      if (status === 101) bad('unexpected protocol switch');
      return;
    }
    const te = fields['transfer-encoding'];
    const cl = fields['content-length'];
    const close = /(?:^|,)[\t ]*close[\t ]*(?:,|$)/i.test(fields.connection ?? '');
    const sink = this.#sink!;
    if (status === 204 || status === 304) {
      if (te !== undefined || (cl !== undefined && cl !== '0')) bad(`a ${status} answer with a body`);
      sink.head(status, fields, close);
      this.#finish();
      return;
    }
    if (this.#o.head) {
      // Its fields describe the body a GET would have had; none follows.
      sink.head(status, fields, close);
      this.#finish();
      return;
    }
    if (te !== undefined) {
      if (cl !== undefined) bad('content-length beside transfer-encoding');
      if (te.toLowerCase() !== 'chunked') bad('transfer-encoding other than chunked');
      sink.head(status, fields, close);
      this.#state = CHUNK_LINE;
      return;
    }
    if (cl === undefined) {
      if (!this.#o.closeDelimited) bad('answer framed by neither content-length nor chunked');
      sink.head(status, fields, true);
      this.#state = UNTIL_CLOSE;
      return;
    }
    if (!DIGITS.test(cl)) bad('malformed content-length');
    sink.head(status, fields, close);
    this.#remaining = Number(cl);
    if (this.#remaining === 0) this.#finish();
    else this.#state = LENGTH;
  }

  #finish(): void {
    this.#state = DONE;
    const sink = this.#sink!;
    this.#sink = undefined;
    sink.end();
  }
}
