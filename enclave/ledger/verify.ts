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
 *   ledger.audit               (ledger only) balances, debits and receipts agree exactly (LEDGER_AUDIT)
 */
import { DatabaseSync } from 'node:sqlite';
import { equalBytes, hex, isZero } from '../../attestation/bytes.ts';
import { configError, protocolError, rejected } from '../../attestation/errors.ts';
import { Checks, type VerificationReport } from '../../attestation/report.ts';
import { type VerifiedOffer, verifyOfferSignatures } from '../../protocol/offer.ts';
import { checkReceiptAgainstOffer, parseReceiptEnvelope, type SignedReceipt, verifyReceipt } from '../../protocol/receipt.ts';
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

export async function verifyReceiptItems(items: readonly ReceiptItem[], opts: { keys?: readonly Uint8Array[]; wholeChain: boolean; subject: string }, checks = new Checks(opts.subject)): Promise<{ receipts: SignedReceipt[]; checks: Checks }> {
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

  const order = [...verified].sort((a, b) => a.receipt.seq - b.receipt.seq);
  checks.runSync('receipts.chain', opts.wholeChain ? 'receipts form one chain from seq 1: consecutive seq, each prev = SHA-256 of the previous receipt' : 'consecutive receipts link: prev = SHA-256 of the previous receipt', undefined, () => {
    let links = 0;
    let gaps = 0;
    for (let i = 0; i < order.length; i++) {
      const r = order[i]!.receipt;
      if (r.seq === 1 && !isZero(r.prev)) throw rejected('RECEIPT_CHAIN_BROKEN', 'receipt 1 must link to the zero hash');
      if (i === 0) {
        if (opts.wholeChain && r.seq !== 1) throw rejected('RECEIPT_CHAIN_BROKEN', `the chain starts at seq ${r.seq}, not 1`);
        continue;
      }
      const p = order[i - 1]!;
      if (r.seq === p.receipt.seq) throw rejected('RECEIPT_CHAIN_BROKEN', `two receipts claim seq ${r.seq}`);
      if (r.seq !== p.receipt.seq + 1) {
        if (opts.wholeChain) throw rejected('RECEIPT_CHAIN_BROKEN', `receipt ${p.receipt.seq + 1} is missing`);
        gaps++;
        continue;
      }
      if (!equalBytes(r.prev, p.hash)) throw rejected('RECEIPT_CHAIN_BROKEN', `receipt ${r.seq} does not link to receipt ${p.receipt.seq}`);
      links++;
    }
    return { links, gaps };
  }, ({ links, gaps }) => `${links} link(s) checked${gaps ? `; ${gaps} gap(s) between non-consecutive receipts cannot be checked from this file` : ''}`);

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

/** Verifies a whole ledger file: every receipt, the full chain, offers, and the balance audit. */
export async function verifyLedger(path: string, keys?: readonly Uint8Array[]): Promise<VerificationReport> {
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
        return db.prepare('SELECT r.seq AS seq, r.signed AS signed, o.signed AS offer FROM receipts r LEFT JOIN offers o ON o.digest = r.offer_digest ORDER BY r.seq').all() as { signed: Uint8Array; offer: Uint8Array | null }[];
      } catch (e) {
        throw configError('LEDGER_UNAVAILABLE', `not a gm ledger: ${(e as Error).message}`, { cause: e });
      }
    }, (r) => `${r.length} receipt row(s)`);
    if (rows.length === 0) {
      checks.skip('receipts.decode+signature', 'receipts', 'the ledger holds no receipts');
    } else {
      await verifyReceiptItems(rows.map((r) => ({ signed: new Uint8Array(r.signed), ...(r.offer ? { offer: new Uint8Array(r.offer) } : {}) })), { ...(keys ? { keys } : {}), wholeChain: true, subject: '' }, checks);
    }
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

/** Verifies a receipts file (envelopes with their signed offers). */
export async function verifyReceiptFile(bytes: Uint8Array, name: string, keys?: readonly Uint8Array[]): Promise<VerificationReport> {
  const checks = new Checks(`receipts ${name}`);
  const items = checks.runSync('receipts.file', 'the file holds gm.receipt v1 envelopes', undefined, () => parseReceiptFile(bytes), (v) => `${v.length} envelope(s)`);
  await verifyReceiptItems(items, { ...(keys ? { keys } : {}), wholeChain: false, subject: name }, checks);
  return checks.report();
}
