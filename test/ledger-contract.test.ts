/**
 * One contract for every ledger (enclave/ledger/ledger.ts): the SQLite file and PostgreSQL pass the same tests,
 * with several instances on one database standing in for the processes of one enclave (SQLite) or for replicas
 * (PostgreSQL). PostgreSQL is a private real server (test/support/postgres.ts), never a mock.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { nodeIo } from '../cli/io.ts';
import { main } from '../cli/main.ts';
import { verifyReceiptChain, type SignedReceipt } from '../protocol/receipt.ts';
import type { Hold, Ledger, LedgerOptions } from '../enclave/ledger/ledger.ts';
import { PostgresLedger } from '../enclave/ledger/postgres.ts';
import { generateEnclaveReceiptKey } from '../enclave/ledger/signer.ts';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { accountStatement, auditLedger, sqliteStatements, type StatementSource, workerStatement } from '../enclave/ledger/statements.ts';
import { createMarket } from '../enclave/market/index.ts';
import { expectCode, makeWorker, NOW, signedOffer } from './market-fixtures.ts';
import { type PgServer, startPostgres } from './support/postgres.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-ledger-contract-'));
let server: PgServer | undefined;
beforeAll(async () => {
  server = await startPostgres();
}, 120_000);
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A fresh database and a way to open instances on it (each its own chain and receipt key). */
interface Db {
  open(chainId: string, opts?: Partial<LedgerOptions>): Promise<Ledger>;
  /** Receipts committed, counted through a connection of its own (not an instance's). */
  receiptRows(): Promise<number>;
  /** Σ balances, Σ debit entries' amounts and Σ receipt totals, read back from the database. */
  audit(): Promise<void>;
  /** Statements read through an instance of their own; `done` closes it. */
  statements(): Promise<{ source: StatementSource; done(): Promise<void> }>;
}

interface Backend {
  readonly name: 'sqlite' | 'postgres';
  available(): boolean;
  fresh(name: string): Promise<Db>;
}

let files = 0;
const sqlite: Backend = {
  name: 'sqlite',
  available: () => true,
  async fresh() {
    const path = join(dir, `l${files++}.sqlite`);
    const opened: SqliteLedger[] = [];
    return {
      async open(chainId, opts = {}) {
        const l = SqliteLedger.open(path, { signer: generateEnclaveReceiptKey(), chainId, ...opts });
        opened.push(l);
        return l;
      },
      async receiptRows() {
        const other = SqliteLedger.open(path, {});
        try {
          return Number((other.db.prepare('SELECT COUNT(*) AS n FROM receipts').get() as { n: number }).n);
        } finally {
          await other.close();
        }
      },
      async audit() {
        const other = SqliteLedger.open(path, {});
        try {
          expect(auditLedger(other).problems).toEqual([]);
        } finally {
          await other.close();
        }
      },
      async statements() {
        const other = SqliteLedger.open(path, {});
        return { source: sqliteStatements(other), done: () => other.close() };
      },
    };
  },
};

const postgres: Backend = {
  name: 'postgres',
  available: () => server !== undefined,
  async fresh(name) {
    const url = await server!.database(name);
    const ledgerKey = randomBytes(32);
    const q = async <T extends pg.QueryResultRow>(sql: string): Promise<T[]> => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return (await c.query<T>(sql)).rows;
      } finally {
        await c.end();
      }
    };
    return {
      open: (chainId, opts = {}) => PostgresLedger.open(url, { signer: generateEnclaveReceiptKey(), chainId, ledgerKey, ...opts }),
      async receiptRows() {
        return Number((await q<{ n: string }>('SELECT COUNT(*) AS n FROM gm_receipts'))[0]!.n);
      },
      async audit() {
        const { verifyPostgresLedger } = await import('../enclave/ledger/verify-postgres.ts');
        const report = await verifyPostgresLedger(url, ledgerKey);
        expect(report.verified).toBe(true);
      },
      async statements() {
        const { postgresStatements } = await import('../enclave/ledger/verify-postgres.ts');
        return { source: await postgresStatements(url, ledgerKey), done: async () => undefined };
      },
    };
  },
};

