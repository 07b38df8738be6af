/**
 * `gm receipts verify --ledger postgres://... --ledger-key-file FILE`: the audit of a PostgreSQL ledger
 * (docs/market.md "Auditing a ledger"; docs/operator.md "A shared ledger on PostgreSQL"). The auditor holds the ledger
 * key, opens every sealed column (each authenticated to its table, row and column), and then checks what the SQLite
 * audit checks: every receipt's signature and offer, every chain whole from seq 1 and ending at its stored head, one
 * debit per receipt of its total to its account, every credit against its signed record, every balance equal to its
 * entries and every reservation equal to its holds, and the chain against a signed head kept outside the database.
 */
import pg from 'pg';
import { equalBytes, hex } from '../../attestation/bytes.ts';
import { configError, rejected } from '../../attestation/errors.ts';
import { Checks, type VerificationReport } from '../../attestation/report.ts';
import { decodeDeterministic } from '../../protocol/market-cbor.ts';
import { decodeReceipt, type SignedReceipt } from '../../protocol/receipt.ts';
import { LedgerKey } from './columns.ts';
import type { Account } from './ledger.ts';
import { pgFailure, type SealedEntry, type SealedPayment } from './postgres.ts';
import { receiptOf, type StatementSource } from './statements.ts';
import { type AccountRowForAudit, checkCredits, checkPinsAndHead, type CreditEntryRow, type LedgerVerifyOptions, verifyReceiptItems } from './verify.ts';

interface Loaded {
  receipts: { chain: string; seq: number; signed: Uint8Array; offer?: Uint8Array }[];
  chains: Map<string, { seq: number; hash: Uint8Array }>;
  accounts: Map<string, AccountRowForAudit & { balance: bigint; reserved: bigint }>;
  entries: (SealedEntry & { id: string; chain: string | null; seq: number | null })[];
  holds: Map<string, bigint>;
  payments: SealedPayment[];
}

