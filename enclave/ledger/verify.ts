/**
 * Offline verification of receipts: `gm receipts verify` checks a receipt file or the whole ledger (signatures,
 * chain, and the price against the signed offer), recorded as a per-check report (docs/design.md §3).
 *
 * Checks, in order, each failing with its own code:
 *   receipts.decode+signature  every receipt decodes strictly and its Ed25519 signature verifies (RECEIPT_MALFORMED,
 *                              RECEIPT_SIGNATURE) and its charge arithmetic holds (RECEIPT_COST_MISMATCH)
 *   receipts.key               every signer is a pinned receipt key (--key; RECEIPT_KEY_MISMATCH); skipped, and
 *                              said so, when no key was given
 *   receipts.chain             seq and prev links (RECEIPT_CHAIN_BROKEN). A ledger must be the whole chain from 1;
 *                              a file (e.g. one client's receipts) is checked across each run of consecutive seqs
 *   receipts.offer             each cited offer is present, its two signatures verify, and the receipt's model,
 *                              worker, currency, prices and terms equal it (RECEIPT_OFFER_MISSING,
 *                              OFFER_SIGNATURE_*, RECEIPT_OFFER_MISMATCH, RECEIPT_PRICE_MISMATCH)
 *   ledger.rows                (ledger only) every receipt row's columns equal its signed body (RECEIPT_ROW_MISMATCH)
 *   ledger.credits             (ledger only) every opening, deposit and payment has a signed credit record matching
 *                              it, each used once (CREDIT_UNSIGNED, CREDIT_MISMATCH, CREDIT_REPLAYED,
 *                              CREDIT_KEY_MISMATCH); each account's key hash is its signed opening's
 *                              (ACCOUNT_KEY_MISMATCH)
 *   ledger.head                (ledger only, with a signed head) the ledger still holds the receipts the head counts,
 *                              ending in its hash (LEDGER_ROLLBACK, LEDGER_HEAD_KEY_MISMATCH); a visible skip without
 *   ledger.audit               (ledger only) balances, debits and receipts agree exactly (LEDGER_AUDIT)
 */
import { DatabaseSync } from 'node:sqlite';
import { equalBytes, fromBase64, hex, isZero } from '../../attestation/bytes.ts';
import { configError, protocolError, rejected } from '../../attestation/errors.ts';
import { Checks, type VerificationReport } from '../../attestation/report.ts';
import { type VerifiedOffer, verifyOfferSignatures } from '../../protocol/offer.ts';
import { checkReceiptAgainstOffer, parseReceiptEnvelope, type SignedReceipt, verifyReceipt } from '../../protocol/receipt.ts';
import { type ChainHead, HEAD_TYPE, verifyCredit, verifyHead } from './records.ts';
import { auditLedger } from './statements.ts';

export interface ReceiptItem {
  readonly signed: Uint8Array;
  readonly offer?: Uint8Array;
}

/** Reads a receipts file: one JSON envelope, a JSON array of them, or JSON lines. */
export function parseReceiptFile(bytes: Uint8Array): ReceiptItem[] {
  const text = new TextDecoder().decode(bytes).trim();
  let values: unknown[];
  try {
    if (text.startsWith('[')) values = JSON.parse(text) as unknown[];
    else {
      try {
        values = [JSON.parse(text)];
      } catch {
        values = text.split(/\r?\n/).filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as unknown);
      }
    }
  } catch (e) {
    throw protocolError('RECEIPT_MALFORMED', 'receipts file is not JSON, a JSON array or JSON lines', { cause: e });
  }
  if (values.length === 0) throw protocolError('RECEIPT_MALFORMED', 'receipts file holds no receipts');
  return values.map((v) => parseReceiptEnvelope(v));
}

