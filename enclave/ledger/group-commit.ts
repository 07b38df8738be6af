/**
 * Group commit of receipts (docs/design.md §6 "The ledger"; the technique of database write-ahead logs, one
 * flush for many transactions): settles that arrive while a commit is in flight wait for it, then are signed in
 * chain order and committed together in ONE transaction. A settle resolves only after the transaction holding its
 * receipt committed, so no request is acknowledged with a receipt that is not durable.
 *
 * The chain belongs to one instance (its chain id), so seq and prev come from the in-memory head; the database
 * checks that head in the same transaction (a compare-and-set on the chain's row) and refuses a second writer.
 * A batch that fails rejects every settle in it and leaves the head where it was: the next batch re-signs from there.
 */
import { setImmediate } from 'node:timers';
import { GmError, rejected, unavailable } from '../../attestation/errors.ts';
import type { VerifiedOffer } from '../../protocol/offer.ts';
import type { Receipt, ReceiptSigner, SignedReceipt } from '../../protocol/receipt.ts';
import type { Hold } from './ledger.ts';

export interface ChainHead {
  readonly seq: number;
  readonly hash: Uint8Array;
}

/** One receipt ready to append: its hold, its signed receipt and the verified offer it cites. */
export interface AppendItem {
  readonly hold: Hold;
  readonly signed: SignedReceipt;
  readonly offer: VerifiedOffer;
  /** True when the served offer is postpaid (its worker's credit is moved). */
  readonly postpaid: boolean;
}

/** Thrown by an appender when some holds of the batch no longer exist (reaped after expiry): the rest is retried. */
export class HoldsGone extends Error {
  readonly ids: readonly number[];
  constructor(ids: readonly number[]) {
    super(`holds ${ids.join(', ')} no longer exist`);
    this.ids = ids;
  }
}

export interface ChainAppender {
  /** Commits the items in one transaction iff the chain's stored head is still `from`; LEDGER_CHAIN_CONFLICT otherwise. */
  append(from: ChainHead, items: readonly AppendItem[]): Promise<void>;
  /** The chain head as the database holds it (after a conflict or an ambiguous commit). */
  loadHead(): Promise<ChainHead>;
}

interface Pending {
  readonly hold: Hold;
  readonly draft: Omit<Receipt, 'v' | 'receiptKey' | 'seq' | 'prev'>;
  readonly offer: VerifiedOffer;
  readonly postpaid: boolean;
  readonly resolve: (r: SignedReceipt) => void;
  readonly reject: (e: unknown) => void;
}

export class GroupCommit {
  readonly #signer: ReceiptSigner;
  readonly #appender: ChainAppender;
  readonly #maxBatch: number;
  #head: ChainHead;
  #queue: Pending[] = [];
  #running = false;
  receipts = 0;
  commits = 0;

  constructor(signer: ReceiptSigner, appender: ChainAppender, head: ChainHead, maxBatch = 64) {
    this.#signer = signer;
    this.#appender = appender;
    this.#head = head;
    this.#maxBatch = Math.max(1, maxBatch);
  }

  get head(): ChainHead {
    return this.#head;
  }

  submit(hold: Hold, draft: Pending['draft'], offer: VerifiedOffer, postpaid: boolean): Promise<SignedReceipt> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ hold, draft, offer, postpaid, resolve, reject });
      if (!this.#running) void this.#run();
    });
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      // Let the settles of this turn of the event loop join the first batch (node:timers' own function: a test's
      // fake timers must not stall commits).
      await new Promise<void>((r) => setImmediate(r));
      while (this.#queue.length > 0) await this.#commit(this.#queue.splice(0, this.#maxBatch));
    } finally {
      this.#running = false;
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    let items = batch;
    while (items.length > 0) {
      let signed: SignedReceipt[];
      try {
        signed = [];
        let { seq, hash } = this.#head;
        for (const p of items) {
          const s = await this.#signer.sign({ ...p.draft, seq: ++seq, prev: hash });
          hash = s.hash;
          signed.push(s);
        }
      } catch (e) {
        for (const p of items) p.reject(e);
        return;
      }
      try {
        await this.#appender.append(this.#head, items.map((p, i) => ({ hold: p.hold, signed: signed[i]!, offer: p.offer, postpaid: p.postpaid })));
      } catch (e) {
        if (e instanceof HoldsGone) {
          const gone = new Set(e.ids);
          for (const p of items) if (gone.has(p.hold.id)) p.reject(rejected('HOLD_UNKNOWN', 'the hold expired and was reaped before the settle'));
          items = items.filter((p) => !gone.has(p.hold.id));
          continue;
        }
        // The outcome may be unknown (the connection dropped during COMMIT): take the head from the database.
        try {
          this.#head = await this.#appender.loadHead();
        } catch {
          // still unreachable: the next append's compare-and-set finds out
        }
        const err = e instanceof GmError ? e : unavailable('LEDGER_UNAVAILABLE', 'the ledger could not commit the receipt', { cause: e });
        for (const p of items) p.reject(err);
        return;
      }
      const last = signed[signed.length - 1]!;
      this.#head = { seq: last.receipt.seq, hash: last.hash };
      this.commits++;
      this.receipts += items.length;
      for (let i = 0; i < items.length; i++) items[i]!.resolve(signed[i]!);
      return;
    }
  }
}
