/**
 * Statements per account and per worker, what each worker is owed under its terms, exported as CSV and JSON
 * (docs/market.md "Payments and the ledger"), and the SQLite ledger's internal audit.
 *
 * A statement is computed from the signed receipts themselves (each copies its offer's terms), so a SQLite file and a
 * PostgreSQL ledger, whose receipts are sealed under the ledger key, give the same statement through one
 * `StatementSource`: `sqliteStatements` reads a ledger file, `postgresStatements` (verify-postgres.ts) a database.
 *
 * Worker terms, read from each receipt:
 *   per-request  due as soon as the receipt exists;
 *   postpaid     due at the end of the settlement period the receipt falls in (periods are aligned to the unix
 *                epoch: [k·P, (k+1)·P) seconds), accruing until then;
 *   prepaid      consumed against what the operator paid the worker in advance: due immediately, already covered.
 * balance = due now − paid: positive, the operator owes the worker; negative, the worker holds an advance.
 * All amounts bigint micro-units (rao for TAO); JSON renders them as decimal strings, CSV as integers.
 */
import type { DatabaseSync } from 'node:sqlite';
import { rejected } from '../../attestation/errors.ts';
import { decodeDeterministic } from '../../protocol/market-cbor.ts';
import { decodeReceipt, type Receipt } from '../../protocol/receipt.ts';
import { type Account, periodOf, termsText } from './ledger.ts';
import type { SqliteLedger } from './sqlite.ts';

/** What a statement reads; receipts come in chain order (chain, then seq). */
export interface StatementSource {
  /** ACCOUNT_UNKNOWN when the ledger holds no such account. */
  account(id: string): Account;
  /** Σ entry amounts of one account by kind (open, deposit, payment, debit). */
  entryTotals(accountId: string): ReadonlyMap<string, bigint>;
  receipts(of: { readonly account: string } | { readonly workerId: string }): readonly Receipt[];
  /** Σ payouts recorded for one worker, by currency. */
  paid(workerId: string): ReadonlyMap<string, bigint>;
}

export interface AccountLine {
  readonly seq: number;
  readonly time: number;
  readonly requestId: string;
  readonly model: string;
  readonly workerId: string;
  readonly terms: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly currency: string;
  readonly workerCost: bigint;
  readonly fee: bigint;
  readonly total: bigint;
}

export interface AccountStatement {
  readonly account: Account;
  readonly opening: bigint;
  readonly deposits: bigint;
  readonly spent: bigint;
  readonly fees: bigint;
  readonly requests: number;
  readonly lines: readonly AccountLine[];
}

export interface WorkerTermsRow {
  readonly currency: string;
  readonly terms: string;
  readonly requests: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly earned: bigint;
  readonly dueNow: bigint;
  readonly accruing: bigint;
}

export interface WorkerStatement {
  readonly workerId: string;
  readonly rows: readonly WorkerTermsRow[];
  /** Per currency: paid out so far and balance = due now − paid. */
  readonly totals: readonly { currency: string; dueNow: bigint; accruing: bigint; paid: bigint; balance: bigint }[];
}

export function accountStatement(source: StatementSource, accountId: string): AccountStatement {
  const account = source.account(accountId);
  const sums = source.entryTotals(accountId);
  const sum = (k: string): bigint => sums.get(k) ?? 0n;
  const lines: AccountLine[] = source.receipts({ account: accountId }).map((r) => ({
    seq: r.seq,
    time: r.time,
    requestId: r.requestId,
    model: r.model,
    workerId: r.workerId,
    terms: termsText(r.terms),
    inputTokens: r.inputTokens,
    outputTokens: r.outputTokens,
    currency: r.currency,
    workerCost: r.workerCost,
    fee: r.fee,
    total: r.total,
  }));
  return {
    account,
    opening: sum('open'),
    deposits: sum('deposit') + sum('payment'),
    spent: -sum('debit'),
    fees: lines.reduce((a, l) => a + l.fee, 0n),
    requests: lines.length,
    lines,
  };
}

