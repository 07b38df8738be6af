/**
 * Ledger benchmarks (docs/design.md §6 "The ledger"), each against a floor measured in the same run:
 *  - group commit on SQLite (a durable file in the OS temp dir, synchronous=FULL): settles with 32 in flight, whose
 *    receipts share transactions, against settles one at a time (one receipt per commit); the figure is receipts
 *    per second, the note gives receipts per commit and µs per receipt of each;
 *  - PostgreSQL (a private server started as the tests start it; skipped without the binaries): the ledger append
 *    (a settle: chain head, hold, receipt, debit entry, balance, in one transaction) against a bare INSERT of a row
 *    of the receipt's size into a table with a primary key on the same server, one at a time and with 32 in flight
 *    (target >= 0.5 of the bare INSERT's throughput), in alternating rounds. Holds are taken before the clock
 *    starts: the append is timed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Hold, Ledger } from '../enclave/ledger/ledger.ts';
import { PostgresLedger } from '../enclave/ledger/postgres.ts';
import { generateEnclaveReceiptKey } from '../enclave/ledger/signer.ts';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { createMarket } from '../enclave/market/index.ts';
import { makeWorker, NOW, offerFor } from '../test/market-fixtures.ts';
import { startPostgres } from '../test/support/postgres.ts';
import type { BenchRow } from './harness.ts';

export const title = 'ledger: group commit, PostgreSQL append';

const CONCURRENCY = 32;
const ROUNDS = 3;
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function candidate() {
  const market = createMarket({ feeBasisPoints: 200 });
  const w = await makeWorker('bench-worker');
  market.book.upsertWorker(w.info);
  const { signOffer } = await import('../protocol/offer.ts');
  await market.book.addSignedOffer(await signOffer(offerFor(w, { capacity: 1_000_000 }), w.privateKey, w.hotkey.secretKey), NOW);
  return (account: { id: string; currency: string; kind: 'prepaid' | 'postpaid'; balance: bigint; creditLimit: bigint }) => market.route({ model: 'dev-model', max_tokens: 100, messages: [] }, { now: NOW, requestId: 'b', account }).candidates[0]!;
}

/** Settles n pre-taken holds with `inflight` settles outstanding at a time; returns receipts/s and receipts per commit. */
async function settleRate(ledger: Ledger, n: number, inflight: number, tag: string): Promise<{ perSec: number; perCommit: number }> {
  const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 1n << 60n }, NOW);
  const cand = (await candidate())(account);
  const holds: Hold[] = [];
  for (let i = 0; i < n; i++) holds.push(await ledger.authorize(account, cand, 200));
  await ledger.settle(await ledger.authorize(account, cand, 200), { requestId: `${tag}-warm`, inputTokens: 1, outputTokens: 1, now: NOW });
  const before = ledger.commitStats;
  let next = 0;
  const t = process.hrtime.bigint();
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (next < n) {
      const i = next++;
      await ledger.settle(holds[i]!, { requestId: `${tag}-${i}`, inputTokens: 1 + (i % 5), outputTokens: 20, now: NOW + i });
    }
  }));
  const perSec = n / (Number(process.hrtime.bigint() - t) / 1e9);
  const after = ledger.commitStats;
  return { perSec, perCommit: (after.receipts - before.receipts) / (after.commits - before.commits) };
}

