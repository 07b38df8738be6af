/**
 * The ledger on PostgreSQL (docs/design.md §6 "The ledger"; docs/operator.md "A shared ledger on PostgreSQL"):
 * several enclave replicas share accounts, balances and receipts through one database that runs outside the
 * enclaves, through the `pg` client.
 *
 * Atomicity is PostgreSQL's: a hold is `UPDATE gm_accounts SET reserved = reserved + $a WHERE id = $t AND balance +
 * credit_limit - reserved >= $a` (READ COMMITTED re-checks the condition on the latest row version after waiting for
 * a concurrent writer, so two replicas cannot both take the last funds); a settle frees the hold and moves the
 * balance in the transaction that appends the receipts, and `gm_accounts_floor` refuses any balance beyond its
 * limit. Each replica appends to its own chain; the transaction first moves that chain's head row from the seq it
 * expects (a row lock and a compare-and-set), so appends to one chain are serialised by the database.
 *
 * What the host must not read is sealed under the ledger key (enclave/ledger/columns.ts); what stays in clear, and
 * why, is listed in enclave/ledger/pg-schema.ts. A database that cannot be reached gives LEDGER_UNAVAILABLE (503).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { fromHex, hex } from '../../attestation/bytes.ts';
import { configError, GmError, rejected, unavailable } from '../../attestation/errors.ts';
import { computeCharge, type SignedReceipt, ZERO_HASH } from '../../protocol/receipt.ts';
import { LedgerKey } from './columns.ts';
import { receiptDraft } from './draft.ts';
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
  type Usage,
} from './ledger.ts';
import { type CreditKind, signCredit, signHead } from './records.ts';
import { PG_SCHEMA, PG_SCHEMA_VERSION } from './pg-schema.ts';

/** The sealed part of an account row. */
interface SealedAccount {
  readonly id: string;
  readonly currency: string;
  readonly kind: AccountKind;
  readonly keyHash: string;
  readonly createdAt: number;
}

/** The sealed body of an entry: an opening, deposit, payment (with its signed credit record) or a receipt's debit. */
export interface SealedEntry {
  readonly account: string;
  readonly kind: CreditKind | 'debit';
  readonly amount: bigint;
  readonly at: number;
  /** base64 of the signed credit record (credits only). */
  readonly credit?: string;
}

export interface SealedPayment {
  readonly workerId: string;
  readonly currency: string;
  readonly amount: bigint;
  readonly at: number;
}

type Q = pg.Pool | pg.PoolClient;
const SCHEMA_LOCK = 0x676d6c6564676572n; // "gmledger": serialises schema creation across replicas starting at once
const META_KEY_CHECK = 'key_check';
const META_SCHEMA = 'schema';

/** Maps a driver failure to the error a caller can act on: PostgreSQL down or restarting is a 503, not a crash. */
export function pgFailure(e: unknown, what: string): GmError {
  if (e instanceof GmError) return e;
  const code = (e as { code?: string }).code;
  if (code === '23514') return rejected('PAYMENT_INSUFFICIENT_FUNDS', `${what}: the account cannot cover it`, { cause: e });
  if (code === '23505') return configError('LEDGER_DUPLICATE', `${what}: the row exists already`, { cause: e });
  return unavailable('LEDGER_UNAVAILABLE', `${what}: the ledger database is unavailable (${code ?? (e as Error).message})`, { cause: e });
}

export class PostgresLedger implements Ledger {
  readonly backend = 'postgres' as const;
  readonly chainId: string;
  readonly pool: pg.Pool;
  /**
   * Holds, releases and reaping only reserve and free: their connections commit without waiting for the WAL flush
   * (synchronous_commit=off). The log is written in order, so the next settle's synchronous commit makes them
   * durable; a server crash may forget the newest holds, as a crash of the replica would.
   */
  readonly #holdPool: pg.Pool;
  readonly #key: LedgerKey;
  readonly #signer: LedgerOptions['signer'];
  readonly #creditSigner: LedgerOptions['creditSigner'];
  readonly #ttl: number;
  readonly #now: () => number;
  readonly #open = new Set<number>();
  readonly #group: GroupCommit | undefined;
  /** Account ids to their immutable sealed fields (currency, kind), so a hold decrypts nothing. */
  readonly #accounts = new Map<string, SealedAccount>();
  readonly #storedOffers = new Set<string>();
  readonly #storedKeys = new Set<string>();
  #head: ChainHead;

