/**
 * The worked example of docs/market.md, runnable: `node enclave/market/example.ts [--out DIR]`.
 *
 * Two workers post offers for the same model, each signed by the worker's Ed25519 key and its operator's sr25519
 * hotkey; the enclave's order book verifies them; three requests are routed by their constraints (cheapest, fastest,
 * and one whose max_price no offer meets); the served ones are held, settled and receipted in a ledger; the
 * receipts are verified the way `gm receipts verify` does; statements are printed as CSV. Keys are random, so the
 * hex differs between runs; everything else is fixed (the clock is pinned to 2026-01-01T00:00:00Z).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256 } from '@noble/hashes/sha2.js';
import { hex } from '../../attestation/bytes.ts';
import { GmError } from '../../attestation/errors.ts';
import { formatReport } from '../../cli/format.ts';
import { generateWorkerKey, hotkeyFromSeed, type Offer, signOffer } from '../../protocol/offer.ts';
import { receiptEnvelope, receiptView } from '../../protocol/receipt.ts';
import { SqliteLedger } from '../ledger/sqlite.ts';
import { generateEnclaveReceiptKey } from '../ledger/signer.ts';
import { accountStatement, accountStatementCsv, sqliteStatements, workerStatement, workerStatementCsv } from '../ledger/statements.ts';
import { verifyLedger, verifyReceiptFile } from '../ledger/verify.ts';
import { createMarket } from './index.ts';

const NOW = Date.UTC(2026, 0, 1);
const nowS = NOW / 1000;
const out = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1]! : mkdtempSync(join(tmpdir(), 'gm-market-example-'));
mkdirSync(out, { recursive: true });
const say = (s = ''): void => void process.stdout.write(`${s}\n`);

// 1. Two workers. In production the worker key is generated inside the worker's CVM and bound in its REPORT_DATA.
const market = createMarket({ feeBasisPoints: 250 }); // the operator's routing fee: 2.5 %
const specs = [
  { id: 'worker-cheap', seed: 1, inPerM: 150_000n, outPerM: 600_000n, ttftMs: 450, tps: 40, terms: { kind: 'per-request' } as const },
  { id: 'worker-fast', seed: 2, inPerM: 400_000n, outPerM: 1_200_000n, ttftMs: 120, tps: 140, terms: { kind: 'postpaid', creditLimit: 50_000_000n, settlementPeriodSeconds: 86_400 } as const },
];
for (const s of specs) {
  const key = await generateWorkerKey();
  const hotkey = hotkeyFromSeed(new Uint8Array(32).fill(s.seed));
  market.book.upsertWorker({ workerId: s.id, workerKey: key.publicKey, evidenceDigest: sha256(new TextEncoder().encode(`evidence of ${s.id}`)), verifiedUntil: NOW + 3_600_000, sim: true });
  const offer: Offer = {
    v: 1, offerId: `${s.id}-llama`, sequence: 1, workerId: s.id, workerKey: key.publicKey, hotkey: hotkey.address, model: 'llama-3.1-8b',
    currency: 'USD', pricePerMInput: s.inPerM, pricePerMOutput: s.outPerM, terms: s.terms, capacity: 4, ttftMs: s.ttftMs, tokensPerSecond: s.tps,
    validFrom: nowS - 60, validUntil: nowS + 3600,
  };
  const signed = await signOffer(offer, key.privateKey, hotkey.secretKey);
  const v = await market.book.addSignedOffer(signed, NOW);
  say(`offer ${offer.offerId}: ${signed.length} bytes signed, hotkey ${hotkey.address}, digest ${hex(v.digest).slice(0, 16)}…, ${offer.pricePerMInput}/${offer.pricePerMOutput} micro-USD per M in/out, ${offer.terms.kind}`);
}

// 2. A ledger whose receipts are signed by the enclave's receipt key, and a prepaid account ($5).
const ledger = SqliteLedger.open(join(out, 'ledger.sqlite'), { signer: generateEnclaveReceiptKey() });
const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 5_000_000n }, NOW);
say(`\naccount ${account.id}: prepaid ${account.balance} micro-USD (the API key is shown once and stored only as a hash)`);

// 3. Three requests; the constraints travel inside the encrypted body, next to the OpenAI fields.
const requests = [
  { name: 'cheapest (default sort: price)', body: { model: 'llama-3.1-8b', max_tokens: 300, messages: [{ role: 'user', content: 'Summarise the attached contract.'.repeat(20) }] }, usage: [160, 300] },
  { name: 'fastest (provider.sort: latency, postpaid accepted)', body: { model: 'llama-3.1-8b', max_tokens: 200, messages: [{ role: 'user', content: 'Hello!' }], provider: { sort: 'latency' }, payment: { terms: ['postpaid', 'per-request'] } }, usage: [12, 200] },
  { name: 'too cheap (max_price below every offer)', body: { model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'Hi' }], provider: { max_price: { prompt: 0.1, completion: 0.5 } } }, usage: [0, 0] },
] as const;
const envelopes: string[] = [];
for (const [i, r] of requests.entries()) {
  say(`\nrequest ${i + 1}, ${r.name}:`);
  try {
    const sel = market.route(r.body, { now: NOW, requestId: `req-${i + 1}`, account });
    say(`  candidates: ${sel.candidates.map((c) => `${c.offer.workerId} (max cost ${c.maxCost} µUSD)`).join(', ')}`);
    const cand = sel.candidates[0]!;
    const hold = await ledger.authorize(account, cand, sel.feeBasisPoints);
    const lease = market.book.acquire(cand.entry, NOW);
    lease.firstToken(NOW + cand.offer.ttftMs);
    lease.succeeded(r.usage[1], NOW + cand.offer.ttftMs + 1000);
    const receipt = await ledger.settle(hold, { requestId: `req-${i + 1}`, inputTokens: r.usage[0], outputTokens: r.usage[1], now: NOW + i * 1000, enclaveSim: true });
    const v = receiptView(receipt.receipt);
    say(`  served by ${v.workerId}: ${v.inputTokens} in + ${v.outputTokens} out → worker ${v.workerCost} + fee ${v.fee} = ${v.total} µUSD; receipt seq ${v.seq}, prev ${String(v.prev).slice(0, 16)}…`);
    envelopes.push(JSON.stringify(receiptEnvelope(receipt, cand.entry.verified.signed)));
  } catch (e) {
    if (!(e instanceof GmError)) throw e;
    say(`  refused: ${e.code}: ${e.message}`);
  }
}

// 4. Verify, as `gm receipts verify FILE` and `--ledger PATH` do.
const file = join(out, 'receipts.jsonl');
writeFileSync(file, `${envelopes.join('\n')}\n`);
say(`\n$ gm receipts verify ${file} --key <receipt key>`);
process.stdout.write(formatReport(await verifyReceiptFile(new TextEncoder().encode(envelopes.join('\n')), file, await ledger.receiptKeys())));
say(`\n$ gm receipts verify --ledger ${join(out, 'ledger.sqlite')}`);
process.stdout.write(formatReport(await verifyLedger(join(out, 'ledger.sqlite'), await ledger.receiptKeys())));

// 5. Statements.
say(`\naccount statement (CSV):`);
process.stdout.write(accountStatementCsv(accountStatement(sqliteStatements(ledger), account.id)));
for (const s of specs) {
  say(`\nworker statement ${s.id} at ${new Date(NOW + 3_600_000).toISOString()} (CSV):`);
  process.stdout.write(workerStatementCsv(workerStatement(sqliteStatements(ledger), s.id, NOW + 3_600_000)));
}
say(`\nbalance now ${(await ledger.account(account.id)).balance} micro-USD; files in ${out}`);
ledger.close();