export async function verifyReceiptItems(items: readonly ReceiptItem[], opts: { keys?: readonly Uint8Array[]; wholeChain: boolean; subject: string; chains?: readonly string[] }, checks = new Checks(opts.subject)): Promise<{ receipts: SignedReceipt[]; checks: Checks }> {
  const verified = await checks.run('receipts.decode+signature', 'each receipt decodes strictly, its Ed25519 signature verifies and its charge arithmetic holds', 'receipt key named in the receipt', async () => {
    // WebCrypto verifies on Node's thread pool: a window of concurrent verifications keeps it busy.
    const out: SignedReceipt[] = [];
    for (let i = 0; i < items.length; i += 64) out.push(...(await Promise.all(items.slice(i, i + 64).map((it) => verifyReceipt(it.signed)))));
    return out;
  }, (v) => `${v.length} receipt(s)`);

  const keys = opts.keys;
  if (keys && keys.length > 0) {
    checks.runSync('receipts.key', 'each receipt is signed by a pinned enclave receipt key', keys.map((k) => hex(k)).join(', '), () => {
      for (const v of verified) if (!keys.some((k) => equalBytes(k, v.receipt.receiptKey))) throw rejected('RECEIPT_KEY_MISMATCH', `receipt ${v.receipt.seq} is signed by ${hex(v.receipt.receiptKey)}, not a pinned key`);
    }, () => `${verified.length} receipt(s) signed by pinned keys`);
  } else {
    const seen = [...new Set(verified.map((v) => hex(v.receipt.receiptKey)))];
    checks.skip('receipts.key', 'each receipt is signed by a pinned enclave receipt key', `no --key given: signers ${seen.join(', ')} are not checked against an attested key`);
  }

  // Receipts of one chain link to each other; a ledger holds one chain per writer (opts.chains names each item's).
  const chains = new Map<string, SignedReceipt[]>();
  verified.forEach((v, i) => {
    const c = opts.chains?.[i] ?? '';
    const list = chains.get(c) ?? [];
    list.push(v);
    chains.set(c, list);
  });
  checks.runSync('receipts.chain', opts.wholeChain ? 'receipts form whole chains from seq 1: consecutive seq, each prev = SHA-256 of the previous receipt' : 'consecutive receipts link: prev = SHA-256 of the previous receipt', undefined, () => {
    let links = 0;
    let gaps = 0;
    for (const [chain, list] of chains) {
      const order = [...list].sort((a, b) => a.receipt.seq - b.receipt.seq);
      const where = chain ? ` in chain ${chain}` : '';
      for (let i = 0; i < order.length; i++) {
        const r = order[i]!.receipt;
        if (r.seq === 1 && !isZero(r.prev)) throw rejected('RECEIPT_CHAIN_BROKEN', `receipt 1${where} must link to the zero hash`);
        if (i === 0) {
          if (opts.wholeChain && r.seq !== 1) throw rejected('RECEIPT_CHAIN_BROKEN', `the chain${where} starts at seq ${r.seq}, not 1`);
          continue;
        }
        const p = order[i - 1]!;
        if (r.seq === p.receipt.seq) throw rejected('RECEIPT_CHAIN_BROKEN', `two receipts${where} claim seq ${r.seq}`);
        if (r.seq !== p.receipt.seq + 1) {
          if (opts.wholeChain) throw rejected('RECEIPT_CHAIN_BROKEN', `receipt ${p.receipt.seq + 1}${where} is missing`);
          gaps++;
          continue;
        }
        if (!equalBytes(r.prev, p.hash)) throw rejected('RECEIPT_CHAIN_BROKEN', `receipt ${r.seq}${where} does not link to receipt ${p.receipt.seq}`);
        links++;
      }
    }
    return { links, gaps };
  }, ({ links, gaps }) => `${links} link(s) checked${chains.size > 1 ? ` in ${chains.size} chains` : ''}${gaps ? `; ${gaps} gap(s) between non-consecutive receipts cannot be checked from this file` : ''}`);

  await checks.run('receipts.offer', "each receipt's prices, terms, model and worker equal its signed offer (Ed25519 worker + sr25519 hotkey signatures)", 'offer signatures', async () => {
    const cache = new Map<string, VerifiedOffer>();
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const r = verified[i]!.receipt;
      if (!it.offer) throw rejected('RECEIPT_OFFER_MISSING', `receipt ${r.seq} comes without its signed offer`);
      const k = hex(it.offer);
      let v = cache.get(k);
      if (!v) cache.set(k, (v = await verifyOfferSignatures(it.offer, {})));
      checkReceiptAgainstOffer(r, v);
    }
    return cache.size;
  }, (n) => `${items.length} receipt(s) against ${n} signed offer(s)`);
  return { receipts: verified, checks };
}

export interface LedgerVerifyOptions {
  /** Operator keys allowed to sign credits (account openings, deposits), beside the pinned receipt keys. */
  readonly creditKeys?: readonly Uint8Array[];
  /** The latest signed chain head kept outside the ledger (its JSON, as the enclave logs and serves it). */
  readonly head?: Uint8Array;
}