  private constructor(pool: pg.Pool, holdPool: pg.Pool, key: LedgerKey, head: ChainHead, opts: LedgerOptions) {
    this.pool = pool;
    this.#holdPool = holdPool;
    this.#key = key;
    this.chainId = checkChainId(opts.chainId ?? DEFAULT_CHAIN);
    this.#signer = opts.signer;
    this.#creditSigner = opts.creditSigner ?? opts.signer;
    this.#ttl = opts.holdTtlMs ?? DEFAULT_HOLD_TTL_MS;
    this.#now = opts.now ?? Date.now;
    this.#head = head;
    this.#group = opts.signer ? new GroupCommit(opts.signer, { append: (from, items) => this.#append(from, items), loadHead: async () => (this.#head = await loadHead(this.pool, this.#key, this.chainId)) }, head, opts.maxBatch) : undefined;
  }

  /**
   * Connects, creates the schema if needed and checks the ledger key against the stored key-check value
   * (LEDGER_KEY_MISMATCH; LEDGER_KEY_REQUIRED when the database has one and no key was given). Without a key on a
   * new database a fresh one is generated: it lives in this process only.
   */
  static async open(url: string, opts: LedgerOptions & { poolSize?: number } = {}): Promise<PostgresLedger> {
    const types = { getTypeParser: ((oid: number, format?: string) => (oid === 20 ? (v: string) => BigInt(v) : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser };
    const pool = new pg.Pool({ connectionString: url, max: opts.poolSize ?? 8, types });
    const holdPool = new pg.Pool({ connectionString: url, max: Math.max(2, Math.ceil((opts.poolSize ?? 8) / 2)), types, options: '-c synchronous_commit=off' });
    // An idle connection that the server closes (a restart) must not crash the process: the next query reconnects.
    pool.on('error', () => undefined);
    holdPool.on('error', () => undefined);
    try {
      const client = await pool.connect().catch((e: unknown) => {
        throw pgFailure(e, 'connecting to the ledger');
      });
      let key: LedgerKey;
      const chainId = checkChainId(opts.chainId ?? defaultChain(opts));
      opts = { ...opts, chainId };
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        await client.query(PG_SCHEMA);
        const meta = new Map((await client.query<{ key: string; value: Buffer }>('SELECT key, value FROM gm_meta')).rows.map((r) => [r.key, new Uint8Array(r.value)]));
        const schema = meta.get(META_SCHEMA);
        if (schema && new TextDecoder().decode(schema) !== PG_SCHEMA_VERSION) throw configError('LEDGER_SCHEMA', `ledger schema ${new TextDecoder().decode(schema)} is not ${PG_SCHEMA_VERSION}`);
        const check = meta.get(META_KEY_CHECK);
        if (check) {
          if (!opts.ledgerKey) throw configError('LEDGER_KEY_REQUIRED', 'this ledger database is sealed under a ledger key: give the key (from an attested replica) to open it');
          key = new LedgerKey(opts.ledgerKey);
          if (!key.matches(check)) throw configError('LEDGER_KEY_MISMATCH', 'the ledger key does not match the one this database is sealed under');
        } else {
          key = new LedgerKey(opts.ledgerKey ?? randomBytes(32));
          await client.query('INSERT INTO gm_meta (key, value) VALUES ($1, $2), ($3, $4)', [META_KEY_CHECK, key.keyCheck, META_SCHEMA, Buffer.from(PG_SCHEMA_VERSION)]);
        }
        // Only a writer of receipts has a chain (the operator's account commands open the ledger without a receipt key).
        if (opts.signer) await client.query('INSERT INTO gm_chains (id, seq, head) VALUES ($1, 0, $2) ON CONFLICT (id) DO NOTHING', [chainId, key.seal('gm_chains', chainId, 'head', ZERO_HASH)]);
        await client.query('COMMIT');
      } catch (e) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw pgFailure(e, 'opening the ledger');
      } finally {
        client.release();
      }
      const opened = new PostgresLedger(pool, holdPool, key, await loadHead(pool, key, chainId), opts);
      await opened.reapExpired(opened.#now());
      return opened;
    } catch (e) {
      await Promise.all([pool.end().catch(() => undefined), holdPool.end().catch(() => undefined)]);
      throw e;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.end(), this.#holdPool.end()]);
  }

  get head(): ChainHead {
    return this.#group?.head ?? this.#head;
  }

  get commitStats(): { receipts: number; commits: number } {
    return { receipts: this.#group?.receipts ?? 0, commits: this.#group?.commits ?? 0 };
  }

  #accountToken(id: string): Buffer {
    return Buffer.from(this.#key.token('account', id));
  }

  /** Runs `fn` in one transaction on one pooled connection; driver failures become coded errors. */
  async #tx<T>(what: string, fn: (c: pg.PoolClient) => Promise<T>, pool: pg.Pool = this.pool): Promise<T> {
    let c: pg.PoolClient;
    try {
      c = await pool.connect();
    } catch (e) {
      throw pgFailure(e, what);
    }
    let broken = false;
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (e) {
      try {
        await c.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw e instanceof HoldsGone ? e : pgFailure(e, what);
    } finally {
      c.release(broken);
    }
  }

  async #q<R extends pg.QueryResultRow>(what: string, sql: string, params: unknown[], pool: pg.Pool = this.pool): Promise<pg.QueryResult<R>> {
    try {
      return await pool.query<R>(sql, params);
    } catch (e) {
      throw pgFailure(e, what);
    }
  }

  async createAccount(spec: AccountSpec, now: number): Promise<{ account: Account; apiKey: string }> {
    const apiKey = newApiKey();
    return { account: await this.addAccount(apiKey, spec, now), apiKey };
  }

  async addAccount(apiKey: string, spec: AccountSpec, now: number): Promise<Account> {
    const a = await newAccountFields(apiKey, spec);
    const credit = this.#creditSigner ? await signCredit(this.#creditSigner, { kind: 'open', account: a.id, accountKind: a.kind, currency: a.currency, amount: a.amount, creditLimit: a.limit, keyHash: a.keyHash, at: now }) : undefined;
    const token = this.#accountToken(a.id);
    const sealed: SealedAccount = { id: a.id, currency: a.currency, kind: a.kind, keyHash: hex(a.keyHash), createdAt: now };
    await this.#tx('opening an account', async (c) => {
      await c.query('INSERT INTO gm_accounts (id, key_token, sealed, balance, credit_limit) VALUES ($1, $2, $3, $4, $5)', [token, Buffer.from(this.#key.token('api-key', a.keyHash)), this.#key.sealJson('gm_accounts', hex(token), 'sealed', sealed), a.amount, a.limit]);
      await this.#entry(c, { account: a.id, kind: 'open', amount: a.amount, at: now, ...(credit ? { credit: Buffer.from(credit).toString('base64') } : {}) });
    });
    this.#accounts.set(a.id, sealed);
    return { id: a.id, currency: a.currency, kind: a.kind, balance: a.amount, creditLimit: a.limit };
  }

  async #entry(c: pg.PoolClient, e: SealedEntry, receipt?: { chain: string; seq: number }): Promise<void> {
    const id = randomBytes(16);
    await c.query('INSERT INTO gm_entries (id, receipt_chain, receipt_seq, body) VALUES ($1, $2, $3, $4)', [id, receipt?.chain ?? null, receipt?.seq ?? null, this.#key.sealJson('gm_entries', hex(id), 'body', e)]);
  }

  async #row(q: Q, token: Buffer, what: string): Promise<{ fields: SealedAccount; balance: bigint; creditLimit: bigint; reserved: bigint } | undefined> {
    let r: { id: Buffer; sealed: Buffer; balance: bigint; credit_limit: bigint; reserved: bigint } | undefined;
    try {
      r = (await q.query<{ id: Buffer; sealed: Buffer; balance: bigint; credit_limit: bigint; reserved: bigint }>('SELECT id, sealed, balance, credit_limit, reserved FROM gm_accounts WHERE id = $1', [token])).rows[0];
    } catch (e) {
      throw pgFailure(e, what);
    }
    if (!r) return undefined;
    const fields = this.#key.openJson<SealedAccount>('gm_accounts', hex(r.id), 'sealed', r.sealed);
    this.#accounts.set(fields.id, fields);
    return { fields, balance: r.balance, creditLimit: r.credit_limit, reserved: r.reserved };
  }

  async account(id: string): Promise<Account> {
    const r = await this.#row(this.pool, this.#accountToken(id), 'reading an account');
    if (!r || r.fields.id !== id) throw rejected('ACCOUNT_UNKNOWN', 'no such account');
    return { id, currency: r.fields.currency, kind: r.fields.kind, balance: r.balance, creditLimit: r.creditLimit };
  }

  async accountForKey(apiKey: string | undefined): Promise<Account> {
    if (!apiKey) throw rejected('ACCOUNT_MISSING', 'request carries no API key');
    const keyHash = await apiKeyHash(apiKey);
    const r = (await this.#q<{ id: Buffer }>('finding an account', 'SELECT id FROM gm_accounts WHERE key_token = $1', [Buffer.from(this.#key.token('api-key', keyHash))])).rows[0];
    const row = r ? await this.#row(this.pool, r.id, 'reading an account') : undefined;
    if (!row || row.fields.keyHash !== hex(keyHash)) throw rejected('ACCOUNT_UNKNOWN', 'API key does not belong to an account');
    return { id: row.fields.id, currency: row.fields.currency, kind: row.fields.kind, balance: row.balance, creditLimit: row.creditLimit };
  }

  async deposit(accountId: string, amount: bigint, now: number): Promise<Account> {
    checkPositive(amount, 'a deposit');
    const a = await this.account(accountId);
    const kind = a.kind === 'prepaid' ? 'deposit' : 'payment';
    const credit = this.#creditSigner ? await signCredit(this.#creditSigner, { kind, account: a.id, accountKind: a.kind, currency: a.currency, amount, creditLimit: a.creditLimit, at: now }) : undefined;
    await this.#tx('recording a deposit', async (c) => {
      await this.#entry(c, { account: a.id, kind, amount, at: now, ...(credit ? { credit: Buffer.from(credit).toString('base64') } : {}) });
      await c.query('UPDATE gm_accounts SET balance = balance + $1 WHERE id = $2', [amount, this.#accountToken(a.id)]);
    });
    return this.account(accountId);
  }

  async signedHead(now: number): Promise<{ seq: number; signed: Uint8Array }> {
    if (!this.#signer) throw configError('LEDGER_NO_SIGNER', 'this ledger was opened without a receipt key and cannot sign its head');
    const { seq, hash } = this.head;
    return { seq, signed: await signHead(this.#signer, { seq, hash, time: now }) };
  }

  #workerToken(workerId: string, currency: string): Buffer {
    return Buffer.from(this.#key.token('worker-credit', `${workerId}\0${currency}`));
  }

  async payWorker(workerId: string, currency: string, amount: bigint, now: number): Promise<void> {
    checkPositive(amount, 'a payment');
    const id = randomBytes(16);
    const body: SealedPayment = { workerId, currency, amount, at: now };
    await this.#tx('recording a worker payment', async (c) => {
      await c.query('INSERT INTO gm_worker_payments (id, body) VALUES ($1, $2)', [id, this.#key.sealJson('gm_worker_payments', hex(id), 'body', body)]);
      await c.query('INSERT INTO gm_worker_credit (token, owed) VALUES ($1, $2) ON CONFLICT (token) DO UPDATE SET owed = gm_worker_credit.owed + $2', [this.#workerToken(workerId, currency), -amount]);
    });
  }

  async workerOutstanding(workerId: string, currency: string): Promise<bigint> {
    const r = (await this.#q<{ owed: bigint }>('reading worker credit', 'SELECT owed FROM gm_worker_credit WHERE token = $1', [this.#workerToken(workerId, currency)])).rows[0];
    return r?.owed ?? 0n;
  }

  async available(accountId: string): Promise<bigint> {
    const r = await this.#row(this.pool, this.#accountToken(accountId), 'reading an account');
    if (!r) throw rejected('ACCOUNT_UNKNOWN', 'no such account');
    return r.balance + r.creditLimit - r.reserved;
  }

  async authorize(account: Account, target: HoldTarget, feeBasisPoints: number): Promise<Hold> {
    const offer = target.entry.verified.offer;
    const now = this.#now();
    const token = this.#accountToken(account.id);
    let fields = this.#accounts.get(account.id);
    if (!fields) {
      const r = await this.#row(this.pool, token, 'reading an account');
      if (!r) throw rejected('ACCOUNT_UNKNOWN', 'no such account');
      fields = r.fields;
    }
    const a: Account = { ...account, currency: fields.currency, kind: fields.kind };
    if (offer.currency !== a.currency) throw rejected('PAYMENT_CURRENCY_MISMATCH', `offer is priced in ${offer.currency}, the account pays in ${a.currency}`);
    const postpaid = offer.terms.kind === 'postpaid';
    const worker = postpaid ? this.#workerToken(offer.workerId, offer.currency) : null;
    const amount = target.maxCost;
    if (!worker) {
      // The common case in one statement (its own transaction): reserve if covered, and record the hold.
      const r = await this.#q<{ id: bigint }>('taking a hold', 'WITH r AS (UPDATE gm_accounts SET reserved = reserved + $1 WHERE id = $2 AND balance + credit_limit - reserved >= $1 RETURNING id) INSERT INTO gm_holds (account, amount, worker, owner, expires_at) SELECT id, $1, NULL, $3, $4 FROM r RETURNING id', [amount, token, this.chainId, now + this.#ttl], this.#holdPool);
      const fast = r.rows[0];
      if (fast) {
        this.#open.add(Number(fast.id));
        return { id: Number(fast.id), account: account.id, amount, target, feeBasisPoints };
      }
    }
    const id = await this.#tx('taking a hold', async (c) => {
      if (worker && offer.terms.kind === 'postpaid') {
        await c.query('INSERT INTO gm_worker_credit (token) VALUES ($1) ON CONFLICT (token) DO NOTHING', [worker]);
        const w = await c.query('UPDATE gm_worker_credit SET reserved = reserved + $1 WHERE token = $2 AND owed + reserved + $1 <= $3', [amount, worker, offer.terms.creditLimit]);
        if (w.rowCount !== 1) throw unavailable('WORKER_CREDIT_LIMIT', `worker ${offer.workerId} has extended its full postpaid credit`);
      }
      const reserve = (): Promise<pg.QueryResult> => c.query('UPDATE gm_accounts SET reserved = reserved + $1 WHERE id = $2 AND balance + credit_limit - reserved >= $1', [amount, token]);
      if ((await reserve()).rowCount !== 1) {
        // Holds a crashed replica left behind may be what stands in the way: reap this account's expired ones.
        if ((await this.#reap(c, now, token)) === 0 || (await reserve()).rowCount !== 1) {
          const r = await this.#row(c, token, 'reading an account');
          if (!r) throw rejected('ACCOUNT_UNKNOWN', 'no such account');
          throw notCovered(a, amount, r.balance + r.creditLimit - r.reserved);
        }
      }
      const h = await c.query<{ id: bigint }>('INSERT INTO gm_holds (account, amount, worker, owner, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING id', [token, amount, worker, this.chainId, now + this.#ttl]);
      return Number(h.rows[0]!.id);
    }, this.#holdPool);
    this.#open.add(id);
    return { id, account: account.id, amount, target, feeBasisPoints };
  }

  async release(hold: Hold): Promise<void> {
    if (!this.#open.delete(hold.id)) return;
    try {
      await this.#tx('releasing a hold', async (c) => {
        const d = await c.query<{ amount: bigint; worker: Buffer | null; account: Buffer }>('DELETE FROM gm_holds WHERE id = $1 RETURNING amount, worker, account', [hold.id]);
        for (const r of d.rows) await this.#unreserve(c, r);
      }, this.#holdPool);
    } catch (e) {
      // Still reserved in the database: keep it releasable (or let it expire).
      this.#open.add(hold.id);
      throw e;
    }
  }

  async #unreserve(c: pg.PoolClient, r: { amount: bigint; worker: Buffer | null; account: Buffer }): Promise<void> {
    await c.query('UPDATE gm_accounts SET reserved = reserved - $1 WHERE id = $2', [r.amount, r.account]);
    if (r.worker) await c.query('UPDATE gm_worker_credit SET reserved = reserved - $1 WHERE token = $2', [r.amount, r.worker]);
  }

  async reapExpired(now: number): Promise<number> {
    return this.#tx('reaping expired holds', (c) => this.#reap(c, now), this.#holdPool);
  }

  async #reap(c: pg.PoolClient, now: number, account?: Buffer): Promise<number> {
    const d = account
      ? await c.query<{ amount: bigint; worker: Buffer | null; account: Buffer }>('DELETE FROM gm_holds WHERE expires_at <= $1 AND account = $2 RETURNING amount, worker, account', [now, account])
      : await c.query<{ amount: bigint; worker: Buffer | null; account: Buffer }>('DELETE FROM gm_holds WHERE expires_at <= $1 RETURNING amount, worker, account', [now]);
    for (const r of d.rows) await this.#unreserve(c, r);
    return d.rows.length;
  }

  settle(hold: Hold, usage: Usage, served: HoldTarget = hold.target): Promise<SignedReceipt> {
    if (!this.#open.has(hold.id)) return Promise.reject(rejected('HOLD_UNKNOWN', 'hold was already settled or released'));
    if (served.maxCost > hold.amount) return Promise.reject(rejected('HOLD_TOO_SMALL', 'the served offer can cost more than the hold reserved'));
    if (!this.#group) return Promise.reject(configError('LEDGER_NO_SIGNER', 'this ledger was opened without a receipt key and cannot settle'));
    const v = served.entry.verified;
    const charge = computeCharge(v.offer, hold.feeBasisPoints, usage.inputTokens, usage.outputTokens);
    if (charge.total > hold.amount) return Promise.reject(rejected('SETTLE_OVER_HOLD', `the charge ${charge.total} exceeds the ${hold.amount} held for the request`));
    this.#open.delete(hold.id);
    return this.#group.submit(hold, receiptDraft(hold, usage, served, charge), v, v.offer.terms.kind === 'postpaid').catch((e: unknown) => {
      this.#open.add(hold.id);
      throw e;
    });
  }

  async #append(from: ChainHead, items: readonly AppendItem[]): Promise<void> {
    const chain = this.chainId;
    const last = items[items.length - 1]!.signed;
    const offers = new Map<string, AppendItem['offer']>();
    for (const it of items) if (!this.#storedOffers.has(hex(it.offer.digest))) offers.set(hex(it.offer.digest), it.offer);
    const offerIds = [...offers.values()].map((o) => Buffer.from(this.#key.token('offer', o.digest)));
    const first = items[0]!.signed.receipt;
    const entryIds = items.map(() => randomBytes(16));
    // Balances and worker credit move once per account and worker in the group.
    const perAccount = new Map<string, { total: bigint; held: bigint }>();
    const perWorker = new Map<string, { token: Buffer; cost: bigint; held: bigint }>();
    const worker = (t: Buffer) => perWorker.get(hex(t)) ?? perWorker.set(hex(t), { token: t, cost: 0n, held: 0n }).get(hex(t))!;
    for (const it of items) {
      const r = it.signed.receipt;
      const p = perAccount.get(it.hold.account) ?? { total: 0n, held: 0n };
      perAccount.set(it.hold.account, { total: p.total + r.total, held: p.held + it.hold.amount });
      // The hold reserved the held offer's worker credit (postpaid); the served offer's worker is owed its cost.
      const heldOffer = it.hold.target.entry.verified.offer;
      if (heldOffer.terms.kind === 'postpaid') worker(this.#workerToken(heldOffer.workerId, heldOffer.currency)).held += it.hold.amount;
      if (it.postpaid) worker(this.#workerToken(r.workerId, r.currency)).cost += r.workerCost;
    }
    try {
      await this.pool.query('SELECT gm_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)', [
        chain,
        from.seq,
        last.receipt.seq,
        this.#key.seal('gm_chains', chain, 'head', last.hash),
        items.map((it) => it.hold.id),
        items.map((it) => it.signed.receipt.seq),
        items.map((it) => Buffer.from(this.#key.seal('gm_receipts', `${chain}/${it.signed.receipt.seq}`, 'body', it.signed.signed))),
        entryIds,
        items.map((it, i) => Buffer.from(this.#key.sealJson('gm_entries', hex(entryIds[i]!), 'body', { account: it.hold.account, kind: 'debit', amount: -it.signed.receipt.total, at: it.signed.receipt.time } satisfies SealedEntry))),
        [...perAccount.keys()].map((id) => this.#accountToken(id)),
        [...perAccount.values()].map((p) => p.total),
        [...perAccount.values()].map((p) => p.held),
        [...perWorker.values()].map((w) => w.token),
        [...perWorker.values()].map((w) => w.cost),
        [...perWorker.values()].map((w) => w.held),
        offerIds,
        [...offers.values()].map((o, i) => Buffer.from(this.#key.seal('gm_offers', hex(offerIds[i]!), 'signed', o.signed))),
        this.#storedKeys.has(hex(first.receiptKey)) ? null : Buffer.from(first.receiptKey),
        first.seq,
      ]);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'GM001') throw unavailable('LEDGER_CHAIN_CONFLICT', `another writer appended to chain ${chain}`, { cause: e });
      if (code === 'GM002') throw new HoldsGone(String((e as Error).message).split(',').map(Number));
      throw pgFailure(e, 'appending receipts');
    }
    for (const it of items) {
      this.#storedOffers.add(hex(it.offer.digest));
      this.#storedKeys.add(hex(it.signed.receipt.receiptKey));
    }
    this.#head = { seq: last.receipt.seq, hash: last.hash };
  }

  async receiptKeys(): Promise<Uint8Array[]> {
    return (await this.#q<{ public_key: Buffer }>('reading receipt keys', 'SELECT public_key FROM gm_receipt_keys ORDER BY chain, first_seq', [])).rows.map((r) => new Uint8Array(r.public_key));
  }
}

/** A replica's own chain unless told otherwise: named after its receipt key, so no two replicas (or boots) share one. */
function defaultChain(opts: LedgerOptions): string {
  return opts.signer ? `r-${hex(opts.signer.publicKey.subarray(0, 8))}` : DEFAULT_CHAIN;
}

async function loadHead(q: Q, key: LedgerKey, chainId: string): Promise<ChainHead> {
  const r = (await q.query<{ seq: bigint; head: Buffer }>('SELECT seq, head FROM gm_chains WHERE id = $1', [chainId]).catch((e: unknown) => {
    throw pgFailure(e, 'reading the chain head');
  })).rows[0];
  if (!r) return { seq: 0, hash: ZERO_HASH };
  return { seq: Number(r.seq), hash: key.open('gm_chains', chainId, 'head', r.head) };
}

/** Parses a ledger key given as 64 hex digits (a key file's content). */
export function parseLedgerKey(text: string): Uint8Array {
  const t = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(t)) throw configError('LEDGER_KEY_INVALID', 'a ledger key is 64 hex digits (32 bytes)');
  return fromHex(t);
}
