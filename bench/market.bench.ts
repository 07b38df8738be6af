/**
 * Market benchmarks:
 *  - selection among 10,000 offers, median µs per request (target <= 50 µs), beside a floor measured in the same
 *    run: a bare loop over the same model's entries that only finds the minimum price (no constraints, no ranking);
 *    and with the best-execution commitment (eligibility bitmap over every considered offer and its SHA-256; target
 *    <= 100 µs); the Merkle tree's update after one offer change (inserted at the first, middle and last position of
 *    the considered set, median of 5 changes each) beside the full build of the same tree from scratch, alternated;
 *  - ledger append with the debit (route-chosen hold → sign → one transaction: receipt + debit + balance) against a
 *    bare node:sqlite INSERT of the same receipt row into a table of the same shape, same file system, same pragmas,
 *    in the same run (target >= 0.5 of its throughput); reported without and with the Ed25519 signature, which is
 *    per-receipt CPU the bare insert does not have (node:crypto, the enclave's signer). Judged on the OS temp dir
 *    (a durable append: real fsync); also printed, without a target, on /dev/shm when present (fsync nearly free,
 *    so the ratio shows the ledger's CPU overhead).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { hash as nodeHash } from 'node:crypto';
import { type BenchRow, medianUs } from './harness.ts';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { PRAGMAS } from '../enclave/ledger/schema.ts';
import { createMarket } from '../enclave/market/index.ts';
import { OrderBook } from '../enclave/market/book.ts';
import { parseRouteConstraints } from '../enclave/market/constraints.ts';
import { generateEnclaveReceiptKey } from '../enclave/ledger/signer.ts';
import { receiptSignerFrom } from '../protocol/receipt.ts';
import { makeWorker, NOW, offerFor, unsignedVerified } from '../test/market-fixtures.ts';

export const title = 'market: selection and ledger';

async function selection(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const workers = await Promise.all(Array.from({ length: 100 }, (_, i) => makeWorker(`w${i}`, { seed: (i % 250) + 1 })));
  for (const [label, models] of [['10,000 offers over 50 models (200 for the requested one)', 50], ['10,000 offers all for the requested model', 1]] as const) {
    const market = createMarket({ feeBasisPoints: 200 });
    for (const w of workers) market.book.upsertWorker(w.info);
    let k = 0;
    for (let i = 0; i < 10_000; i++) {
      const w = workers[i % workers.length]!;
      const o = offerFor(w, {
        offerId: `o${i}`,
        model: `model-${i % models}`,
        pricePerMInput: BigInt(100_000 + ((i * 7919) % 900_000)),
        pricePerMOutput: BigInt(200_000 + ((i * 104_729) % 1_800_000)),
        terms: [{ kind: 'prepaid' as const }, { kind: 'per-request' as const }][i % 2]!,
        capacity: 8,
        ttftMs: 100 + (i % 400),
        tokensPerSecond: 20 + (i % 80),
      });
      market.book.insert(unsignedVerified(o, k++), NOW);
    }
    const c = parseRouteConstraints({ model: 'model-0', max_tokens: 512, messages: [{ role: 'user', content: 'x'.repeat(2000) }], provider: { sort: 'price', max_price: { prompt: 0.9, completion: 1.9 } }, payment: { terms: ['prepaid', 'per-request'] } });
    let r = 0;
    const value = await medianUs(() => market.selectParsed(c, { now: NOW, requestId: `r${r++}` }), 2000, 200);
    const entries = market.book.entriesFor('model-0', NOW);
    const floor = await medianUs(() => {
      let min = Infinity;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        const p = e.quotedIn * 500 + e.quotedOut * 512;
        if (p < min) min = p;
      }
      return min;
    }, 2000, 200);
    rows.push({ name: `select, ${label}`, value, unit: 'µs', floorName: `bare min-price loop over the same ${entries.length} entries`, floor, ratio: value / floor, target: 'value <= 50 µs', ok: value <= 50 });
    // With the best-execution commitment: a full scan marking every eligible offer in the bitmap, and its digest. The
    // model's Merkle tree is built once per change to its offers (timed apart below), not per request.
    const committed = await medianUs(() => nodeHash('sha256', market.selectParsed(c, { now: NOW, requestId: `r${r++}`, commit: true }).proof!.bitmap), 2000, 200);
    rows.push({ name: `select with best-execution commitment, ${label}`, value: committed, unit: 'µs', floorName: 'the same selection without it', floor: value, ratio: committed / value, target: 'value <= 100 µs', ok: committed <= 100 });
    if (models === 1) rows.push(...(await treeUpdates(market, workers[0]!, () => k++)));
  }
  return rows;
}

/**
 * The considered set's tree after one offer change, by where the new offer's digest falls (a change rehashes the
 * blocks from its position on), against building the whole tree (leaf hashes, nodes, columns) on a fresh book.
 */