/**
 * Verifies a whole ledger file: every receipt, the full chain, offers, every receipt row's columns against its
 * signed body, every credit against its signed record, the chain against a signed head, and the balance audit.
 */
export async function verifyLedger(path: string, keys?: readonly Uint8Array[], opts: LedgerVerifyOptions = {}): Promise<VerificationReport> {
  const checks = new Checks(`ledger ${path}`);
  const db = checks.runSync('ledger.open', 'the ledger opens read-only', undefined, () => {
    try {
      return new DatabaseSync(path, { readOnly: true });
    } catch (e) {
      throw configError('LEDGER_UNAVAILABLE', `cannot open ledger ${path}: ${(e as Error).message}`, { cause: e });
    }
  });
  try {
    const rows = checks.runSync('ledger.schema', 'the file is a gm ledger (receipts and offers tables)', undefined, () => {
      try {
        const st = db.prepare('SELECT r.*, o.signed AS offer FROM receipts r LEFT JOIN offers o ON o.digest = r.offer_digest ORDER BY r.chain, r.seq');
        st.setReadBigInts(true);
        return st.all() as unknown as ReceiptRow[];
      } catch (e) {
        throw configError('LEDGER_UNAVAILABLE', `not a gm ledger: ${(e as Error).message}`, { cause: e });
      }
    }, (r) => `${r.length} receipt row(s)`);
    let receipts: SignedReceipt[] = [];
    if (rows.length === 0) {
      checks.skip('receipts.decode+signature', 'receipts', 'the ledger holds no receipts');
    } else {
      receipts = (await verifyReceiptItems(rows.map((r) => ({ signed: new Uint8Array(r.signed), ...(r.offer ? { offer: new Uint8Array(r.offer) } : {}) })), { ...(keys ? { keys } : {}), wholeChain: true, subject: '', chains: rows.map((r) => r.chain) }, checks)).receipts;
    }
    checks.runSync('ledger.rows', "every receipt row's columns (seq, hash, prev, offer, account, worker, terms, currency, tokens, cost, fee, total, time) equal its signed receipt", undefined, () => {
      for (let i = 0; i < rows.length; i++) checkRow(rows[i]!, receipts[i]!);
      return rows.length;
    }, (n) => `${n} row(s)`);
    const pins = [...(keys ?? []), ...(opts.creditKeys ?? [])];
    await checks.run('ledger.credits', 'every opening, deposit and payment carries a signed credit record that matches it, each used once; each account\'s id and key hash match its signed opening', pins.length ? pins.map((k) => hex(k)).join(', ') : undefined, async () => auditCredits(db, pins), (n) => `${n} credit(s)`);
    await checkPinsAndHead(checks, pins, keys, receipts, opts.head);
    checks.runSync('ledger.audit', 'balances equal their entries; debits equal receipt totals; one debit per receipt; no missing seq', undefined, () => {
      const a = auditLedger({ db });
      if (!a.ok) throw rejected('LEDGER_AUDIT', a.problems.join('; '));
      return a;
    }, (a) => `${a.accounts} account(s), ${a.receipts} receipt(s) agree`);
  } finally {
    db.close();
  }
  return checks.report();
}

/** A signed head names one chain's length and last hash: some chain of the ledger must hold exactly that receipt. */
export function checkHead(h: ChainHead, receipts: readonly SignedReceipt[]): void {
  if (h.seq === 0) return;
  let longest = 0;
  for (const r of receipts) {
    if (r.receipt.seq > longest) longest = r.receipt.seq;
    if (r.receipt.seq === h.seq && equalBytes(r.hash, h.hash)) return;
  }
  if (h.seq > longest) throw rejected('LEDGER_ROLLBACK', `the signed head counts ${h.seq} receipts but the ledger's longest chain holds ${longest}: receipts were removed or the file rolled back`);
  throw rejected('LEDGER_ROLLBACK', `receipt ${h.seq} is not the one the signed head names: the chain was rewritten`);
}

interface ReceiptRow {
  chain: string;
  seq: bigint;
  hash: Uint8Array;
  prev: Uint8Array;
  signed: Uint8Array;
  offer_digest: Uint8Array;
  account: string;
  worker_id: string;
  terms: string;
  settlement_period: bigint;
  currency: string;
  input_tokens: bigint;
  output_tokens: bigint;
  worker_cost: bigint;
  fee: bigint;
  total: bigint;
  time: bigint;
  offer: Uint8Array | null;
}

