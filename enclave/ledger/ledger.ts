/**
 * The payments ledger (docs/design.md §6; docs/market.md "Payments and the ledger"): accounts identified by an API key
 * (only its SHA-256 is stored), a hold checked before dispatch, and on completion one SQLite transaction that
 * appends the signed receipt, appends the debit entry and moves the balance, so a crash at any point leaves either
 * all of them or none (WAL, synchronous=FULL).
 *
 * Order of a settle: (1) in a queue that serialises settles, take seq and prev from the last committed receipt;
 * (2) sign the receipt with the enclave's receipt key (async WebCrypto, outside the transaction); (3) BEGIN
 * IMMEDIATE; insert the offer (once), receipt, debit entry; update the balance; COMMIT; (4) only then advance the
 * in-memory chain head and hand the receipt out. A crash between (2) and (3) loses an unsent receipt and charges
 * nothing; the chain head is re-read from the database on open.
 *
 * Holds live in memory: they reserve `maxCost` against the account's available funds so concurrent requests cannot
 * overspend, and vanish with the process (nothing was charged). Money: bigint micro-units throughout.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { hex, sha256, toBase64 } from '../../attestation/bytes.ts';
import { configError, rejected, unavailable } from '../../attestation/errors.ts';
import type { PaymentTerms, VerifiedOffer } from '../../protocol/offer.ts';
import { computeCharge, type ReceiptSigner, type ReceiptStatus, type SignedReceipt, ZERO_HASH } from '../../protocol/receipt.ts';
import { type CreditKind, signCredit, signHead } from './records.ts';
import { PRAGMAS, SCHEMA, SCHEMA_VERSION } from './schema.ts';

export type AccountKind = 'prepaid' | 'postpaid';

export interface Account {
  readonly id: string;
  readonly currency: string;
  readonly kind: AccountKind;
  /** Prepaid: remaining funds. Postpaid: minus what is owed (0 or negative). */
  readonly balance: bigint;
  /** Postpaid credit limit (0 for prepaid). Available = balance + creditLimit - held. */
  readonly creditLimit: bigint;
}

/** What a hold needs to know about the chosen offer (a market `Candidate` satisfies it). */
export interface HoldTarget {
  readonly entry: { readonly verified: VerifiedOffer };
  readonly worker: { readonly workerId: string; readonly evidenceDigest: Uint8Array; readonly sim: boolean };
  /** Upper bound of the charge: worker cost + fee at the request's token bounds. */
  readonly maxCost: bigint;
}

export interface Hold {
  readonly id: number;
  readonly account: string;
  readonly amount: bigint;
  readonly target: HoldTarget;
  readonly feeBasisPoints: number;
}

export interface Usage {
  readonly requestId: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Unix ms (the receipt time). */
  readonly now: number;
  /** True when the enclave itself runs on simulated evidence (the receipt's sim flag also covers the worker's). */
  readonly enclaveSim?: boolean;
  /** Set when the answer did not complete (the client cancelled): the receipt says so. */
  readonly status?: ReceiptStatus;
}

export interface LedgerOptions {
  /** The enclave's receipt key. Without one the ledger serves accounts and statements but cannot settle. */
  readonly signer?: ReceiptSigner;
  /**
   * Signs account openings and deposits (the operator's credit key; default the receipt key). Without either,
   * credits are written unsigned and `gm receipts verify --ledger` rejects them.
   */
  readonly creditSigner?: ReceiptSigner;
}

const KEY_CONTEXT = new TextEncoder().encode('gm-api-key-v1\0');
const MAX_AMOUNT = (1n << 62n) - 1n;

/** SHA-256 of the domain-separated API key: the only form in which keys are stored or compared. */
export async function apiKeyHash(apiKey: string): Promise<Uint8Array> {
  const k = new TextEncoder().encode(apiKey);
  const b = new Uint8Array(KEY_CONTEXT.length + k.length);
  b.set(KEY_CONTEXT);
  b.set(k, KEY_CONTEXT.length);
  return sha256(b);
}

const termsText = (t: PaymentTerms): string => t.kind;
const periodOf = (t: PaymentTerms): number => (t.kind === 'postpaid' ? t.settlementPeriodSeconds : 0);

