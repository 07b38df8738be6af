/**
 * Builds a small ledger for the CLI and crash tests: one worker, one signed offer, one prepaid account, and `n`
 * settled requests (the same path the enclave takes: route → authorize → settle). Returns what tests compare.
 */
import { generateReceiptKey, receiptEnvelope, type SignedReceipt } from '../protocol/receipt.ts';
import type { Account } from '../enclave/ledger/ledger.ts';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { createMarket, type Market } from '../enclave/market/index.ts';
import { makeWorker, NOW, signedOffer } from './market-fixtures.ts';

export interface Built {
  readonly ledger: SqliteLedger;
  readonly market: Market;
  readonly account: Account;
  readonly receipts: SignedReceipt[];
  readonly offerSigned: Uint8Array;
  readonly receiptKey: Uint8Array;
  /** One receipt envelope (with its signed offer) per line: what a client saves. */
  readonly jsonl: string;
}

export async function buildLedger(path: string, n: number, prepaid = 100_000_000n): Promise<Built> {
  const signer = await generateReceiptKey();
  const ledger = SqliteLedger.open(path, { signer });
  const market = createMarket({ feeBasisPoints: 150 });
  const w = await makeWorker('worker-1');
  market.book.upsertWorker(w.info);
  const offer = await market.book.addSignedOffer(await signedOffer(w), NOW);
  const { account } = await ledger.createAccount({ currency: 'USD', prepaid }, NOW);
  const receipts: SignedReceipt[] = [];
  for (let i = 0; i < n; i++) {
    const sel = market.route({ model: 'dev-model', max_tokens: 200, messages: [{ role: 'user', content: `q${i}` }] }, { now: NOW, requestId: `req-${i}`, account });
    const hold = await ledger.authorize(account, sel.candidates[0]!, sel.feeBasisPoints);
    receipts.push(await ledger.settle(hold, { requestId: `req-${i}`, inputTokens: 10 + i, outputTokens: 100 + 7 * i, now: NOW + i }));
  }
  const jsonl = receipts.map((r) => JSON.stringify(receiptEnvelope(r, offer.signed))).join('\n') + '\n';
  return { ledger, market, account, receipts, offerSigned: offer.signed, receiptKey: signer.publicKey, jsonl };
}
