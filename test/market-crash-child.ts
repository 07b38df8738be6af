/**
 * Child process for test/market-crash.test.ts: appends settled requests to the ledger at argv[2] for the account
 * whose API key is argv[3], as fast as it can, printing each committed seq on stdout, until the parent kills it.
 */
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { createMarket } from '../enclave/market/index.ts';
import { generateEnclaveReceiptKey } from '../enclave/ledger/signer.ts';
import { makeWorker, NOW, signedOffer } from './market-fixtures.ts';

const [path, apiKey] = process.argv.slice(2) as [string, string];
const ledger = SqliteLedger.open(path, { signer: generateEnclaveReceiptKey() });
const market = createMarket({ feeBasisPoints: 175 });
const w = await makeWorker('crash-worker');
market.book.upsertWorker(w.info);
await market.book.addSignedOffer(await signedOffer(w, { pricePerMInput: 700_001n, pricePerMOutput: 1_900_003n }), NOW);
const account = await ledger.accountForKey(apiKey);
for (let i = 0; i < 1_000_000; i++) {
  const sel = market.route({ model: 'dev-model', max_tokens: 64, messages: [{ role: 'user', content: 'x' }] }, { now: NOW, requestId: `c${i}`, account });
  const hold = await ledger.authorize(account, sel.candidates[0]!, sel.feeBasisPoints);
  const r = await ledger.settle(hold, { requestId: `c${process.pid}-${i}`, inputTokens: 1 + (i % 13), outputTokens: 1 + (i % 61), now: NOW + i });
  process.stdout.write(`${r.receipt.seq}\n`);
}