export class Ledger {
  readonly db: DatabaseSync;
  readonly #signer: ReceiptSigner | undefined;
  readonly #creditSigner: ReceiptSigner | undefined;
  readonly #holds = new Map<number, Hold>();
  readonly #held = new Map<string, bigint>();
  #nextHold = 1;
  #headSeq = 0;
  #headHash: Uint8Array = ZERO_HASH;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #st: Record<'account' | 'accountByKey' | 'insertOffer' | 'insertKey' | 'insertReceipt' | 'insertEntry' | 'insertCredit' | 'moveBalance' | 'debit' | 'begin' | 'commit' | 'rollback', StatementSync>;
  /** Offer digests and receipt keys already stored (hex), so a settle writes each only once. */
  readonly #storedOffers = new Set<string>();
  readonly #storedKeys = new Set<string>();

  private constructor(db: DatabaseSync, signer: ReceiptSigner | undefined, creditSigner: ReceiptSigner | undefined) {
    this.db = db;
    this.#signer = signer;
    this.#creditSigner = creditSigner;
    const big = (s: StatementSync): StatementSync => (s.setReadBigInts(true), s);
    this.#st = {
      account: big(db.prepare('SELECT id, currency, kind, balance, credit_limit FROM accounts WHERE id = ?')),
      accountByKey: big(db.prepare('SELECT id, currency, kind, balance, credit_limit FROM accounts WHERE key_hash = ?')),
      insertOffer: db.prepare('INSERT OR IGNORE INTO offers (digest, signed) VALUES (?, ?)'),
      insertKey: db.prepare('INSERT OR IGNORE INTO receipt_keys (public_key, first_seq) VALUES (?, ?)'),
      insertReceipt: db.prepare(
        'INSERT INTO receipts (seq, hash, prev, signed, offer_digest, account, worker_id, terms, settlement_period, currency, input_tokens, output_tokens, worker_cost, fee, total, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      insertEntry: db.prepare('INSERT INTO entries (account, kind, amount, receipt_seq, at) VALUES (?, ?, ?, ?, ?)'),
      insertCredit: db.prepare('INSERT INTO credits (entry_id, signed) VALUES (?, ?)'),
      moveBalance: db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?'),
      debit: db.prepare('UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance + credit_limit >= ?'),
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
    };
    const head = big(db.prepare('SELECT seq, hash FROM receipts ORDER BY seq DESC LIMIT 1')).get() as { seq: bigint; hash: Uint8Array } | undefined;
    if (head) {
      this.#headSeq = Number(head.seq);
      this.#headHash = new Uint8Array(head.hash);
    }
  }

  /** Opens (creating if needed) the ledger at `path` (":memory:" for tests). */
  static open(path: string, opts: LedgerOptions): Ledger {
    let db: DatabaseSync;
    try {
      if (path !== ':memory:') privateFile(path);
      db = new DatabaseSync(path);
    } catch (e) {
      throw configError('LEDGER_UNAVAILABLE', `cannot open ledger ${path}: ${(e as Error).message}`, { cause: e });
    }
    for (const p of PRAGMAS) db.exec(p);
    db.exec(SCHEMA);
    const v = db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as { value: string } | undefined;
    if (!v) db.prepare("INSERT INTO meta (key, value) VALUES ('schema', ?)").run(String(SCHEMA_VERSION));
    else if (v.value !== String(SCHEMA_VERSION)) throw configError('LEDGER_SCHEMA', `ledger schema ${v.value} is not ${SCHEMA_VERSION}`);
    return new Ledger(db, opts.signer, opts.creditSigner ?? opts.signer);
  }

  close(): void {
    this.db.close();
  }

