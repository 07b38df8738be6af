/**
 * The enclave's token counts, taken on a worker thread (node:worker_threads) so that counting a long answer at its
 * settlement never stalls the event loop that carries every other stream: a 4096-token answer takes milliseconds of
 * BPE (`npm run bench -- metering`), a chosen worst case tens of them. One thread per process, started with the first
 * model of a tokenizer family and unref'd (it never keeps the process alive); it loads the encodings it is asked for
 * (enclave/market/tokenizers.ts). The texts cross to the thread by structured clone, inside the process: nothing is
 * written or logged. A thread that dies answers undefined for its pending counts (the byte bound applies) and is
 * started again on the next count.
 */
import { parentPort, Worker, workerData } from 'node:worker_threads';
import { encodingFor, tokenCounterFor } from './tokenizers.ts';

const MARK = 'gm-tokenizer-thread';

interface Job {
  readonly id: number;
  readonly model: string;
  readonly texts: readonly string[];
  readonly stopAt: number;
}
interface Answer {
  readonly id: number;
  readonly n?: number;
}

/** Counts on the thread; see the module header. */
export class TokenizerThread {
  #worker: Worker | undefined;
  #next = 1;
  readonly #pending = new Map<number, (n: number | undefined) => void>();

  /** The tokenizer's count of `texts` for `model`'s family (tokenizers.ts), or undefined when it has none. */
  count(model: string, texts: readonly string[], stopAt: number): Promise<number | undefined> {
    if (!encodingFor(model)) return Promise.resolve(undefined);
    const w = this.#thread();
    return new Promise((resolve) => {
      const id = this.#next++;
      this.#pending.set(id, resolve);
      w.postMessage({ id, model, texts, stopAt } satisfies Job);
    });
  }

  /** Loads `model`'s tokenizer ahead of its first settlement (a model without one starts nothing). */
  warm(model: string): void {
    if (encodingFor(model)) void this.count(model, [], 0);
  }

  #thread(): Worker {
    if (this.#worker) return this.#worker;
    // Run from the sources (type stripping) or from the built JavaScript, as this module is.
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const w = new Worker(new URL(`./tokenizer-thread${ext}`, import.meta.url), { workerData: MARK });
    w.unref();
    w.on('message', (a: Answer) => {
      const done = this.#pending.get(a.id);
      this.#pending.delete(a.id);
      done?.(a.n);
    });
    const lost = (): void => {
      if (this.#worker === w) this.#worker = undefined;
      for (const done of this.#pending.values()) done(undefined);
      this.#pending.clear();
    };
    w.on('error', lost);
    w.on('exit', lost);
    this.#worker = w;
    return w;
  }
}

let shared: TokenizerThread | undefined;
/** The process's one tokenizer thread. */
export const tokenizerThread = (): TokenizerThread => (shared ??= new TokenizerThread());

// The thread itself: answers each job with the count, or with no count when the encoding could not be loaded.
if (workerData === MARK && parentPort) {
  const port = parentPort;
  port.on('message', async (j: Job) => {
    let n: number | undefined;
    try {
      n = (await tokenCounterFor(j.model))?.count(j.texts, j.stopAt);
    } catch {
      n = undefined;
    }
    port.postMessage((n === undefined ? { id: j.id } : { id: j.id, n }) satisfies Answer);
  });
}
