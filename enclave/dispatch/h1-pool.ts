/**
 * Up to `max` keep-alive HTTP/1.1 connections to one server (h1-connection.ts), each carrying one exchange at a time:
 * an exchange takes an idle connection, else opens another while fewer than `max` exist, else queues on the least
 * loaded. A worker's requests to its inference server go this way (worker/forward.ts).
 */
import { H1Connection, type H1Handler, type H1Options, type H1Request, type H1Timeouts } from './h1-connection.ts';

export class H1Pool {
  readonly #origin: URL;
  readonly #t: H1Timeouts;
  readonly #max: number;
  readonly #o: H1Options;
  readonly #conns: H1Connection[] = [];

  constructor(origin: URL, t: H1Timeouts, max: number, o: H1Options = {}) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('a pool needs at least one connection');
    this.#origin = origin;
    this.#t = t;
    this.#max = max;
    this.#o = o;
  }

  dispatch(req: H1Request, handler: H1Handler): boolean {
    let c: H1Connection | undefined;
    for (const x of this.#conns) {
      if (x.load === 0) {
        c = x;
        break;
      }
      if (!c || x.load < c.load) c = x;
    }
    if (!c || (c.load > 0 && this.#conns.length < this.#max)) {
      c = new H1Connection(this.#origin, this.#t, () => undefined, this.#o);
      this.#conns.push(c);
    }
    return c.dispatch(req, handler);
  }

  /** Connections open or opened so far (tests). */
  get size(): number {
    return this.#conns.length;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.#conns.map((c) => c.destroy()));
  }
}