async function treeUpdates(market: ReturnType<typeof createMarket>, w: Awaited<ReturnType<typeof makeWorker>>, next: () => number): Promise<BenchRow[]> {
  const model = 'model-0';
  const fresh = (): number => {
    const book = new OrderBook({ feeBasisPoints: 200 });
    for (const e of market.book.entriesFor(model, NOW)) {
      book.upsertWorker(e.slot.info!);
      book.insert(e.verified, NOW);
    }
    const t0 = performance.now();
    book.treeFor(model, NOW);
    return (performance.now() - t0) * 1000;
  };
  const n = market.book.entriesFor(model, NOW).length;
  const rows: BenchRow[] = [];
  for (const [where, pos] of [['first', 0], ['middle', n >> 1], ['last', n]] as const) {
    const times: number[] = [];
    const fulls: number[] = [];
    for (let i = 0; i < 5; i++) {
      // The full build alternates with the updates, so load from other processes falls on both alike.
      fulls.push(fresh());
      // unsignedVerified digests are the big-endian insertion counter: a digest just above counter `pos` lands there.
      const v = unsignedVerified(offerFor(w, { offerId: `change-${where}-${i}`, model }), next());
      v.digest.fill(0);
      new DataView(v.digest.buffer).setUint32(0, pos === 0 ? 0 : pos - 1);
      v.digest[31] = 1 + i;
      const t0 = performance.now();
      market.book.insert(v, NOW);
      market.book.treeFor(model, NOW);
      times.push((performance.now() - t0) * 1000);
    }
    const value = median(times);
    const full = median(fulls);
    rows.push({ name: `Merkle tree update after one offer change (inserted ${where}), ~${n} offers of one model`, value, unit: 'µs', floorName: 'full build of the same tree', floor: full, ratio: value / full, target: 'none: once per change to the offers, not per request', ok: true });
  }
  return rows;
}

const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!;

async function ledger(base: string, where: string, signing: boolean): Promise<BenchRow> {
  const dir = mkdtempSync(join(base, 'gm-bench-ledger-'));
  try {
    const N = where === 'disk' ? 300 : 3000;
    const market = createMarket({ feeBasisPoints: 200 });
    const w = await makeWorker('bench-worker');
    market.book.upsertWorker(w.info);
    const { signOffer } = await import('../protocol/offer.ts');
    await market.book.addSignedOffer(await signOffer(offerFor(w, { capacity: 1_000_000 }), w.privateKey, w.hotkey.secretKey), NOW);
    // Without signing: a signer that returns a fixed 64-byte value, so the figure is the ledger's own work (receipt
    // encoding, chain hash, one transaction with the debit); with signing: the enclave's node:crypto Ed25519 key.
    const real = generateEnclaveReceiptKey();
    const signer = signing ? real : receiptSignerFrom(real.publicKey, () => new Uint8Array(64));
    const led = SqliteLedger.open(join(dir, 'ledger.sqlite'), { signer });
    const { account } = await led.createAccount({ currency: 'USD', prepaid: 1n << 60n }, NOW);
    const sel = market.route({ model: 'dev-model', max_tokens: 100, messages: [] }, { now: NOW, requestId: 'b', account });
    const cand = sel.candidates[0]!;
    // warm-up, and a real row to copy into the bare table
    const sample = await led.settle(await led.authorize(account, cand, 200), { requestId: 'warm', inputTokens: 10, outputTokens: 20, now: NOW });
    let t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) await led.settle(await led.authorize(account, cand, 200), { requestId: `r${i}`, inputTokens: 1 + (i % 5), outputTokens: 20, now: NOW + i });
    const ledgerPerSec = N / (Number(process.hrtime.bigint() - t) / 1e9);
    led.close();

    const bare = new DatabaseSync(join(dir, 'bare.sqlite'));
    for (const p of PRAGMAS) bare.exec(p);
    bare.exec('CREATE TABLE receipts (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, prev BLOB NOT NULL, signed BLOB NOT NULL, offer_digest BLOB NOT NULL, account TEXT NOT NULL, worker_id TEXT NOT NULL, terms TEXT NOT NULL, settlement_period INTEGER NOT NULL, currency TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, worker_cost INTEGER NOT NULL, fee INTEGER NOT NULL, total INTEGER NOT NULL, time INTEGER NOT NULL) STRICT');
    const ins = bare.prepare('INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
    const r = sample.receipt;
    const hash = new Uint8Array(32);
    t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      new DataView(hash.buffer).setUint32(0, i + 1);
      ins.run(i + 1, hash, r.prev, sample.signed, r.offerDigest, account.id, r.workerId, 'per-request', 0, 'USD', 10 + i, 20, r.workerCost, r.fee, r.total, NOW + i);
    }
    const barePerSec = N / (Number(process.hrtime.bigint() - t) / 1e9);
    bare.close();
    const ratio = ledgerPerSec / barePerSec;
    const name = `ledger append with debit (receipt + debit + balance, one tx${signing ? ', plus Ed25519 signing' : ''}), ${where}`;
    const row = { name, value: ledgerPerSec, unit: 'appends/s', floorName: 'bare node:sqlite INSERT of the same row', floor: barePerSec, ratio };
    // The target is about the durable ledger (synchronous = FULL on a real file system). On tmpfs nothing reaches a
    // disk, so the figure is CPU only: three statements, two indexes, foreign keys and append-only triggers against
    // one bare INSERT. It is printed to show that overhead, not judged against the target.
    return where === 'disk'
      ? { ...row, target: 'ratio >= 0.5', ok: ratio >= 0.5 }
      : { ...row, target: 'none (informational)', ok: true, note: 'CPU only: no fsync on tmpfs, so not a durable append' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<BenchRow[]> {
  const rows = [...(await selection())];
  rows.push(await ledger(tmpdir(), 'disk', false));
  rows.push(await ledger(tmpdir(), 'disk', true));
  if (existsSync('/dev/shm')) {
    rows.push(await ledger('/dev/shm', 'tmpfs', false));
    rows.push(await ledger('/dev/shm', 'tmpfs', true));
  }
  return rows;
}