async function offers() {
  const market = createMarket({ feeBasisPoints: 250 });
  const w = await makeWorker('w1');
  const p = await makeWorker('w2', { seed: 5 });
  market.book.upsertWorker(w.info);
  market.book.upsertWorker(p.info);
  await market.book.addSignedOffer(await signedOffer(w, { pricePerMInput: 1_000_000n, pricePerMOutput: 2_000_000n }), NOW);
  await market.book.addSignedOffer(await signedOffer(p, { pricePerMInput: 3_000_000n, pricePerMOutput: 3_000_000n, terms: { kind: 'postpaid', creditLimit: 40_000n, settlementPeriodSeconds: 3600 } }), NOW);
  return market;
}

const body = { model: 'dev-model', max_tokens: 1000, messages: [{ role: 'user', content: 'a prompt that must never reach the database' }] };

async function settleAll(pairs: readonly (readonly [Ledger, Hold])[], tag: string): Promise<SignedReceipt[]> {
  return Promise.all(pairs.map(([l, h], i) => l.settle(h, { requestId: `${tag}-${i}`, inputTokens: 1 + (i % 7), outputTokens: 3 + (i % 11), now: NOW + i })));
}

/** Each instance's receipts form its own unbroken chain from seq 1. */
async function chainsVerify(receipts: readonly SignedReceipt[]): Promise<void> {
  const byKey = new Map<string, SignedReceipt[]>();
  for (const r of receipts) {
    const k = Buffer.from(r.receipt.receiptKey).toString('hex');
    byKey.set(k, [...(byKey.get(k) ?? []), r]);
  }
  for (const list of byKey.values()) {
    const ordered = [...list].sort((a, b) => a.receipt.seq - b.receipt.seq);
    expect(ordered[0]!.receipt.seq).toBe(1);
    expect(await verifyReceiptChain(ordered.map((r) => r.signed))).toHaveLength(ordered.length);
  }
}

