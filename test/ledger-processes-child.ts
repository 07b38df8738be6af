/**
 * Child process for test/ledger-processes.test.ts: one of several processes of one enclave sharing a SQLite ledger
 * file (argv[2]) on its own chain (argv[4]). Waits for "go" on stdin, tries argv[5] holds of 10,000 µUSD each on the
 * account of API key argv[3] and says "tried"; waits for "settle" (so no settle frees funds while another process
 * is still trying), settles the holds it got, and prints one JSON line with what happened.
 */
import { createInterface } from 'node:readline';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { generateEnclaveReceiptKey } from '../enclave/ledger/signer.ts';
import { createMarket } from '../enclave/market/index.ts';
import type { Hold } from '../enclave/ledger/ledger.ts';
import { makeWorker, NOW, signedOffer } from './market-fixtures.ts';

const [path, apiKey, chainId, tries] = process.argv.slice(2) as [string, string, string, string];
const ledger = SqliteLedger.open(path, { signer: generateEnclaveReceiptKey(), chainId });
const market = createMarket({ feeBasisPoints: 100 });
const w = await makeWorker('proc-worker');
market.book.upsertWorker(w.info);
await market.book.addSignedOffer(await signedOffer(w, { pricePerMInput: 1_000_000n, pricePerMOutput: 2_000_000n }), NOW);
const account = await ledger.accountForKey(apiKey);
const cand = { ...market.route({ model: 'dev-model', max_tokens: 64, messages: [{ role: 'user', content: 'x' }] }, { now: NOW, requestId: 'p', account }).candidates[0]!, maxCost: 10_000n };
const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const expect = async (word: string) => {
  const r = await input.next();
  if (r.value !== word) throw new Error(`expected ${word} on stdin`);
};
process.stdout.write('ready\n');
await expect('go');
const held: Hold[] = [];
const refused: string[] = [];
for (let i = 0; i < Number(tries); i++) {
  try {
    held.push(await ledger.authorize(account, cand, 100));
  } catch (e) {
    refused.push((e as { code?: string }).code ?? String(e));
  }
}
process.stdout.write('tried\n');
await expect('settle');
const receipts = await Promise.all(held.map((h, i) => ledger.settle(h, { requestId: `${chainId}-${i}`, inputTokens: 1 + (i % 5), outputTokens: 2 + (i % 7), now: NOW + i })));
process.stdout.write(`${JSON.stringify({ held: held.length, refused, total: String(receipts.reduce((s, r) => s + r.receipt.total, 0n)), seqs: receipts.map((r) => r.receipt.seq) })}\n`);
await ledger.close();