async function sqliteGroupCommit(): Promise<BenchRow> {
  const dir = mkdtempSync(join(tmpdir(), 'gm-bench-group-'));
  try {
    const one = SqliteLedger.open(join(dir, 'one.sqlite'), { signer: generateEnclaveReceiptKey() });
    const single = await settleRate(one, 300, 1, 's');
    await one.close();
    const many = SqliteLedger.open(join(dir, 'many.sqlite'), { signer: generateEnclaveReceiptKey() });
    const grouped = await settleRate(many, 1500, CONCURRENCY, 'g');
    await many.close();
    return {
      name: `SQLite settle, ${CONCURRENCY} in flight (group commit), durable file`,
      value: grouped.perSec,
      unit: 'receipts/s',
      floorName: 'the same settles one at a time (1 receipt per commit)',
      floor: single.perSec,
      ratio: grouped.perSec / single.perSec,
      target: 'none (informational)',
      ok: true,
      note: `${grouped.perCommit.toFixed(1)} receipts per commit, ${(1e6 / grouped.perSec).toFixed(0)} µs per receipt; one at a time ${single.perCommit.toFixed(1)} per commit, ${(1e6 / single.perSec).toFixed(0)} µs per receipt`,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bare INSERTs of a row the size of a sealed receipt, `inflight` at a time through a pool like the ledger's. */
async function bareInserts(url: string, n: number, inflight: number, size: number, round: number): Promise<number> {
  const pool = new pg.Pool({ connectionString: url, max: 8 });
  pool.on('error', () => undefined);
  try {
    await pool.query('CREATE TABLE IF NOT EXISTS bare (chain text NOT NULL, seq bigint NOT NULL, body bytea NOT NULL, PRIMARY KEY (chain, seq))');
    const body = Buffer.alloc(size, 7);
    const chain = `w${inflight}-${round}`;
    await pool.query('INSERT INTO bare VALUES ($1, $2, $3)', [chain, 0, body]);
    let next = 1;
    const t = process.hrtime.bigint();
    await Promise.all(Array.from({ length: inflight }, async () => {
      while (next <= n) {
        const i = next++;
        await pool.query('INSERT INTO bare VALUES ($1, $2, $3)', [chain, i, body]);
      }
    }));
    return n / (Number(process.hrtime.bigint() - t) / 1e9);
  } finally {
    await pool.end();
  }
}

async function postgresAppend(): Promise<BenchRow[]> {
  const server = await startPostgres();
  if (!server) return [{ name: 'PostgreSQL ledger append', value: 0, unit: 'appends/s', floorName: 'bare INSERT', floor: 0, ratio: 0, target: 'skipped', ok: true, note: 'no PostgreSQL server binaries (pg_config --bindir, /usr/lib/postgresql/*/bin)' }];
  try {
    const rows: BenchRow[] = [];
    for (const inflight of [1, CONCURRENCY]) {
      const n = inflight === 1 ? 200 : 1000;
      const url = await server.database(`bench_${inflight}`);
      const ledger = await PostgresLedger.open(url, { signer: generateEnclaveReceiptKey(), chainId: 'bench' });
      // Rounds alternate the ledger and the bare INSERT so that load from elsewhere on the machine hits both alike;
      // each figure is the median of its rounds.
      const ours: number[] = [];
      const bare: number[] = [];
      let perCommit = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const l = await settleRate(ledger, n, inflight, `p${inflight}-${round}`);
        ours.push(l.perSec);
        perCommit = l.perCommit;
        // A sealed receipt body is ~600-700 bytes (the signed receipt plus nonce and tag).
        bare.push(await bareInserts(url, n, inflight, 680, round));
      }
      await ledger.close();
      const value = median(ours);
      const floor = median(bare);
      const ratio = value / floor;
      rows.push({
        name: `PostgreSQL ledger append (settle: head, hold, receipt, debit, balance; one tx), ${inflight} in flight`,
        value,
        unit: 'appends/s',
        floorName: `bare INSERT of a 680-byte row, ${inflight} in flight, same server`,
        floor,
        ratio,
        target: 'ratio >= 0.5',
        ok: ratio >= 0.5,
        note: `${perCommit.toFixed(1)} receipts per commit; median of ${ROUNDS} alternating rounds, ratios ${ours.map((o, i) => (o / bare[i]!).toFixed(2)).join(', ')}`,
      });
    }
    return rows;
  } finally {
    await server.close();
  }
}

export async function run(): Promise<BenchRow[]> {
  return [await sqliteGroupCommit(), ...(await postgresAppend())];
}
