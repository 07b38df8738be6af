/**
 * Statements and the ledger audit: statements per account and per worker, what each worker is owed under its
 * terms, exported as CSV and JSON (docs/market.md "Payments and the ledger").
 *
 * Worker terms, read from each receipt (which copies its signed offer's terms):
 *   per-request  due as soon as the receipt exists;
 *   postpaid     due at the end of the settlement period the receipt falls in (periods are aligned to the unix
 *                epoch: [k·P, (k+1)·P) seconds), accruing until then;
 *   prepaid      consumed against what the operator paid the worker in advance: due immediately, already covered.
 * balance = due now − paid: positive, the operator owes the worker; negative, the worker holds an advance.
 * All amounts bigint micro-units; JSON renders them as decimal strings, CSV as integers.
 */
import type { DatabaseSync } from 'node:sqlite';
import { rejected } from '../../attestation/errors.ts';
import { decodeDeterministic } from '../../protocol/market-cbor.ts';
import { decodeReceipt } from '../../protocol/receipt.ts';
import type { Account } from './ledger.ts';
import type { SqliteLedger } from './sqlite.ts';

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

function big(db: DatabaseSync, sql: string) {
  const st = db.prepare(sql);
  st.setReadBigInts(true);
  return st;
}
const num = (v: unknown): number => Number(v as bigint);

export function accountStatement(ledger: SqliteLedger, accountId: string): AccountStatement {
  const db = ledger.db;
  const account = accountRow(db, accountId);
  const sums = big(db, "SELECT kind, SUM(amount) AS s FROM entries WHERE account = ? GROUP BY kind").all(accountId) as { kind: string; s: bigint }[];
  const sum = (k: string): bigint => sums.find((r) => r.kind === k)?.s ?? 0n;
  const rows = big(db, 'SELECT seq, time, signed, worker_id, terms, input_tokens, output_tokens, currency, worker_cost, fee, total FROM receipts WHERE account = ? ORDER BY chain, seq').all(accountId) as Record<string, unknown>[];
  const lines: AccountLine[] = rows.map((r) => {
    const meta = receiptMeta(r.signed as Uint8Array);
    return {
      seq: num(r.seq),
      time: num(r.time),
      requestId: meta.requestId,
      model: meta.model,
      workerId: r.worker_id as string,
      terms: r.terms as string,
      inputTokens: num(r.input_tokens),
      outputTokens: num(r.output_tokens),
      currency: r.currency as string,
      workerCost: r.worker_cost as bigint,
      fee: r.fee as bigint,
      total: r.total as bigint,
    };
  });
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

function accountRow(db: DatabaseSync, id: string): Account {
  const r = big(db, 'SELECT id, currency, kind, balance, credit_limit FROM accounts WHERE id = ?').get(id) as { id: string; currency: string; kind: Account['kind']; balance: bigint; credit_limit: bigint } | undefined;
  if (!r) throw rejected('ACCOUNT_UNKNOWN', 'no such account');
  return { id: r.id, currency: r.currency, kind: r.kind, balance: r.balance, creditLimit: r.credit_limit };
}

function receiptMeta(signed: Uint8Array): { requestId: string; model: string } {
  const env = decodeDeterministic(new Uint8Array(signed)) as { receipt: Uint8Array };
  const r = decodeReceipt(env.receipt);
  return { requestId: r.requestId, model: r.model };
}

export function workerStatement(ledger: SqliteLedger, workerId: string, now: number): WorkerStatement {
  const db = ledger.db;
  const rows = big(db, 'SELECT currency, terms, settlement_period, time, input_tokens, output_tokens, worker_cost FROM receipts WHERE worker_id = ? ORDER BY chain, seq').all(workerId) as Record<string, unknown>[];
  const byKey = new Map<string, { currency: string; terms: string; requests: number; inputTokens: number; outputTokens: number; earned: bigint; dueNow: bigint; accruing: bigint }>();
  for (const r of rows) {
    const key = `${r.currency as string}\n${r.terms as string}`;
    let acc = byKey.get(key);
    if (!acc) byKey.set(key, (acc = { currency: r.currency as string, terms: r.terms as string, requests: 0, inputTokens: 0, outputTokens: 0, earned: 0n, dueNow: 0n, accruing: 0n }));
    const cost = r.worker_cost as bigint;
    acc.requests++;
    acc.inputTokens += num(r.input_tokens);
    acc.outputTokens += num(r.output_tokens);
    acc.earned += cost;
    if (r.terms === 'postpaid') {
      const periodMs = num(r.settlement_period) * 1000;
      const dueAt = (Math.floor(num(r.time) / periodMs) + 1) * periodMs;
      if (dueAt <= now) acc.dueNow += cost;
      else acc.accruing += cost;
    } else acc.dueNow += cost;
  }
  const paidRows = big(db, 'SELECT currency, SUM(amount) AS s FROM worker_payments WHERE worker_id = ? GROUP BY currency').all(workerId) as { currency: string; s: bigint }[];
  const currencies = new Set([...[...byKey.values()].map((r) => r.currency), ...paidRows.map((r) => r.currency)]);
  const totals = [...currencies].sort().map((currency) => {
    const mine = [...byKey.values()].filter((r) => r.currency === currency);
    const dueNow = mine.reduce((a, r) => a + r.dueNow, 0n);
    const accruing = mine.reduce((a, r) => a + r.accruing, 0n);
    const paid = paidRows.find((p) => p.currency === currency)?.s ?? 0n;
    return { currency, dueNow, accruing, paid, balance: dueNow - paid };
  });
  return { workerId, rows: [...byKey.values()].sort((a, b) => (a.currency + a.terms < b.currency + b.terms ? -1 : 1)), totals };
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
