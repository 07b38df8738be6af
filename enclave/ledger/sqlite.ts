/**
 * The ledger on SQLite (docs/design.md §6 "The ledger"): one file on one machine, shared by the processes of one
 * enclave through WAL and a busy timeout. Accounts are identified by an API key (only its SHA-256 is stored).
 *
 * A hold is a row in `holds` and its amount is added to `accounts.reserved` by one conditional UPDATE (the funds
 * must cover it), inside BEGIN IMMEDIATE, so concurrent processes serialise on the file's write lock and no account
 * passes its limit. A settle commits, in one transaction per group of receipts (enclave/ledger/group-commit.ts):
 * the chain head's compare-and-set, the offer (once), the receipt, its debit entry, the balance and the freed hold.
 * A crash at any point leaves all of them or none (WAL, synchronous=FULL); holds a crashed process left behind
 * expire and are reaped.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { hex } from '../../attestation/bytes.ts';
import { configError, rejected, unavailable } from '../../attestation/errors.ts';
import { computeCharge, type SignedReceipt, ZERO_HASH } from '../../protocol/receipt.ts';
import { type AppendItem, type ChainHead, GroupCommit, HoldsGone } from './group-commit.ts';
import {
  type Account,
  type AccountKind,
  type AccountSpec,
  apiKeyHash,
  checkChainId,
  checkPositive,
  DEFAULT_CHAIN,
  DEFAULT_HOLD_TTL_MS,
  type Hold,
  type HoldTarget,
  type Ledger,
  type LedgerOptions,
  newAccountFields,
  newApiKey,
  notCovered,
  periodOf,
  termsText,
  type Usage,
} from './ledger.ts';
import { receiptDraft } from './draft.ts';
import { type CreditKind, signCredit, signHead } from './records.ts';
import { PRAGMAS, SCHEMA, SCHEMA_VERSION } from './schema.ts';

type St = 'syncFull' | 'syncNormal' | 'account' | 'accountByKey' | 'insertOffer' | 'insertKey' | 'insertReceipt' | 'insertEntry' | 'insertCredit' | 'moveBalance' | 'debit' | 'reserve' | 'unreserve' | 'insertHold' | 'deleteHold' | 'chainHead' | 'setChain' | 'insertChain' | 'begin' | 'commit' | 'rollback';

export class SqliteLedger implements Ledger {
  readonly backend = 'sqlite' as const;
  readonly db: DatabaseSync;
  readonly chainId: string;
  readonly #signer: LedgerOptions['signer'];
  readonly #creditSigner: LedgerOptions['creditSigner'];
  readonly #ttl: number;
  readonly #now: () => number;
  /** Holds this instance took and has not settled or released. */
  readonly #open = new Set<number>();
  readonly #st: Record<St, StatementSync>;
  readonly #group: GroupCommit | undefined;
  #head: ChainHead;
  /** Offer digests and receipt keys already stored (hex), so a settle writes each only once. */
  readonly #storedOffers = new Set<string>();
  readonly #storedKeys = new Set<string>();

  private constructor(db: DatabaseSync, opts: LedgerOptions) {
    this.db = db;
    this.chainId = checkChainId(opts.chainId ?? DEFAULT_CHAIN);
    this.#signer = opts.signer;
    this.#creditSigner = opts.creditSigner ?? opts.signer;
    this.#ttl = opts.holdTtlMs ?? DEFAULT_HOLD_TTL_MS;
    this.#now = opts.now ?? Date.now;
    const big = (s: StatementSync): StatementSync => (s.setReadBigInts(true), s);
    this.#st = {
      syncFull: db.prepare('PRAGMA synchronous = FULL'),
      syncNormal: db.prepare('PRAGMA synchronous = NORMAL'),
      account: big(db.prepare('SELECT id, currency, kind, balance, credit_limit, reserved FROM accounts WHERE id = ?')),
      accountByKey: big(db.prepare('SELECT id, currency, kind, balance, credit_limit, reserved FROM accounts WHERE key_hash = ?')),
      insertOffer: db.prepare('INSERT OR IGNORE INTO offers (digest, signed) VALUES (?, ?)'),
      insertKey: db.prepare('INSERT OR IGNORE INTO receipt_keys (public_key, chain, first_seq) VALUES (?, ?, ?)'),
      insertReceipt: db.prepare(
        'INSERT INTO receipts (chain, seq, hash, prev, signed, offer_digest, account, worker_id, terms, settlement_period, currency, input_tokens, output_tokens, worker_cost, fee, total, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      insertEntry: db.prepare('INSERT INTO entries (account, kind, amount, receipt_chain, receipt_seq, at) VALUES (?, ?, ?, ?, ?, ?)'),
      insertCredit: db.prepare('INSERT INTO credits (entry_id, signed) VALUES (?, ?)'),
      moveBalance: db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?'),
      // The hold's reservation is freed and the charge taken in one statement; prepaid never below zero, postpaid
      // never beyond its limit (the schema's trigger refuses it too).
      debit: db.prepare('UPDATE accounts SET balance = balance - ?, reserved = reserved - ? WHERE id = ? AND balance + credit_limit >= ?'),
      reserve: db.prepare('UPDATE accounts SET reserved = reserved + ? WHERE id = ? AND balance + credit_limit - reserved >= ?'),
      unreserve: db.prepare('UPDATE accounts SET reserved = reserved - ? WHERE id = ?'),
      insertHold: db.prepare('INSERT INTO holds (account, amount, worker_id, owner, expires_at) VALUES (?, ?, ?, ?, ?)'),
      deleteHold: db.prepare('DELETE FROM holds WHERE id = ?'),
      chainHead: big(db.prepare('SELECT seq, hash FROM chains WHERE id = ?')),
      setChain: db.prepare('UPDATE chains SET seq = ?, hash = ? WHERE id = ? AND seq = ?'),
      insertChain: db.prepare('INSERT OR IGNORE INTO chains (id, seq, hash) VALUES (?, 0, ?)'),
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
    };
    this.#st.insertChain.run(this.chainId, ZERO_HASH);
    this.#head = this.#loadHead();
    this.#group = opts.signer ? new GroupCommit(opts.signer, { append: async (from, items) => this.#append(from, items), loadHead: async () => (this.#head = this.#loadHead()) }, this.#head, opts.maxBatch) : undefined;
  }

  /** Opens (creating if needed) the ledger at `path` (":memory:" for tests). */
  static open(path: string, opts: LedgerOptions = {}): SqliteLedger {
    let db: DatabaseSync;
    try {
      if (path !== ':memory:') privateFile(path);
      db = new DatabaseSync(path);
    } catch (e) {
      throw configError('LEDGER_UNAVAILABLE', `cannot open ledger ${path}: ${(e as Error).message}`, { cause: e });
    }
    for (const p of PRAGMAS) db.exec(p);
    const v = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() ? db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() : undefined) as { value: string } | undefined;
    if (v && v.value !== String(SCHEMA_VERSION)) {
      db.close();
      throw configError('LEDGER_SCHEMA', `ledger schema ${v.value} is not ${SCHEMA_VERSION} (version 2 keeps holds and per-chain receipts in the file; verify and archive the old ledger, then start a new one)`);
    }
    db.exec(SCHEMA);
    if (!v) db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)").run(String(SCHEMA_VERSION));
    const ledger = new SqliteLedger(db, opts);
    ledger.#reap(ledger.#now());
    return ledger;
  }

  async close(): Promise<void> {
    this.db.close();
  }

  get head(): ChainHead {
    return this.#group?.head ?? this.#head;
  }

  get commitStats(): { receipts: number; commits: number } {
    return { receipts: this.#group?.receipts ?? 0, commits: this.#group?.commits ?? 0 };
  }

  #loadHead(): ChainHead {
    const r = this.#st.chainHead.get(this.chainId) as { seq: bigint; hash: Uint8Array } | undefined;
    return r ? { seq: Number(r.seq), hash: new Uint8Array(r.hash) } : { seq: 0, hash: ZERO_HASH };
  }

  async createAccount(spec: AccountSpec, now: number): Promise<{ account: Account; apiKey: string }> {
    const apiKey = newApiKey();
    const account = await this.addAccount(apiKey, spec, now);
    return { account, apiKey };
  }

  async addAccount(apiKey: string, spec: AccountSpec, now: number): Promise<Account> {
    const a = await newAccountFields(apiKey, spec);
    const credit = this.#creditSigner ? await signCredit(this.#creditSigner, { kind: 'open', account: a.id, accountKind: a.kind, currency: a.currency, amount: a.amount, creditLimit: a.limit, keyHash: a.keyHash, at: now }) : undefined;
    this.#tx(() => {
      this.db.prepare('INSERT INTO accounts (id, key_hash, currency, kind, balance, credit_limit, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)').run(a.id, a.keyHash, a.currency, a.kind, a.amount, a.limit, now);
      this.#credit(a.id, 'open', a.amount, now, credit);
    });
    return this.#account(a.id);
  }

  async account(id: string): Promise<Account> {
    return this.#account(id);
  }

  #row(id: string): AccountRow {
    const row = this.#st.account.get(id) as AccountRow | undefined;
    if (!row) throw rejected('ACCOUNT_UNKNOWN', 'no such account');
    return row;
  }

  #account(id: string): Account {
    return toAccount(this.#row(id));
  }

  async accountForKey(apiKey: string | undefined): Promise<Account> {
    if (!apiKey) throw rejected('ACCOUNT_MISSING', 'request carries no API key');
    const row = this.#st.accountByKey.get(await apiKeyHash(apiKey)) as AccountRow | undefined;
    if (!row) throw rejected('ACCOUNT_UNKNOWN', 'API key does not belong to an account');
    return toAccount(row);
  }

  async deposit(accountId: string, amount: bigint, now: number): Promise<Account> {
    checkPositive(amount, 'a deposit');
    const a = this.#account(accountId);
    const kind = a.kind === 'prepaid' ? 'deposit' : 'payment';
    const credit = this.#creditSigner ? await signCredit(this.#creditSigner, { kind, account: a.id, accountKind: a.kind, currency: a.currency, amount, creditLimit: a.creditLimit, at: now }) : undefined;
    this.#tx(() => {
      this.#credit(accountId, kind, amount, now, credit);
      this.#st.moveBalance.run(amount, accountId);
    });
    return this.#account(accountId);
  }

  /** Appends a credit entry and its signed record (without a credit signer the entry stays unsigned: audits flag it). */
  #credit(account: string, kind: CreditKind, amount: bigint, now: number, signed: Uint8Array | undefined): void {
    const r = this.#st.insertEntry.run(account, kind, amount, null, null, now);
    if (signed) this.#st.insertCredit.run(r.lastInsertRowid, signed);
  }

  async signedHead(now: number): Promise<{ seq: number; signed: Uint8Array }> {
    if (!this.#signer) throw configError('LEDGER_NO_SIGNER', 'this ledger was opened without a receipt key and cannot sign its head');
    const { seq, hash } = this.head;
    return { seq, signed: await signHead(this.#signer, { seq, hash, time: now }) };
  }

  async payWorker(workerId: string, currency: string, amount: bigint, now: number): Promise<void> {
    checkPositive(amount, 'a payment');
    this.db.prepare('INSERT INTO worker_payments (worker_id, currency, amount, at) VALUES (?, ?, ?, ?)').run(workerId, currency, amount, now);
  }

  async available(accountId: string): Promise<bigint> {
    const r = this.#row(accountId);
    return r.balance + r.credit_limit - r.reserved;
  }

  async authorize(account: Account, target: HoldTarget, feeBasisPoints: number): Promise<Hold> {
    const offer = target.entry.verified.offer;
    const now = this.#now();
    const id = this.#tx(() => {
      const a = this.#account(account.id);
      if (offer.currency !== a.currency) throw rejected('PAYMENT_CURRENCY_MISMATCH', `offer is priced in ${offer.currency}, the account pays in ${a.currency}`);
      const postpaid = offer.terms.kind === 'postpaid';
      if (offer.terms.kind === 'postpaid') {
        const owed = this.#outstanding(offer.workerId, offer.currency);
        const heldWorker = bigOf(this.db, 'SELECT COALESCE(SUM(amount), 0) AS s FROM holds WHERE worker_id = ?', offer.workerId);
        if (owed + heldWorker + target.maxCost > offer.terms.creditLimit) throw unavailable('WORKER_CREDIT_LIMIT', `worker ${offer.workerId} has extended its full postpaid credit`);
      }
      if (Number(this.#st.reserve.run(target.maxCost, a.id, target.maxCost).changes) !== 1) {
        // Holds a crashed process left behind may be what stands in the way: reap this account's expired ones.
        if (this.#reap(now, a.id) === 0 || Number(this.#st.reserve.run(target.maxCost, a.id, target.maxCost).changes) !== 1) {
          const r = this.#row(a.id);
          throw notCovered(a, target.maxCost, r.balance + r.credit_limit - r.reserved);
        }
      }
      return Number(this.#st.insertHold.run(a.id, target.maxCost, postpaid ? offer.workerId : null, this.chainId, now + this.#ttl).lastInsertRowid);
    }, false);
    this.#open.add(id);
    return { id, account: account.id, amount: target.maxCost, target, feeBasisPoints };
  }

  async release(hold: Hold): Promise<void> {
    if (!this.#open.delete(hold.id)) return;
    this.#tx(() => {
      if (Number(this.#st.deleteHold.run(hold.id).changes) === 1) this.#st.unreserve.run(hold.amount, hold.account);
    }, false);
  }

  async reapExpired(now: number): Promise<number> {
    return this.#reap(now);
  }

  /** Frees expired holds (all, or one account's) and returns how many; joins the caller's transaction if any. */
  #reap(now: number, account?: string): number {
    const run = (): number => {
      const st = this.db.prepare(`SELECT id, account, amount FROM holds WHERE expires_at <= ?${account ? ' AND account = ?' : ''}`);
      st.setReadBigInts(true);
      const rows = (account ? st.all(now, account) : st.all(now)) as { id: bigint; account: string; amount: bigint }[];
      for (const r of rows) {
        this.#st.deleteHold.run(r.id);
        this.#st.unreserve.run(r.amount, r.account);
      }
      return rows.length;
    };
    return this.db.isTransaction ? run() : this.#tx(run, false);
  }

  settle(hold: Hold, usage: Usage, served: HoldTarget = hold.target): Promise<SignedReceipt> {
    if (!this.#open.has(hold.id)) return Promise.reject(rejected('HOLD_UNKNOWN', 'hold was already settled or released'));
    if (served.maxCost > hold.amount) return Promise.reject(rejected('HOLD_TOO_SMALL', 'the served offer can cost more than the hold reserved'));
    if (!this.#group) return Promise.reject(configError('LEDGER_NO_SIGNER', 'this ledger was opened without a receipt key and cannot settle'));
    const v = served.entry.verified;
    const charge = computeCharge(v.offer, hold.feeBasisPoints, usage.inputTokens, usage.outputTokens);
    // The hold is the most this request may cost: a charge above it is refused, never taken from the balance.
    if (charge.total > hold.amount) return Promise.reject(rejected('SETTLE_OVER_HOLD', `the charge ${charge.total} exceeds the ${hold.amount} held for the request`));
    this.#open.delete(hold.id);
    return this.#group.submit(hold, receiptDraft(hold, usage, served, charge), v, v.offer.terms.kind === 'postpaid').catch((e: unknown) => {
      // Not committed: the hold is still reserved, so the caller's release can free it.
      this.#open.add(hold.id);
      throw e;
    });
  }

  async #append(from: ChainHead, items: readonly AppendItem[]): Promise<void> {
    const gone: number[] = [];
    try {
      this.#tx(() => {
        const last = items[items.length - 1]!.signed;
        if (Number(this.#st.setChain.run(last.receipt.seq, last.hash, this.chainId, from.seq).changes) !== 1) throw unavailable('LEDGER_CHAIN_CONFLICT', `another writer appended to chain ${this.chainId}`);
        for (const it of items) if (Number(this.#st.deleteHold.run(it.hold.id).changes) !== 1) gone.push(it.hold.id);
        if (gone.length > 0) throw new HoldsGone(gone);
        for (const { hold, signed: s, offer: v } of items) {
          const r = s.receipt;
          const offerHex = hex(v.digest);
          const keyHex = hex(r.receiptKey);
          if (!this.#storedOffers.has(offerHex)) this.#st.insertOffer.run(v.digest, v.signed);
          if (!this.#storedKeys.has(keyHex)) this.#st.insertKey.run(r.receiptKey, this.chainId, r.seq);
          this.#st.insertReceipt.run(this.chainId, r.seq, s.hash, r.prev, s.signed, r.offerDigest, hold.account, r.workerId, termsText(r.terms), periodOf(r.terms), r.currency, r.inputTokens, r.outputTokens, r.workerCost, r.fee, r.total, r.time);
          this.#st.insertEntry.run(hold.account, 'debit', -r.total, this.chainId, r.seq, r.time);
          if (Number(this.#st.debit.run(r.total, hold.amount, hold.account, r.total).changes) !== 1) throw rejected('PAYMENT_INSUFFICIENT_FUNDS', `account ${hold.account} cannot cover ${r.total}`);
        }
      });
    } catch (e) {
      if (e instanceof HoldsGone || (e as { code?: string }).code !== undefined) throw e;
      throw unavailable('LEDGER_UNAVAILABLE', `the ledger could not commit: ${(e as Error).message}`, { cause: e });
    }
    for (const { signed: s, offer: v } of items) {
      this.#storedOffers.add(hex(v.digest));
      this.#storedKeys.add(hex(s.receipt.receiptKey));
    }
    const last = items[items.length - 1]!.signed;
    this.#head = { seq: last.receipt.seq, hash: last.hash };
  }

  /**
   * One transaction. Money moves only in durable ones (synchronous=FULL: fsync before COMMIT returns). Holds,
   * releases and reaping only reserve and free, so they commit without waiting for the disk (synchronous=NORMAL in
   * WAL mode: atomic, and made durable by the next durable commit, as the log is written in order); a crash may forget
   * the newest holds, together with the requests they covered.
   */
  #tx<T>(fn: () => T, durable = true): T {
    (durable ? this.#st.syncFull : this.#st.syncNormal).run();
    this.#st.begin.run();
    try {
      const out = fn();
      this.#st.commit.run();
      return out;
    } catch (e) {
      this.#st.rollback.run();
      throw e;
    }
  }

  #outstanding(workerId: string, currency: string): bigint {
    const due = bigOf(this.db, "SELECT COALESCE(SUM(worker_cost), 0) AS s FROM receipts WHERE worker_id = ? AND currency = ? AND terms = 'postpaid'", workerId, currency);
    const paid = bigOf(this.db, 'SELECT COALESCE(SUM(amount), 0) AS s FROM worker_payments WHERE worker_id = ? AND currency = ?', workerId, currency);
    return due - paid;
  }

  async workerOutstanding(workerId: string, currency: string): Promise<bigint> {
    return this.#outstanding(workerId, currency);
  }

  /** Signed receipts of this instance's chain in seq order, each with the signed offer it cites. */
  *receipts(fromSeq = 1): Iterable<{ seq: number; signed: Uint8Array; offer: Uint8Array }> {
    const st = this.db.prepare('SELECT r.seq AS seq, r.signed AS signed, o.signed AS offer FROM receipts r JOIN offers o ON o.digest = r.offer_digest WHERE r.chain = ? AND r.seq >= ? ORDER BY r.seq');
    for (const row of st.iterate(this.chainId, fromSeq) as Iterable<{ seq: number; signed: Uint8Array; offer: Uint8Array }>) yield { seq: row.seq, signed: new Uint8Array(row.signed), offer: new Uint8Array(row.offer) };
  }

  async receiptKeys(): Promise<Uint8Array[]> {
    return (this.db.prepare('SELECT public_key FROM receipt_keys ORDER BY chain, first_seq').all() as { public_key: Uint8Array }[]).map((r) => new Uint8Array(r.public_key));
  }
}

function bigOf(db: DatabaseSync, sql: string, ...args: (string | number)[]): bigint {
  const st = db.prepare(sql);
  st.setReadBigInts(true);
  return ((st.get(...args) as { s: bigint | null }).s ?? 0n) as bigint;
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
  reserved: bigint;
}

function toAccount(r: AccountRow): Account {
  return { id: r.id, currency: r.currency, kind: r.kind, balance: r.balance, creditLimit: r.credit_limit };
}