async function load(url: string, key: LedgerKey): Promise<Loaded> {
  const c = new pg.Client({ connectionString: url, types: { getTypeParser: ((oid: number, format?: string) => (oid === 20 ? (v: string) => BigInt(v) : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser } });
  try {
    await c.connect();
  } catch (e) {
    throw pgFailure(e, `connecting to ${new URL(url).host || 'the ledger'}`);
  }
  try {
    // One snapshot for every table: the replicas may be writing while the auditor reads.
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const check = (await c.query<{ value: Buffer }>("SELECT value FROM gm_meta WHERE key = 'key_check'")).rows[0];
    if (!check) throw configError('LEDGER_UNAVAILABLE', 'not a gm ledger: no key check');
    if (!key.matches(new Uint8Array(check.value))) throw configError('LEDGER_KEY_MISMATCH', 'the ledger key does not match the one this database is sealed under');
    const offers = new Map<string, Uint8Array>();
    for (const r of (await c.query<{ id: Buffer; signed: Buffer }>('SELECT id, signed FROM gm_offers')).rows) offers.set(hex(r.id), key.open('gm_offers', hex(r.id), 'signed', r.signed));
    const receipts = (await c.query<{ chain: string; seq: bigint; body: Buffer }>('SELECT chain, seq, body FROM gm_receipts ORDER BY chain, seq')).rows.map((r) => {
      const signed = key.open('gm_receipts', `${r.chain}/${r.seq}`, 'body', r.body);
      return { chain: r.chain, seq: Number(r.seq), signed };
    });
    const chains = new Map((await c.query<{ id: string; seq: bigint; head: Buffer }>('SELECT id, seq, head FROM gm_chains')).rows.map((r) => [r.id, { seq: Number(r.seq), hash: key.open('gm_chains', r.id, 'head', r.head) }]));
    const accounts = new Map<string, AccountRowForAudit & { balance: bigint; reserved: bigint }>();
    const byToken = new Map<string, string>();
    for (const r of (await c.query<{ id: Buffer; sealed: Buffer; balance: bigint; credit_limit: bigint; reserved: bigint }>('SELECT id, sealed, balance, credit_limit, reserved FROM gm_accounts')).rows) {
      const f = key.openJson<{ id: string; currency: string; kind: string; keyHash: string }>('gm_accounts', hex(r.id), 'sealed', r.sealed);
      if (!equalBytes(key.token('account', f.id), r.id)) throw rejected('LEDGER_ROW_MISMATCH', `account ${f.id} sits in another account's row`);
      accounts.set(f.id, { id: f.id, key_hash: Uint8Array.from(Buffer.from(f.keyHash, 'hex')), kind: f.kind, currency: f.currency, credit_limit: r.credit_limit, balance: r.balance, reserved: r.reserved });
      byToken.set(hex(r.id), f.id);
    }
    const entries = (await c.query<{ id: Buffer; receipt_chain: string | null; receipt_seq: bigint | null; body: Buffer }>('SELECT id, receipt_chain, receipt_seq, body FROM gm_entries ORDER BY id')).rows.map((r) => ({
      ...key.openJson<SealedEntry>('gm_entries', hex(r.id), 'body', r.body),
      id: hex(r.id),
      chain: r.receipt_chain,
      seq: r.receipt_seq === null ? null : Number(r.receipt_seq),
    }));
    const holds = new Map<string, bigint>();
    for (const r of (await c.query<{ account: Buffer; s: bigint }>('SELECT account, SUM(amount)::bigint AS s FROM gm_holds GROUP BY account')).rows) holds.set(byToken.get(hex(r.account)) ?? `unknown ${hex(r.account)}`, r.s);
    const payments = (await c.query<{ id: Buffer; body: Buffer }>('SELECT id, body FROM gm_worker_payments ORDER BY id')).rows.map((r) => key.openJson<SealedPayment>('gm_worker_payments', hex(r.id), 'body', r.body));
    await c.query('COMMIT');
    return { receipts: receipts.map((r) => ({ ...r, ...offerFor(r.signed, offers, key) })), chains, accounts, entries, holds, payments };
  } catch (e) {
    throw pgFailure(e, 'reading the ledger');
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The signed offer a receipt cites, found by the keyed token of its digest (read from the receipt's own bytes). */
function offerFor(signed: Uint8Array, offers: Map<string, Uint8Array>, key: LedgerKey): { offer?: Uint8Array } {
  // The digest is checked against the offer by verifyReceiptItems; here it only finds the row.
  const digest = receiptOfferDigest(signed);
  const o = digest ? offers.get(hex(key.token('offer', digest))) : undefined;
  return o ? { offer: o } : {};
}

function receiptOfferDigest(signed: Uint8Array): Uint8Array | undefined {
  try {
    const env = decodeDeterministic(signed) as { receipt?: unknown };
    return env.receipt instanceof Uint8Array ? decodeReceipt(env.receipt).offerDigest : undefined;
  } catch {
    return undefined; // the signature check reports the malformed receipt
  }
}

export async function verifyPostgresLedger(url: string, ledgerKey: Uint8Array, keys?: readonly Uint8Array[], opts: LedgerVerifyOptions = {}): Promise<VerificationReport> {
  const safe = new URL(url);
  safe.password = '';
  const checks = new Checks(`ledger ${safe.protocol}//${safe.host}${safe.pathname}`);
  const key = new LedgerKey(ledgerKey);
  const l = await checks.run('ledger.open', 'the database is a gm ledger sealed under this ledger key, and every sealed column authenticates to its table, row and column', undefined, () => load(url, key), (x) => `${x.receipts.length} receipt(s) in ${x.chains.size} chain(s), ${x.accounts.size} account(s)`);
  let receipts: SignedReceipt[] = [];
  if (l.receipts.length === 0) checks.skip('receipts.decode+signature', 'receipts', 'the ledger holds no receipts');
  else receipts = (await verifyReceiptItems(l.receipts, { ...(keys ? { keys } : {}), wholeChain: true, subject: '', chains: l.receipts.map((r) => r.chain) }, checks)).receipts;

  checks.runSync('ledger.rows', "every receipt row's chain position and every chain's stored head equal the signed receipts; one debit entry per receipt, of its total, to its account", undefined, () => {
    const last = new Map<string, SignedReceipt>();
    for (let i = 0; i < l.receipts.length; i++) {
      const row = l.receipts[i]!;
      const r = receipts[i]!;
      if (r.receipt.seq !== row.seq) throw rejected('RECEIPT_ROW_MISMATCH', `chain ${row.chain} row ${row.seq} holds receipt ${r.receipt.seq}`);
      last.set(row.chain, r);
    }
    for (const [id, head] of l.chains) {
      const r = last.get(id);
      if (head.seq !== (r?.receipt.seq ?? 0) || (r && !equalBytes(r.hash, head.hash))) throw rejected('RECEIPT_ROW_MISMATCH', `chain ${id}: its stored head (${head.seq}) is not its last receipt`);
    }
    const debits = new Map<string, (typeof l.entries)[number]>();
    for (const e of l.entries) if (e.kind === 'debit') debits.set(`${e.chain}/${e.seq}`, e);
    if (debits.size !== l.entries.filter((e) => e.kind === 'debit').length) throw rejected('LEDGER_AUDIT', 'a debit entry names no receipt or the receipt of another');
    for (let i = 0; i < l.receipts.length; i++) {
      const r = receipts[i]!.receipt;
      const d = debits.get(`${l.receipts[i]!.chain}/${r.seq}`);
      if (!d || d.amount !== -r.total || d.account !== r.account) throw rejected('LEDGER_AUDIT', `receipt ${l.receipts[i]!.chain}/${r.seq} has no matching debit`);
      debits.delete(`${l.receipts[i]!.chain}/${r.seq}`);
    }
    if (debits.size > 0) throw rejected('LEDGER_AUDIT', `${debits.size} debit(s) without a receipt`);
    return l.receipts.length;
  }, (n) => `${n} row(s)`);

  const pins = [...(keys ?? []), ...(opts.creditKeys ?? [])];
  const credits: CreditEntryRow[] = l.entries.filter((e) => e.kind !== 'debit').map((e) => ({ id: e.id, account: e.account, kind: e.kind, amount: e.amount, at: BigInt(e.at), signed: e.credit ? Uint8Array.from(Buffer.from(e.credit, 'base64')) : null }));
  await checks.run('ledger.credits', "every opening, deposit and payment carries a signed credit record that matches it, each used once; each account's id and key hash match its signed opening", pins.length ? pins.map((k) => hex(k)).join(', ') : undefined, () => checkCredits(credits, l.accounts, pins), (n) => `${n} credit(s)`);
  await checkPinsAndHead(checks, pins, keys, receipts, opts.head);
  checks.runSync('ledger.audit', 'balances equal their entries; debits equal receipt totals per account; reservations equal open holds', undefined, () => {
    const problems: string[] = [];
    for (const a of l.accounts.values()) {
      const mine = l.entries.filter((e) => e.account === a.id);
      const sum = mine.reduce((s, e) => s + e.amount, 0n);
      if (sum !== a.balance) problems.push(`account ${a.id}: balance ${a.balance} but entries sum to ${sum}`);
      const debits = -mine.filter((e) => e.kind === 'debit').reduce((s, e) => s + e.amount, 0n);
      const totals = receipts.filter((r) => r.receipt.account === a.id).reduce((s, r) => s + r.receipt.total, 0n);
      if (debits !== totals) problems.push(`account ${a.id}: debits ${debits} but receipts total ${totals}`);
      const held = l.holds.get(a.id) ?? 0n;
      if (held !== a.reserved) problems.push(`account ${a.id}: ${a.reserved} reserved but holds sum to ${held}`);
    }
    for (const id of l.holds.keys()) if (!l.accounts.has(id)) problems.push(`holds on an account the ledger does not hold (${id})`);
    if (problems.length) throw rejected('LEDGER_AUDIT', problems.join('; '));
    return l.accounts.size;
  }, (n) => `${n} account(s), ${receipts.length} receipt(s) agree`);
  return checks.report();
}

/**
 * A PostgreSQL ledger as a statement source (`gm receipts statement --ledger postgres://...`): one consistent snapshot,
 * opened with the ledger key, with receipts decoded from their signed envelopes.
 */
export async function postgresStatements(url: string, ledgerKey: Uint8Array): Promise<StatementSource> {
  const l = await load(url, new LedgerKey(ledgerKey));
  const receipts = l.receipts.map((r) => receiptOf(r.signed));
  const sums = (pairs: Iterable<[string, bigint]>): Map<string, bigint> => {
    const m = new Map<string, bigint>();
    for (const [k, v] of pairs) m.set(k, (m.get(k) ?? 0n) + v);
    return m;
  };
  return {
    account(id) {
      const a = l.accounts.get(id);
      if (!a) throw rejected('ACCOUNT_UNKNOWN', 'no such account');
      return { id: a.id, currency: a.currency, kind: a.kind as Account['kind'], balance: a.balance, creditLimit: a.credit_limit };
    },
    entryTotals: (accountId) => sums(l.entries.filter((e) => e.account === accountId).map((e) => [e.kind, e.amount])),
    receipts: (of) => receipts.filter('account' in of ? (r) => r.account === of.account : (r) => r.workerId === of.workerId),
    paid: (workerId) => sums(l.payments.filter((p) => p.workerId === workerId).map((p) => [p.currency, p.amount])),
  };
}