describe.each([sqlite, postgres])('ledger contract: $name', (backend) => {
  const run = (name: string, fn: () => Promise<void>, timeout = 60_000) =>
    it(name, async (ctx) => {
      if (!backend.available()) return ctx.skip();
      await fn();
    }, timeout);

  run('accounts by API key, 402 codes, holds reserve funds and release frees them', async () => {
    const db = await backend.fresh('accounts');
    const ledger = await db.open('a');
    const market = await offers();
    try {
      const { apiKey, account } = await ledger.createAccount({ currency: 'USD', prepaid: 3_000n }, NOW);
      expect((await ledger.accountForKey(apiKey)).id).toBe(account.id);
      await expectCode(ledger.accountForKey(`${apiKey}x`), 'ACCOUNT_UNKNOWN');
      await expectCode(ledger.accountForKey(undefined), 'ACCOUNT_MISSING');
      const cand = market.route(body, { now: NOW, requestId: 'r', account }).candidates[0]!;
      const h = await ledger.authorize(account, cand, 250);
      expect(await ledger.available(account.id)).toBe(3_000n - cand.maxCost);
      await expectCode(ledger.authorize(account, cand, 250), 'PAYMENT_INSUFFICIENT_FUNDS');
      await ledger.release(h);
      expect(await ledger.available(account.id)).toBe(3_000n);
      await expectCode(ledger.settle(h, { requestId: 'r', inputTokens: 1, outputTokens: 1, now: NOW }), 'HOLD_UNKNOWN');
      const credit = (await ledger.createAccount({ currency: 'USD', creditLimit: 1_000n }, NOW)).account;
      await expectCode(ledger.authorize(credit, cand, 250), 'PAYMENT_CREDIT_LIMIT');
      const euro = (await ledger.createAccount({ currency: 'EUR', prepaid: 10_000_000n }, NOW)).account;
      await expectCode(ledger.authorize(euro, cand, 250), 'PAYMENT_CURRENCY_MISMATCH');
      const d = await ledger.deposit(account.id, 500n, NOW);
      expect(d.balance).toBe(3_500n);
    } finally {
      await ledger.close();
    }
  });

  run('an answer cut mid-stream settles once with its status (failed, cancelled); the rest of the hold is released; the audit recomputes it', async () => {
    const db = await backend.fresh('partial');
    const ledger = await db.open('p');
    const market = await offers();
    try {
      const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 1_000_000n }, NOW);
      const cand = market.route(body, { now: NOW, requestId: 'r', account }).candidates[0]!;
      const spent: bigint[] = [];
      for (const status of ['failed', 'cancelled'] as const) {
        const h = await ledger.authorize(account, cand, 250);
        const r = await ledger.settle(h, { requestId: `cut-${status}`, inputTokens: 12, outputTokens: 5, now: NOW, status });
        expect(r.receipt.status).toBe(status);
        spent.push(r.receipt.total);
        // A second outcome for the same request (a retry of the settle, a late cancel) charges nothing more.
        await expectCode(ledger.settle(h, { requestId: `cut-${status}`, inputTokens: 12, outputTokens: 5, now: NOW, status }), 'HOLD_UNKNOWN');
      }
      const total = spent.reduce((x, y) => x + y, 0n);
      expect((await ledger.account(account.id)).balance).toBe(1_000_000n - total);
      expect(await ledger.available(account.id)).toBe(1_000_000n - total);
      expect(await db.receiptRows()).toBe(2);
      await db.audit();
    } finally {
      await ledger.close();
    }
  });

  run("a postpaid offer's worker credit is honoured across instances (WORKER_CREDIT_LIMIT)", async () => {
    const db = await backend.fresh('worker_credit');
    const [a, b] = [await db.open('a'), await db.open('b')];
    const market = await offers();
    try {
      const rich = (await a.createAccount({ currency: 'USD', prepaid: 100_000_000n }, NOW)).account;
      const cand = market.route({ ...body, max_tokens: 5000, messages: [{ role: 'user', content: 'x'.repeat(5000) }], payment: { terms: ['postpaid'] } }, { now: NOW, requestId: 'r', account: rich }).candidates[0]!;
      expect(cand.offer.workerId).toBe('w2');
      const h = await a.authorize(rich, cand, 250);
      await a.settle(h, { requestId: 'r', inputTokens: 5000, outputTokens: 5000, now: NOW }); // owes w2 30_000
      expect(await b.workerOutstanding('w2', 'USD')).toBe(30_000n);
      await expectCode(b.authorize(rich, cand, 250), 'WORKER_CREDIT_LIMIT');
      await b.payWorker('w2', 'USD', 30_000n, NOW);
      await b.release(await b.authorize(rich, cand, 250));
    } finally {
      await a.close();
      await b.close();
    }
  });

  run('200 concurrent authorizations from 4 instances against an account covering 50: exactly 50 pass, debits = receipts = balance change', async () => {
    const db = await backend.fresh('overspend');
    const ledgers = await Promise.all(['r0', 'r1', 'r2', 'r3'].map((c) => db.open(c)));
    const market = await offers();
    try {
      const unit = 10_000n;
      const opening = 50n * unit;
      const { account } = await ledgers[0]!.createAccount({ currency: 'USD', prepaid: opening }, NOW);
      const cand = { ...market.route(body, { now: NOW, requestId: 'r', account }).candidates[0]!, maxCost: unit };
      const tries = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => ledgers[i % 4]!.authorize(account, cand, 250).then((h) => [ledgers[i % 4]!, h] as const)));
      const held = tries.filter((t) => t.status === 'fulfilled').map((t) => (t as PromiseFulfilledResult<readonly [Ledger, Hold]>).value);
      const refused = tries.filter((t) => t.status === 'rejected').map((t) => ((t as PromiseRejectedResult).reason as { code?: string }).code);
      expect(held).toHaveLength(50);
      expect(refused).toEqual(Array(150).fill('PAYMENT_INSUFFICIENT_FUNDS'));
      expect(await ledgers[1]!.available(account.id)).toBe(0n);
      const receipts = await settleAll(held, 'burst');
      const spent = receipts.reduce((s, r) => s + r.receipt.total, 0n);
      expect(spent).toBeGreaterThan(0n);
      expect((await ledgers[2]!.account(account.id)).balance).toBe(opening - spent);
      expect(await ledgers[3]!.available(account.id)).toBe(opening - spent);
      expect(await db.receiptRows()).toBe(50);
      await chainsVerify(receipts);
      await db.audit();
    } finally {
      await Promise.all(ledgers.map((l) => l.close()));
    }
  });

  run('statements from two instances: every receipt on its account and worker lines, postpaid accruing until its period ends, payouts netted', async () => {
    const db = await backend.fresh('statements');
    const [a, b] = [await db.open('a'), await db.open('b')];
    const market = await offers();
    try {
      const { account } = await a.createAccount({ currency: 'USD', prepaid: 100_000_000n }, NOW);
      await b.deposit(account.id, 1_000n, NOW);
      const route = (id: string, extra: object = {}) => market.route({ ...body, ...extra }, { now: NOW, requestId: id, account }).candidates[0]!;
      const r1 = await a.settle(await a.authorize(account, route('s1'), 250), { requestId: 's1', inputTokens: 5, outputTokens: 500, now: NOW });
      const r2 = await b.settle(await b.authorize(account, route('s2', { payment: { terms: ['postpaid'] } }), 250), { requestId: 's2', inputTokens: 5, outputTokens: 500, now: NOW });
      await a.payWorker('w2', 'USD', 1_000n, NOW);
      const { source, done } = await db.statements();
      try {
        const s = accountStatement(source, account.id);
        expect([s.opening, s.deposits, s.requests, s.spent, s.fees]).toEqual([100_000_000n, 1_000n, 2, r1.receipt.total + r2.receipt.total, r1.receipt.fee + r2.receipt.fee]);
        expect(s.account.balance).toBe(100_001_000n - s.spent);
        expect(s.lines.map((l) => [l.requestId, l.workerId, l.terms]).sort()).toEqual([['s1', 'w1', 'per-request'], ['s2', 'w2', 'postpaid']]);
        const w2 = r2.receipt.workerCost;
        expect(workerStatement(source, 'w2', NOW).totals).toEqual([{ currency: 'USD', dueNow: 0n, accruing: w2, paid: 1_000n, balance: -1_000n }]);
        expect(workerStatement(source, 'w2', NOW + 3_600_000).totals).toEqual([{ currency: 'USD', dueNow: w2, accruing: 0n, paid: 1_000n, balance: w2 - 1_000n }]);
        expect(workerStatement(source, 'w1', NOW).rows).toEqual([{ currency: 'USD', terms: 'per-request', requests: 1, inputTokens: 5, outputTokens: 500, earned: r1.receipt.workerCost, dueNow: r1.receipt.workerCost, accruing: 0n }]);
        expect(() => source.account('nobody')).toThrow(expect.objectContaining({ code: 'ACCOUNT_UNKNOWN' }));
      } finally {
        await done();
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  run('settles that arrive during a commit are committed together, and each resolves only once durable', async () => {
    const db = await backend.fresh('group');
    const ledger = await db.open('g');
    const market = await offers();
    try {
      const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 100_000_000n }, NOW);
      const cand = market.route(body, { now: NOW, requestId: 'r', account }).candidates[0]!;
      const holds = await Promise.all(Array.from({ length: 40 }, () => ledger.authorize(account, cand, 250)));
      const durable: number[] = [];
      const receipts = await Promise.all(holds.map((h, i) => ledger.settle(h, { requestId: `g${i}`, inputTokens: i, outputTokens: i, now: NOW + i }).then(async (r) => {
        durable.push(await db.receiptRows());
        return r;
      })));
      // Every settle saw its own receipt committed when it resolved (read through another connection).
      for (const n of durable) expect(n).toBeGreaterThanOrEqual(1);
      expect(Math.min(...durable)).toBeGreaterThanOrEqual(receipts.map((r) => r.receipt.seq).sort((a, b) => a - b)[0]!);
      expect(ledger.commitStats.receipts).toBe(40);
      expect(ledger.commitStats.commits).toBeLessThan(40);
      expect(ledger.head.seq).toBe(40);
      await chainsVerify(receipts);
    } finally {
      await ledger.close();
    }
  });

  run("a crashed instance's hold is reaped after its expiry, and not before", async () => {
    const db = await backend.fresh('reap');
    let t = NOW;
    const clock = () => t;
    const crashed = await db.open('crashed', { now: clock, holdTtlMs: 60_000 });
    const market = await offers();
    const { account } = await crashed.createAccount({ currency: 'USD', prepaid: 5_000n }, NOW);
    const cand = market.route(body, { now: NOW, requestId: 'r', account }).candidates[0]!;
    await crashed.authorize(account, cand, 250);
    await crashed.authorize(account, cand, 250);
    await crashed.close(); // gone without releasing
    const survivor = await db.open('survivor', { now: clock, holdTtlMs: 60_000 });
    try {
      expect(await survivor.available(account.id)).toBe(5_000n - 2n * cand.maxCost);
      await expectCode(survivor.authorize(account, cand, 250), 'PAYMENT_INSUFFICIENT_FUNDS');
      t += 59_999;
      expect(await survivor.reapExpired(t)).toBe(0);
      t += 1;
      // The refused hold reaps the expired ones of its account and then fits.
      const h = await survivor.authorize(account, cand, 250);
      expect(await survivor.available(account.id)).toBe(5_000n - cand.maxCost);
      await survivor.release(h);
      expect(await survivor.available(account.id)).toBe(5_000n);
    } finally {
      await survivor.close();
    }
  });

  run('a second writer on one chain is refused (LEDGER_CHAIN_CONFLICT) and continues from the stored head', async () => {
    const db = await backend.fresh('conflict');
    const a = await db.open('same');
    const b = await db.open('same');
    const market = await offers();
    try {
      const { account } = await a.createAccount({ currency: 'USD', prepaid: 100_000_000n }, NOW);
      const cand = market.route(body, { now: NOW, requestId: 'r', account }).candidates[0]!;
      const r1 = await a.settle(await a.authorize(account, cand, 250), { requestId: 'a1', inputTokens: 1, outputTokens: 1, now: NOW });
      const hb = await b.authorize(account, cand, 250);
      await expectCode(b.settle(hb, { requestId: 'b1', inputTokens: 1, outputTokens: 1, now: NOW }), 'LEDGER_CHAIN_CONFLICT');
      const r2 = await b.settle(hb, { requestId: 'b1', inputTokens: 1, outputTokens: 1, now: NOW });
      expect(r2.receipt.seq).toBe(2);
      expect(r2.receipt.prev).toEqual(r1.hash);
      await db.audit();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('ledger on PostgreSQL: what the host sees, and faults', () => {
  const run = (name: string, fn: () => Promise<void>, timeout = 60_000) =>
    it(name, async (ctx) => {
      if (!server) return ctx.skip();
      await fn();
    }, timeout);

  run('a dump of the database holds no account id, API key, model, worker, request id or prompt byte in clear', async () => {
    const url = await server!.database('dump');
    const ledgerKey = randomBytes(32);
    const ledger = await PostgresLedger.open(url, { signer: generateEnclaveReceiptKey(), chainId: 'd', ledgerKey });
    const market = await offers();
    const { account, apiKey } = await ledger.createAccount({ currency: 'USD', prepaid: 10_000_000n }, NOW);
    const sel = market.route(body, { now: NOW, requestId: 'r', account });
    const receipts = await settleAll(await Promise.all([0, 1, 2].map(async () => [ledger, await ledger.authorize(account, sel.candidates[0]!, 250)] as const)), 'request-id-secret');
    await ledger.payWorker('w1', 'USD', 10n, NOW);
    await ledger.close();
    const dump = server!.dump(url);
    expect(dump).toContain('COPY public.gm_receipts');
    const hexOf = (s: string) => Buffer.from(s).toString('hex');
    for (const secret of [account.id, apiKey, 'dev-model', 'w1', 'request-id-secret', body.messages[0]!.content, 'must never', 'USD']) {
      expect(dump).not.toContain(secret);
      // As bytes too (bytea is dumped as hex); too short a string could turn up in random hex by chance.
      if (secret.length >= 8) expect(dump).not.toContain(hexOf(secret));
    }
    // Not even the receipts' own bytes or hashes, which a client holds and could match.
    for (const r of receipts) {
      expect(dump).not.toContain(Buffer.from(r.hash).toString('hex'));
      expect(dump).not.toContain(Buffer.from(r.signed.subarray(0, 24)).toString('hex'));
    }
  });

  run('a replica with another ledger key, or none, is refused with a coded error', async () => {
    const url = await server!.database('keys');
    const ledgerKey = randomBytes(32);
    await (await PostgresLedger.open(url, { ledgerKey })).close();
    await expectCode(PostgresLedger.open(url, { ledgerKey: randomBytes(32) }), 'LEDGER_KEY_MISMATCH');
    await expectCode(PostgresLedger.open(url, {}), 'LEDGER_KEY_REQUIRED');
    await (await PostgresLedger.open(url, { ledgerKey })).close();
  });

  run('a PostgreSQL restart gives LEDGER_UNAVAILABLE (503-class), and the ledger resumes after it', async () => {
    const url = await server!.database('restart');
    const ledger = await PostgresLedger.open(url, { signer: generateEnclaveReceiptKey(), chainId: 'x', ledgerKey: randomBytes(32) });
    const market = await offers();
    try {
      const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 10_000_000n }, NOW);
      const cand = market.route(body, { now: NOW, requestId: 'r', account }).candidates[0]!;
      const before = await ledger.settle(await ledger.authorize(account, cand, 250), { requestId: 'x1', inputTokens: 1, outputTokens: 1, now: NOW });
      const held = await ledger.authorize(account, cand, 250);
      await server!.stop();
      for (const p of [ledger.account(account.id), ledger.authorize(account, cand, 250), ledger.settle(held, { requestId: 'x2', inputTokens: 1, outputTokens: 1, now: NOW })]) {
        const e = await p.then(() => undefined, (err: unknown) => err as { code?: string; kind?: string });
        expect(e).toMatchObject({ code: 'LEDGER_UNAVAILABLE', kind: 'unavailable' });
      }
      await server!.start();
      const after = await ledger.settle(held, { requestId: 'x2', inputTokens: 1, outputTokens: 1, now: NOW });
      expect(after.receipt.seq).toBe(2);
      expect(after.receipt.prev).toEqual(before.hash);
      expect((await ledger.account(account.id)).balance).toBe(10_000_000n - before.receipt.total - after.receipt.total);
    } finally {
      await ledger.close();
    }
  });

  run('gm receipts verify --ledger postgres://... --ledger-key-file verifies every chain and debits = receipts, and catches a moved sealed value', async () => {
    const url = await server!.database('audit');
    const ledgerKey = randomBytes(32);
    const keyFile = join(dir, 'ledger.key');
    writeFileSync(keyFile, hex(ledgerKey), { mode: 0o600 });
    const signers = [generateEnclaveReceiptKey(), generateEnclaveReceiptKey()];
    const replicas = await Promise.all(signers.map((signer, i) => PostgresLedger.open(url, { signer, chainId: `replica-${i}`, ledgerKey })));
    const market = await offers();
    const { account } = await replicas[0]!.createAccount({ currency: 'USD', prepaid: 10_000_000n }, NOW);
    const cand = market.route(body, { now: NOW, requestId: 'r', account }).candidates[0]!;
    await settleAll(await Promise.all(Array.from({ length: 6 }, async (_, i) => [replicas[i % 2]!, await replicas[i % 2]!.authorize(account, cand, 250)] as const)), 'audit');
    await replicas[1]!.deposit(account.id, 1_000n, NOW);
    await Promise.all(replicas.map((r) => r.close()));
    const gm = async (...args: string[]) => {
      const sink = { out: '' };
      const code = await main(['receipts', 'verify', ...args], { ...nodeIo, out: (t: string) => void (sink.out += t), err: () => undefined });
      return { code, out: sink.out };
    };
    const keys = signers.flatMap((s) => ['--key', hex(s.publicKey)]);
    const ok = await gm('--ledger', url, '--ledger-key-file', keyFile, ...keys);
    expect(ok.out).toContain('PASS  ledger.audit');
    expect(ok.out).toContain('in 2 chains');
    expect(ok.code).toBe(0);
    expect((await gm('--ledger', url, ...keys)).code).toBe(2);
    const wrong = join(dir, 'wrong.key');
    writeFileSync(wrong, hex(randomBytes(32)), { mode: 0o600 });
    expect((await gm('--ledger', url, '--ledger-key-file', wrong)).out).toContain('LEDGER_KEY_MISMATCH');
    // The host swaps two sealed receipt bodies between rows (dropping the trigger first, as it can).
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('DROP TRIGGER gm_receipts_append_only ON gm_receipts');
    await c.query("UPDATE gm_receipts a SET body = b.body FROM gm_receipts b WHERE a.chain = 'replica-0' AND a.seq = 1 AND b.chain = 'replica-0' AND b.seq = 2");
    await c.end();
    const bad = await gm('--ledger', url, '--ledger-key-file', keyFile, ...keys);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain('LEDGER_COLUMN_AUTH');
  });

  run('gm receipts account create, deposit and pay-worker on a PostgreSQL ledger with the ledger key; an audit then passes with the credit key pinned', async () => {
    const url = await server!.database('accounts_cli');
    const ledgerKey = randomBytes(32);
    await (await PostgresLedger.open(url, { ledgerKey })).close();
    const keyFile = join(dir, 'accounts.key');
    writeFileSync(keyFile, hex(ledgerKey), { mode: 0o600 });
    const seed = new Uint8Array(32).fill(9);
    const creditFile = join(dir, 'credit.key');
    writeFileSync(creditFile, hex(seed), { mode: 0o600 });
    const gm = async (...args: string[]) => {
      const sink = { out: '' };
      const code = await main(['receipts', ...args], { ...nodeIo, out: (t: string) => void (sink.out += t), err: () => undefined });
      return { code, out: sink.out };
    };
    const created = await gm('account', 'create', '--ledger', url, '--ledger-key-file', keyFile, '--credit-key-file', creditFile, '--prepaid', '2.50', '--json');
    expect(created.code).toBe(0);
    const { account, apiKey } = JSON.parse(created.out) as { account: string; apiKey: string };
    expect((await gm('account', 'deposit', '--ledger', url, '--ledger-key-file', keyFile, '--credit-key-file', creditFile, '--account', account, '--amount', '1.25')).code).toBe(0);
    expect((await gm('account', 'pay-worker', '--ledger', url, '--ledger-key-file', keyFile, '--worker', 'w1', '--currency', 'USD', '--amount', '0.01')).code).toBe(0);
    expect((await gm('account', 'create', '--ledger', url, '--credit-key-file', creditFile, '--prepaid', '1')).code).toBe(2);
    const l = await PostgresLedger.open(url, { ledgerKey });
    try {
      expect((await l.accountForKey(apiKey)).balance).toBe(3_750_000n);
    } finally {
      await l.close();
    }
    const { signerFromSeed } = await import('../enclave/ledger/signer.ts');
    const statement = JSON.parse((await gm('statement', '--ledger', url, '--ledger-key-file', keyFile, '--account', account, '--json')).out) as { opening: string; deposits: string; requests: number };
    expect(statement).toMatchObject({ opening: '2500000', deposits: '1250000', requests: 0 });
    const payouts = JSON.parse((await gm('statement', '--ledger', url, '--ledger-key-file', keyFile, '--worker', 'w1', '--json')).out) as { totals: unknown[] };
    expect(payouts.totals).toEqual([{ currency: 'USD', dueNow: '0', accruing: '0', paid: '10000', balance: '-10000' }]);
    expect((await gm('statement', '--ledger', url, '--account', account)).code).toBe(2);
    const audit = await gm('verify', '--ledger', url, '--ledger-key-file', keyFile, '--credit-key', hex(signerFromSeed(seed).publicKey));
    expect(audit.out).toContain('PASS  ledger.credits');
    expect(audit.code).toBe(0);
  });
});