/** The ledger's columns are a cache of the signed body: statements and balances read them, so each must agree. */
function checkRow(row: ReceiptRow, v: SignedReceipt): void {
  const r = v.receipt;
  const want: [string, unknown, unknown][] = [
    ['seq', row.seq, BigInt(r.seq)],
    ['account', row.account, r.account],
    ['worker_id', row.worker_id, r.workerId],
    ['terms', row.terms, r.terms.kind],
    ['settlement_period', row.settlement_period, BigInt(r.terms.kind === 'postpaid' ? r.terms.settlementPeriodSeconds : 0)],
    ['currency', row.currency, r.currency],
    ['input_tokens', row.input_tokens, BigInt(r.inputTokens)],
    ['output_tokens', row.output_tokens, BigInt(r.outputTokens)],
    ['worker_cost', row.worker_cost, r.workerCost],
    ['fee', row.fee, r.fee],
    ['total', row.total, r.total],
    ['time', row.time, BigInt(r.time)],
  ];
  for (const [col, got, exp] of want) if (got !== exp) throw rejected('RECEIPT_ROW_MISMATCH', `receipt ${r.seq}: column ${col} holds ${String(got)} but the signed receipt says ${String(exp)}`);
  for (const [col, got, exp] of [['hash', row.hash, v.hash], ['prev', row.prev, r.prev], ['offer_digest', row.offer_digest, r.offerDigest]] as const) {
    if (!equalBytes(new Uint8Array(got), exp)) throw rejected('RECEIPT_ROW_MISMATCH', `receipt ${r.seq}: column ${col} differs from the signed receipt`);
  }
}

/** Every non-debit entry against its signed credit record, and every account against its signed opening. */
async function auditCredits(db: DatabaseSync, pins: readonly Uint8Array[]): Promise<number> {
  const st = db.prepare("SELECT e.id AS id, e.account AS account, e.kind AS kind, e.amount AS amount, e.at AS at, c.signed AS signed FROM entries e LEFT JOIN credits c ON c.entry_id = e.id WHERE e.kind != 'debit' ORDER BY e.id");
  st.setReadBigInts(true);
  const entries = (st.all() as unknown as { id: bigint; account: string; kind: string; amount: bigint; at: bigint; signed: Uint8Array | null }[]).map((e) => ({ ...e, id: String(e.id), signed: e.signed ? new Uint8Array(e.signed) : null }));
  const acc = db.prepare('SELECT id, key_hash, kind, currency, credit_limit FROM accounts');
  acc.setReadBigInts(true);
  const accounts = new Map((acc.all() as unknown as { id: string; key_hash: Uint8Array; kind: string; currency: string; credit_limit: bigint }[]).map((a) => [a.id, { ...a, key_hash: new Uint8Array(a.key_hash) }]));
  return checkCredits(entries, accounts, pins);
}

export interface CreditEntryRow {
  readonly id: string;
  readonly account: string;
  readonly kind: string;
  readonly amount: bigint;
  readonly at: bigint;
  readonly signed: Uint8Array | null;
}

export interface AccountRowForAudit {
  readonly id: string;
  readonly key_hash: Uint8Array;
  readonly kind: string;
  readonly currency: string;
  readonly credit_limit: bigint;
}