  /** The last committed receipt's seq and hash (the chain head). */
  get head(): { seq: number; hash: Uint8Array } {
    return { seq: this.#headSeq, hash: this.#headHash };
  }

  /**
   * Opens an account and returns its new API key (shown once; only its hash is stored). Prepaid accounts start
   * with `deposit` (may be 0n); postpaid ones with a credit limit.
   */
  async createAccount(spec: { currency: string; prepaid: bigint } | { currency: string; creditLimit: bigint }, now: number): Promise<{ account: Account; apiKey: string }> {
    const raw = crypto.getRandomValues(new Uint8Array(32));
    const apiKey = `gm_${toBase64(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}`;
    const account = await this.addAccount(apiKey, spec, now);
    return { account, apiKey };
  }

  /** Registers an externally issued API key (must be high-entropy: it is stored as an unsalted SHA-256). */
  async addAccount(apiKey: string, spec: { currency: string; prepaid: bigint } | { currency: string; creditLimit: bigint }, now: number): Promise<Account> {
    if (apiKey.length < 24) throw configError('ACCOUNT_KEY_WEAK', 'API keys must be at least 24 characters of random');
    if (!/^[A-Z0-9]{1,12}$/.test(spec.currency)) throw configError('ACCOUNT_INVALID', 'currency must be 1..12 of [A-Z0-9]');
    const keyHash = await apiKeyHash(apiKey);
    const id = `acct_${hex(keyHash.subarray(0, 8))}`;
    const prepaid = 'prepaid' in spec;
    const amount = prepaid ? spec.prepaid : 0n;
    const limit = prepaid ? 0n : spec.creditLimit;
    if (amount < 0n || limit < 0n || amount > MAX_AMOUNT || limit > MAX_AMOUNT) throw configError('ACCOUNT_INVALID', 'amounts must be non-negative micro-units below 2^62');
    const accountKind = prepaid ? 'prepaid' : 'postpaid';
    const credit = this.#creditSigner ? await signCredit(this.#creditSigner, { kind: 'open', account: id, accountKind, currency: spec.currency, amount, creditLimit: limit, keyHash, at: now }) : undefined;
    this.#tx(() => {
      this.db.prepare('INSERT INTO accounts (id, key_hash, currency, kind, balance, credit_limit, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)').run(id, keyHash, spec.currency, accountKind, amount, limit, now);
      this.#credit(id, 'open', amount, now, credit);
    });
    return this.account(id);
  }

  account(id: string): Account {
    const row = this.#st.account.get(id) as AccountRow | undefined;
    if (!row) throw rejected('ACCOUNT_UNKNOWN', 'no such account');
    return toAccount(row);
  }

  /** The account an API key (from inside the encrypted request) belongs to; ACCOUNT_UNKNOWN (401-class) otherwise. */
  async accountForKey(apiKey: string | undefined): Promise<Account> {
    if (!apiKey) throw rejected('ACCOUNT_MISSING', 'request carries no API key');
    const row = this.#st.accountByKey.get(await apiKeyHash(apiKey)) as AccountRow | undefined;
    if (!row) throw rejected('ACCOUNT_UNKNOWN', 'API key does not belong to an account');
    return toAccount(row);
  }

  /** Adds funds to a prepaid account, or records a payment that reduces a postpaid account's debt. */
  async deposit(accountId: string, amount: bigint, now: number): Promise<Account> {
    if (amount <= 0n || amount > MAX_AMOUNT) throw configError('ACCOUNT_INVALID', 'deposit must be positive micro-units');
    const a = this.account(accountId);
    const kind = a.kind === 'prepaid' ? 'deposit' : 'payment';
    const credit = this.#creditSigner ? await signCredit(this.#creditSigner, { kind, account: a.id, accountKind: a.kind, currency: a.currency, amount, creditLimit: a.creditLimit, at: now }) : undefined;
    this.#tx(() => {
      this.#credit(accountId, kind, amount, now, credit);
      this.#st.moveBalance.run(amount, accountId);
    });
    return this.account(accountId);
  }

  /** Appends a credit entry and its signed record (without a credit signer the entry stays unsigned: audits flag it). */
  #credit(account: string, kind: CreditKind, amount: bigint, now: number, signed: Uint8Array | undefined): void {
    const r = this.#st.insertEntry.run(account, kind, amount, null, now);
    if (signed) this.#st.insertCredit.run(r.lastInsertRowid, signed);
  }

  /**
   * The chain head signed by the receipt key: "N receipts, the last one's hash is H" (enclave/ledger/records.ts).
   * Kept outside the ledger file, it lets an audit see receipts removed from the end or a rolled-back file.
   */
  async signedHead(now: number): Promise<{ seq: number; signed: Uint8Array }> {
    if (!this.#signer) throw configError('LEDGER_NO_SIGNER', 'this ledger was opened without a receipt key and cannot sign its head');
    const { seq, hash } = this.head;
    return { seq, signed: await signHead(this.#signer, { seq, hash, time: now }) };
  }

  /** Records a payout to a worker (settling what it is owed, or prepaying it under `prepaid` terms). */
  payWorker(workerId: string, currency: string, amount: bigint, now: number): void {
    if (amount <= 0n || amount > MAX_AMOUNT) throw configError('ACCOUNT_INVALID', 'payment must be positive micro-units');
    this.db.prepare('INSERT INTO worker_payments (worker_id, currency, amount, at) VALUES (?, ?, ?, ?)').run(workerId, currency, amount, now);
  }

  /**
   * Reserves the candidate's `maxCost` on the account before dispatch. Codes (402-class, kind `rejected`):
   * PAYMENT_CURRENCY_MISMATCH, PAYMENT_INSUFFICIENT_FUNDS (prepaid), PAYMENT_CREDIT_LIMIT (postpaid).
   * WORKER_CREDIT_LIMIT (kind `unavailable`, try the next candidate) when a postpaid offer's credit is used up.
   */
  authorize(account: Account, target: HoldTarget, feeBasisPoints: number): Hold {
    const offer = target.entry.verified.offer;
    const a = this.account(account.id);
    if (offer.currency !== a.currency) throw rejected('PAYMENT_CURRENCY_MISMATCH', `offer is priced in ${offer.currency}, the account pays in ${a.currency}`);
    const held = this.#held.get(a.id) ?? 0n;
    const available = a.balance + a.creditLimit - held;
    if (target.maxCost > available) {
      throw a.kind === 'prepaid'
        ? rejected('PAYMENT_INSUFFICIENT_FUNDS', `prepaid balance cannot cover this request (up to ${target.maxCost} micro-${a.currency} needed, ${available > 0n ? available : 0n} available)`)
        : rejected('PAYMENT_CREDIT_LIMIT', `postpaid credit limit reached (up to ${target.maxCost} micro-${a.currency} needed, ${available > 0n ? available : 0n} available)`);
    }
    if (offer.terms.kind === 'postpaid') {
      const owed = this.workerOutstanding(offer.workerId, offer.currency, 'postpaid');
      let heldWorker = 0n;
      for (const h of this.#holds.values()) if (h.target.entry.verified.offer.workerId === offer.workerId && h.target.entry.verified.offer.terms.kind === 'postpaid') heldWorker += h.amount;
      if (owed + heldWorker + target.maxCost > offer.terms.creditLimit) throw unavailable('WORKER_CREDIT_LIMIT', `worker ${offer.workerId} has extended its full postpaid credit`);
    }
    const hold: Hold = { id: this.#nextHold++, account: a.id, amount: target.maxCost, target, feeBasisPoints };
    this.#holds.set(hold.id, hold);
    this.#held.set(a.id, held + hold.amount);
    return hold;
  }

  /** Funds the account can still commit now: balance + credit limit − holds. */
  available(accountId: string): bigint {
    const a = this.account(accountId);
    return a.balance + a.creditLimit - (this.#held.get(a.id) ?? 0n);
  }

  /** Drops a hold without charging (the request failed before the worker produced anything billable). */
  release(hold: Hold): void {
    if (!this.#holds.delete(hold.id)) return;
    this.#held.set(hold.account, (this.#held.get(hold.account) ?? 0n) - hold.amount);
  }

  /**
   * Charges the actual usage by the served offer's prices (the held one unless failover moved the request to
   * another candidate whose bound the hold also covers) plus the fee, signs the receipt and commits receipt +
   * debit + balance in one transaction; releases the hold. Returns the signed receipt to send to the client.
   */
  settle(hold: Hold, usage: Usage, served: HoldTarget = hold.target): Promise<SignedReceipt> {
    if (!this.#holds.has(hold.id)) return Promise.reject(rejected('HOLD_UNKNOWN', 'hold was already settled or released'));
    if (served.maxCost > hold.amount) return Promise.reject(rejected('HOLD_TOO_SMALL', 'the served offer can cost more than the hold reserved'));
    const run = async (): Promise<SignedReceipt> => {
      if (!this.#holds.has(hold.id)) throw rejected('HOLD_UNKNOWN', 'hold was already settled or released');
      const v = served.entry.verified;
      const o = v.offer;
      const w = served.worker;
      const charge = computeCharge(o, hold.feeBasisPoints, usage.inputTokens, usage.outputTokens);
      // The hold is the most this request may cost: a charge above it is refused, never taken from the balance.
      if (charge.total > hold.amount) throw rejected('SETTLE_OVER_HOLD', `the charge ${charge.total} exceeds the ${hold.amount} held for the request`);
      const seq = this.#headSeq + 1;
      if (!this.#signer) throw configError('LEDGER_NO_SIGNER', 'this ledger was opened without a receipt key and cannot settle');
      const signed = await this.#signer.sign({
        seq,
        prev: this.#headHash,
        requestId: usage.requestId,
        time: usage.now,
        model: o.model,
        account: hold.account,
        workerId: o.workerId,
        workerKey: o.workerKey,
        evidenceDigest: w.evidenceDigest,
        offerId: o.offerId,
        offerDigest: v.digest,
        inputTokens: usage.inputTokens,
        outputTokens: usage.outputTokens,
        currency: o.currency,
        pricePerMInput: o.pricePerMInput,
        pricePerMOutput: o.pricePerMOutput,
        feeBasisPoints: hold.feeBasisPoints,
        ...charge,
        terms: o.terms,
        sim: w.sim || usage.enclaveSim === true,
        ...(usage.status !== undefined ? { status: usage.status } : {}),
      });
      this.#commit(signed, v, hold);
      this.release(hold);
      return signed;
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  #commit(s: SignedReceipt, v: VerifiedOffer, hold: Hold): void {
    const r = s.receipt;
    const offerHex = hex(v.digest);
    const keyHex = hex(r.receiptKey);
    this.#tx(() => {
      if (!this.#storedOffers.has(offerHex)) this.#st.insertOffer.run(v.digest, v.signed);
      if (!this.#storedKeys.has(keyHex)) this.#st.insertKey.run(r.receiptKey, r.seq);
      this.#st.insertReceipt.run(r.seq, s.hash, r.prev, s.signed, r.offerDigest, hold.account, r.workerId, termsText(r.terms), periodOf(r.terms), r.currency, r.inputTokens, r.outputTokens, r.workerCost, r.fee, r.total, r.time);
      this.#st.insertEntry.run(hold.account, 'debit', -r.total, r.seq, r.time);
      // Prepaid never below zero, postpaid never beyond its credit limit: checked in the same statement that moves
      // the balance (the schema's trigger refuses it too), so no path around the hold can overdraw an account.
      const moved = this.#st.debit.run(r.total, hold.account, r.total);
      if (Number(moved.changes) !== 1) throw rejected('PAYMENT_INSUFFICIENT_FUNDS', `account ${hold.account} cannot cover ${r.total}`);
    });
    this.#headSeq = r.seq;
    this.#headHash = s.hash;
    this.#storedOffers.add(offerHex);
    this.#storedKeys.add(keyHex);
  }

  #tx(fn: () => void): void {
    this.#st.begin.run();
    try {
      fn();
      this.#st.commit.run();
    } catch (e) {
      this.#st.rollback.run();
      throw e;
    }
  }

  /** Worker cost of receipts under `terms` minus payouts recorded for the worker in that currency. */
  workerOutstanding(workerId: string, currency: string, terms: PaymentTerms['kind']): bigint {
    const q = (sql: string, ...args: (string | number)[]): bigint => {
      const st = this.db.prepare(sql);
      st.setReadBigInts(true);
      return ((st.get(...args) as { s: bigint | null }).s ?? 0n) as bigint;
    };
    const due = q('SELECT SUM(worker_cost) AS s FROM receipts WHERE worker_id = ? AND currency = ? AND terms = ?', workerId, currency, terms);
    const paid = q('SELECT SUM(amount) AS s FROM worker_payments WHERE worker_id = ? AND currency = ?', workerId, currency);
    return due - paid;
  }

  /** Signed receipts in seq order, each with the signed offer it cites (for `gm receipts verify --ledger`). */
  *receipts(fromSeq = 1): Iterable<{ seq: number; signed: Uint8Array; offer: Uint8Array }> {
    const st = this.db.prepare('SELECT r.seq AS seq, r.signed AS signed, o.signed AS offer FROM receipts r JOIN offers o ON o.digest = r.offer_digest WHERE r.seq >= ? ORDER BY r.seq');
    for (const row of st.iterate(fromSeq) as Iterable<{ seq: number; signed: Uint8Array; offer: Uint8Array }>) yield { seq: row.seq, signed: new Uint8Array(row.signed), offer: new Uint8Array(row.offer) };
  }

  /** The receipt public keys seen in this ledger (one per enclave boot). */
  receiptKeys(): Uint8Array[] {
    return (this.db.prepare('SELECT public_key FROM receipt_keys ORDER BY first_seq').all() as { public_key: Uint8Array }[]).map((r) => new Uint8Array(r.public_key));
  }
}

/**
 * Balances and account ids are nobody else's business: a missing directory is created 0700, the file 0600 (and
 * tightened to 0600 if it exists). SQLite gives its -wal and -shm files the database file's mode.
 */
function privateFile(path: string): void {
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
}

interface AccountRow {
  id: string;
  currency: string;
  kind: AccountKind;
  balance: bigint;
  credit_limit: bigint;
}

function toAccount(r: AccountRow): Account {
  return { id: r.id, currency: r.currency, kind: r.kind, balance: r.balance, creditLimit: r.credit_limit };
}