export function workerStatement(source: StatementSource, workerId: string, now: number): WorkerStatement {
  const byKey = new Map<string, { currency: string; terms: string; requests: number; inputTokens: number; outputTokens: number; earned: bigint; dueNow: bigint; accruing: bigint }>();
  for (const r of source.receipts({ workerId })) {
    const terms = termsText(r.terms);
    const key = `${r.currency}\n${terms}`;
    let acc = byKey.get(key);
    if (!acc) byKey.set(key, (acc = { currency: r.currency, terms, requests: 0, inputTokens: 0, outputTokens: 0, earned: 0n, dueNow: 0n, accruing: 0n }));
    acc.requests++;
    acc.inputTokens += r.inputTokens;
    acc.outputTokens += r.outputTokens;
    acc.earned += r.workerCost;
    if (r.terms.kind === 'postpaid') {
      const periodMs = periodOf(r.terms) * 1000;
      const dueAt = (Math.floor(r.time / periodMs) + 1) * periodMs;
      if (dueAt <= now) acc.dueNow += r.workerCost;
      else acc.accruing += r.workerCost;
    } else acc.dueNow += r.workerCost;
  }
  const paid = source.paid(workerId);
  const currencies = new Set([...[...byKey.values()].map((r) => r.currency), ...paid.keys()]);
  const totals = [...currencies].sort().map((currency) => {
    const mine = [...byKey.values()].filter((r) => r.currency === currency);
    const dueNow = mine.reduce((a, r) => a + r.dueNow, 0n);
    const accruing = mine.reduce((a, r) => a + r.accruing, 0n);
    const out = paid.get(currency) ?? 0n;
    return { currency, dueNow, accruing, paid: out, balance: dueNow - out };
  });
  return { workerId, rows: [...byKey.values()].sort((a, b) => (a.currency + a.terms < b.currency + b.terms ? -1 : 1)), totals };
}

/** The receipt inside a stored signed envelope (statements read it; the audits check its signature). */
export function receiptOf(signed: Uint8Array): Receipt {
  const env = decodeDeterministic(new Uint8Array(signed)) as { receipt?: unknown };
  if (!(env.receipt instanceof Uint8Array)) throw rejected('LEDGER_AUDIT', 'a stored receipt is not a signed receipt envelope');
  return decodeReceipt(env.receipt);
}

function big(db: DatabaseSync, sql: string) {
  const st = db.prepare(sql);
  st.setReadBigInts(true);
  return st;
}

/** A ledger file as a statement source, read on demand. */
export function sqliteStatements(ledger: SqliteLedger): StatementSource {
  const db = ledger.db;
  return {
    account(id) {
      const r = big(db, 'SELECT id, currency, kind, balance, credit_limit FROM accounts WHERE id = ?').get(id) as { id: string; currency: string; kind: Account['kind']; balance: bigint; credit_limit: bigint } | undefined;
      if (!r) throw rejected('ACCOUNT_UNKNOWN', 'no such account');
      return { id: r.id, currency: r.currency, kind: r.kind, balance: r.balance, creditLimit: r.credit_limit };
    },
    entryTotals(accountId) {
      const rows = big(db, 'SELECT kind, SUM(amount) AS s FROM entries WHERE account = ? GROUP BY kind').all(accountId) as { kind: string; s: bigint }[];
      return new Map(rows.map((r) => [r.kind, r.s]));
    },
    receipts(of) {
      const rows = ('account' in of
        ? db.prepare('SELECT signed FROM receipts WHERE account = ? ORDER BY chain, seq').all(of.account)
        : db.prepare('SELECT signed FROM receipts WHERE worker_id = ? ORDER BY chain, seq').all(of.workerId)) as { signed: Uint8Array }[];
      return rows.map((r) => receiptOf(r.signed));
    },
    paid(workerId) {
      const rows = big(db, 'SELECT currency, SUM(amount) AS s FROM worker_payments WHERE worker_id = ? GROUP BY currency').all(workerId) as { currency: string; s: bigint }[];
      return new Map(rows.map((r) => [r.currency, r.s]));
    },
  };
}

const csvCell = (v: unknown): string => {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};
const csv = (header: readonly string[], rows: readonly (readonly unknown[])[]): string => [header, ...rows].map((r) => r.map(csvCell).join(',')).join('\n') + '\n';