/** The credit audit over rows however they were read (a SQLite file, or PostgreSQL rows opened with the ledger key). */
export async function checkCredits(entries: readonly CreditEntryRow[], accounts: ReadonlyMap<string, AccountRowForAudit>, pins: readonly Uint8Array[]): Promise<number> {
  const nonces = new Set<string>();
  const opened = new Set<string>();
  for (const e of entries) {
    if (!e.signed) throw rejected('CREDIT_UNSIGNED', `entry ${e.id} (${e.kind} of ${e.amount} to ${e.account}) has no signed credit record`);
    const c = await verifyCredit(e.signed);
    if (pins.length && !pins.some((k) => equalBytes(k, c.signer))) throw rejected('CREDIT_KEY_MISMATCH', `entry ${e.id} is signed by ${hex(c.signer)}, not a pinned key`);
    const n = hex(c.nonce);
    if (nonces.has(n)) throw rejected('CREDIT_REPLAYED', `entry ${e.id} reuses the signed credit of an earlier entry`);
    nonces.add(n);
    if (c.account !== e.account || c.kind !== e.kind || c.amount !== e.amount || BigInt(c.at) !== e.at) throw rejected('CREDIT_MISMATCH', `entry ${e.id} differs from its signed credit record`);
    const a = accounts.get(e.account);
    if (!a) throw rejected('CREDIT_MISMATCH', `entry ${e.id} credits an account the ledger does not hold`);
    if (c.accountKind !== a.kind || c.currency !== a.currency) throw rejected('CREDIT_MISMATCH', `entry ${e.id}: the account's kind or currency differs from its signed credit record`);
    if (c.kind === 'open') {
      if (opened.has(e.account)) throw rejected('CREDIT_MISMATCH', `account ${e.account} is opened twice`);
      opened.add(e.account);
      const kh = a.key_hash;
      if (!equalBytes(kh, c.keyHash!) || a.id !== `acct_${hex(kh.subarray(0, 8))}`) throw rejected('ACCOUNT_KEY_MISMATCH', `account ${a.id}: its API key hash is not the one its signed opening binds`);
      if (a.credit_limit !== c.creditLimit) throw rejected('CREDIT_MISMATCH', `account ${a.id}: its credit limit differs from its signed opening`);
    }
  }
  for (const id of accounts.keys()) if (!opened.has(id)) throw rejected('CREDIT_UNSIGNED', `account ${id} has no signed opening`);
  return entries.length;
}

/** A head as the enclave publishes it: `{"type":"gm.ledger-head","v":1,"head":"<base64url>"}`. */
export function parseHeadJson(bytes: Uint8Array): Uint8Array {
  let j: { type?: unknown; v?: unknown; head?: unknown };
  try {
    j = JSON.parse(new TextDecoder().decode(bytes)) as typeof j;
  } catch (e) {
    throw protocolError('LEDGER_RECORD_MALFORMED', 'the head is not JSON', { cause: e });
  }
  if (!j || j.type !== HEAD_TYPE || j.v !== 1 || typeof j.head !== 'string') throw protocolError('LEDGER_RECORD_MALFORMED', `the head is not a ${HEAD_TYPE} v1 object`);
  return fromBase64(j.head, 'head');
}

/** Verifies a receipts file (envelopes with their signed offers). */
export async function verifyReceiptFile(bytes: Uint8Array, name: string, keys?: readonly Uint8Array[]): Promise<VerificationReport> {
  const checks = new Checks(`receipts ${name}`);
  const items = checks.runSync('receipts.file', 'the file holds gm.receipt v1 envelopes', undefined, () => parseReceiptFile(bytes), (v) => `${v.length} envelope(s)`);
  await verifyReceiptItems(items, { ...(keys ? { keys } : {}), wholeChain: false, subject: name }, checks);
  return checks.report();
}

/**
 * The rows every ledger audit shares after its credits: a SKIP when no credit signer is pinned, and the signed chain
 * head kept outside the ledger (`--head`), whose signer must be a pinned receipt key (or one of the ledger's own).
 */
export async function checkPinsAndHead(checks: Checks, pins: readonly Uint8Array[], keys: readonly Uint8Array[] | undefined, receipts: readonly SignedReceipt[], head: Uint8Array | undefined): Promise<void> {
  if (pins.length === 0) checks.skip('ledger.credits.key', 'each credit is signed by a pinned key', 'no --key or --credit-key given: credit signers are not checked against known keys');
  if (!head) {
    checks.skip('ledger.head', 'the ledger holds the receipts a signed chain head counts', 'no --head given: receipts removed from the end, or a rolled-back ledger, cannot be seen');
    return;
  }
  await checks.run('ledger.head', 'the ledger holds the receipts a signed chain head kept outside it counts, ending in the same hash (no truncation or rollback)', keys?.length ? keys.map((k) => hex(k)).join(', ') : 'receipt keys in the ledger', async () => {
    const h = await verifyHead(parseHeadJson(head));
    const signers = keys?.length ? keys : receipts.map((r) => r.receipt.receiptKey);
    if (!signers.some((k) => equalBytes(k, h.signer))) throw rejected('LEDGER_HEAD_KEY_MISMATCH', `the head is signed by ${hex(h.signer)}, not a receipt key of this ledger`);
    checkHead(h, receipts);
    return h;
  }, (h) => `head ${h.seq} of ${new Date(h.time).toISOString()} found`);
}