export function accountStatementCsv(s: AccountStatement): string {
  return csv(
    ['seq', 'time', 'request_id', 'model', 'worker_id', 'terms', 'input_tokens', 'output_tokens', 'currency', 'worker_cost', 'fee', 'total'],
    s.lines.map((l) => [l.seq, new Date(l.time).toISOString(), l.requestId, l.model, l.workerId, l.terms, l.inputTokens, l.outputTokens, l.currency, l.workerCost, l.fee, l.total]),
  );
}

export function workerStatementCsv(s: WorkerStatement): string {
  return csv(
    ['worker_id', 'currency', 'terms', 'requests', 'input_tokens', 'output_tokens', 'earned', 'due_now', 'accruing', 'paid', 'balance'],
    [
      ...s.rows.map((r) => [s.workerId, r.currency, r.terms, r.requests, r.inputTokens, r.outputTokens, r.earned, r.dueNow, r.accruing, '', '']),
      ...s.totals.map((t) => [s.workerId, t.currency, 'total', '', '', '', '', t.dueNow, t.accruing, t.paid, t.balance]),
    ],
  );
}

/** JSON with bigints as decimal strings and bytes as hex. */
export function statementJson(s: AccountStatement | WorkerStatement): string {
  return `${JSON.stringify(s, (_k, v) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v), 2)}\n`;
}

/**
 * The ledger's internal consistency, exactly: for every account, balance = Σ entries; Σ debit entries = −Σ receipt
 * totals; every receipt has exactly one debit of its total; each chain's receipt seqs are 1..N without gaps.
 */
export function auditLedger(ledger: { readonly db: DatabaseSync }): { ok: boolean; problems: string[]; receipts: number; accounts: number } {
  const db = ledger.db;
  const problems: string[] = [];
  const accounts = big(db, 'SELECT id, balance FROM accounts').all() as { id: string; balance: bigint }[];
  for (const a of accounts) {
    const s = (big(db, 'SELECT COALESCE(SUM(amount), 0) AS s FROM entries WHERE account = ?').get(a.id) as { s: bigint }).s;
    if (s !== a.balance) problems.push(`account ${a.id}: balance ${a.balance} but entries sum to ${s}`);
    const debits = (big(db, "SELECT COALESCE(SUM(amount), 0) AS s FROM entries WHERE account = ? AND kind = 'debit'").get(a.id) as { s: bigint }).s;
    const totals = (big(db, 'SELECT COALESCE(SUM(total), 0) AS s FROM receipts WHERE account = ?').get(a.id) as { s: bigint }).s;
    if (-debits !== totals) problems.push(`account ${a.id}: debits ${-debits} but receipts total ${totals}`);
  }
  const orphan = (big(db, "SELECT COUNT(*) AS n FROM receipts r LEFT JOIN entries e ON e.receipt_chain = r.chain AND e.receipt_seq = r.seq AND e.kind = 'debit' AND e.amount = -r.total AND e.account = r.account WHERE e.id IS NULL").get() as { n: bigint }).n;
  if (orphan !== 0n) problems.push(`${orphan} receipt(s) without their matching debit`);
  const stray = (big(db, "SELECT COUNT(*) AS n FROM entries e LEFT JOIN receipts r ON r.chain = e.receipt_chain AND r.seq = e.receipt_seq WHERE e.kind = 'debit' AND r.seq IS NULL").get() as { n: bigint }).n;
  if (stray !== 0n) problems.push(`${stray} debit(s) without a receipt`);
  let receipts = 0;
  for (const span of big(db, 'SELECT chain, COUNT(*) AS n, MIN(seq) AS lo, MAX(seq) AS hi FROM receipts GROUP BY chain ORDER BY chain').all() as { chain: string; n: bigint; lo: bigint; hi: bigint }[]) {
    if (span.lo !== 1n || span.hi !== span.n) problems.push(`chain ${span.chain}: receipt seqs run ${span.lo}..${span.hi} with ${span.n} rows: receipts are missing`);
    receipts += Number(span.n);
  }
  return { ok: problems.length === 0, problems, receipts, accounts: accounts.length };
}
