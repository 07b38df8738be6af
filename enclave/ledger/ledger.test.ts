import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { generateReceiptKey, verifyReceiptChain } from '../../protocol/receipt.ts';
import { expectCode, makeWorker, NOW, signedOffer } from '../../test/market-fixtures.ts';
import { createMarket } from '../market/index.ts';
import type { Hold } from './ledger.ts';
import { SqliteLedger } from './sqlite.ts';
import { accountStatement, accountStatementCsv, auditLedger, sqliteStatements, statementJson, workerStatement, workerStatementCsv } from './statements.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-ledger-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function setup(opts: { fee?: number } = {}) {
  const path = join(dir, `l${n++}.sqlite`);
  const signer = await generateReceiptKey();
  const ledger = SqliteLedger.open(path, { signer });
  const market = createMarket({ feeBasisPoints: opts.fee ?? 250 });
  const w = await makeWorker('w1');
  const p = await makeWorker('w2', { seed: 5 });
  market.book.upsertWorker(w.info);
  market.book.upsertWorker(p.info);
  await market.book.addSignedOffer(await signedOffer(w, { pricePerMInput: 1_000_000n, pricePerMOutput: 2_000_000n }), NOW);
  await market.book.addSignedOffer(await signedOffer(p, { pricePerMInput: 3_000_000n, pricePerMOutput: 3_000_000n, terms: { kind: 'postpaid', creditLimit: 40_000n, settlementPeriodSeconds: 3600 } }), NOW);
  return { path, signer, ledger, market, w, p };
}

const body = { model: 'dev-model', max_tokens: 1000, messages: [{ role: 'user', content: 'hello there' }] };

describe('ledger: accounts, holds, settle', () => {
  it('stores only a hash of the API key', async () => {
    const { ledger, path } = await setup();
    const { apiKey, account } = await ledger.createAccount({ currency: 'USD', prepaid: 1_000_000n }, NOW);
    expect((await ledger.accountForKey(apiKey)).id).toBe(account.id);
    await expectCode(ledger.accountForKey(`${apiKey}x`), 'ACCOUNT_UNKNOWN');
    await expectCode(ledger.accountForKey(undefined), 'ACCOUNT_MISSING');
    ledger.close();
    expect(readFileSync(path).includes(Buffer.from(apiKey))).toBe(false);
  });

  it('authorises before dispatch, settles exactly by the offer, and chains receipts', async () => {
    const { ledger, market, signer } = await setup();
    const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 1_000_000n }, NOW);
    const sel = market.route(body, { now: NOW, requestId: 'r1', account });
    const cand = sel.candidates[0]!;
    expect(cand.offer.workerId).toBe('w1');
    const hold = await ledger.authorize(account, cand, sel.feeBasisPoints);
    const r1 = await ledger.settle(hold, { requestId: 'r1', inputTokens: 12, outputTokens: 34, now: NOW });
    // (1_000_000·12 + 2_000_000·34) / 10^6 = 80; fee 2.5% → ceil(2) = 2
    expect([r1.receipt.workerCost, r1.receipt.fee, r1.receipt.total]).toEqual([80n, 2n, 82n]);
    expect((await ledger.account(account.id)).balance).toBe(1_000_000n - 82n);
    const hold2 = await ledger.authorize(account, cand, sel.feeBasisPoints);
    const r2 = await ledger.settle(hold2, { requestId: 'r2', inputTokens: 1, outputTokens: 1, now: NOW + 1 });
    expect(r2.receipt.prev).toEqual(r1.hash);
    expect(await verifyReceiptChain([r1.signed, r2.signed], { keys: [signer.publicKey] })).toHaveLength(2);
    await expectCode(ledger.settle(hold2, { requestId: 'r2', inputTokens: 1, outputTokens: 1, now: NOW }), 'HOLD_UNKNOWN');
  });

  it('402 codes: insufficient prepaid funds, postpaid limit, currency; holds reserve funds', async () => {
    const { ledger, market } = await setup();
    const poor = (await ledger.createAccount({ currency: 'USD', prepaid: 3_000n }, NOW)).account;
    const sel = market.route(body, { now: NOW, requestId: 'r', account: poor });
    const cand = sel.candidates[0]!;
    // max cost: input bound 11 bytes + 16 + 8 (one message) = 35 tokens at 1 µ/token, 1000 output tokens at 2 µ/token
    // = 2035, fee ceil(2.5%) = 51
    expect(cand.maxCost).toBe(2086n);
    const h = await ledger.authorize(poor, cand, sel.feeBasisPoints);
    await expectCode(async () => await ledger.authorize(poor, cand, sel.feeBasisPoints), 'PAYMENT_INSUFFICIENT_FUNDS');
    await ledger.release(h);
    await ledger.authorize(poor, cand, sel.feeBasisPoints);
    const credit = (await ledger.createAccount({ currency: 'USD', creditLimit: 1_000n }, NOW)).account;
    await expectCode(async () => await ledger.authorize(credit, cand, sel.feeBasisPoints), 'PAYMENT_CREDIT_LIMIT');
    const euro = (await ledger.createAccount({ currency: 'EUR', prepaid: 10_000_000n }, NOW)).account;
    await expectCode(async () => await ledger.authorize(euro, cand, sel.feeBasisPoints), 'PAYMENT_CURRENCY_MISMATCH');
    await expectCode(() => market.route(body, { now: NOW, requestId: 'r', account: euro }), 'NO_ELIGIBLE_OFFER');
  });

  it("a postpaid offer's credit limit to the operator is honoured (WORKER_CREDIT_LIMIT)", async () => {
    const { ledger, market } = await setup();
    const rich = (await ledger.createAccount({ currency: 'USD', prepaid: 100_000_000n }, NOW)).account;
    const sel = market.route({ ...body, max_tokens: 5000, messages: [{ role: 'user', content: 'x'.repeat(5000) }], payment: { terms: ['postpaid'] } }, { now: NOW, requestId: 'r', account: rich });
    const cand = sel.candidates[0]!;
    expect(cand.offer.workerId).toBe('w2');
    const h = await ledger.authorize(rich, cand, sel.feeBasisPoints);
    await ledger.settle(h, { requestId: 'r', inputTokens: 5000, outputTokens: 5000, now: NOW }); // owes w2 30_000
    await expectCode(async () => await ledger.authorize(rich, cand, sel.feeBasisPoints), 'WORKER_CREDIT_LIMIT');
    await ledger.payWorker('w2', 'USD', 30_000n, NOW);
    await ledger.release(await ledger.authorize(rich, cand, sel.feeBasisPoints));
  });

  it('concurrent settles are serialised into one unbroken chain', async () => {
    const { ledger, market, signer } = await setup();
    const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 100_000_000n }, NOW);
    const sel = market.route(body, { now: NOW, requestId: 'r', account });
    const holds = await Promise.all(Array.from({ length: 25 }, () => ledger.authorize(account, sel.candidates[0]!, sel.feeBasisPoints)));
    const receipts = await Promise.all(holds.map((h, i) => ledger.settle(h, { requestId: `c${i}`, inputTokens: i, outputTokens: i, now: NOW + i })));
    expect(receipts.map((r) => r.receipt.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    const ordered = [...receipts].sort((a, b) => a.receipt.seq - b.receipt.seq).map((r) => r.signed);
    expect(await verifyReceiptChain(ordered, { keys: [signer.publicKey] })).toHaveLength(25);
    expect(auditLedger(ledger).ok).toBe(true);
    expect(await ledger.available(account.id)).toBe(100_000_000n - receipts.reduce((a, r) => a + r.receipt.total, 0n));
  });

  it('is append-only at the database level', async () => {
    const { ledger, market } = await setup();
    const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 1_000_000n }, NOW);
    const sel = market.route(body, { now: NOW, requestId: 'r', account });
    await ledger.settle(await ledger.authorize(account, sel.candidates[0]!, sel.feeBasisPoints), { requestId: 'r', inputTokens: 1, outputTokens: 1, now: NOW });
    expect(() => ledger.db.exec('UPDATE receipts SET total = 0')).toThrow(/append-only/);
    expect(() => ledger.db.exec('DELETE FROM entries')).toThrow(/append-only/);
  });

  it('continues the chain across a restart with a new receipt key', async () => {
    const { ledger, market, path } = await setup();
    const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 1_000_000n }, NOW);
    const sel = market.route(body, { now: NOW, requestId: 'r', account });
    const r1 = await ledger.settle(await ledger.authorize(account, sel.candidates[0]!, 250), { requestId: 'a', inputTokens: 1, outputTokens: 1, now: NOW });
    ledger.close();
    const again = SqliteLedger.open(path, { signer: await generateReceiptKey() });
    expect(again.head).toEqual({ seq: 1, hash: r1.hash });
    const r2 = await again.settle(await again.authorize(account, sel.candidates[0]!, 250), { requestId: 'b', inputTokens: 1, outputTokens: 1, now: NOW });
    expect(r2.receipt.seq).toBe(2);
    expect(r2.receipt.prev).toEqual(r1.hash);
    expect(await again.receiptKeys()).toHaveLength(2);
    expect(auditLedger(again).ok).toBe(true);
  });
});

describe('ledger properties (fast-check)', () => {
  it('any interleaving of deposits, holds, releases and settles keeps the audit exact and prepaid funds non-negative', async () => {
    const { market, signer } = await setup();
    const sel = market.route(body, { now: NOW, requestId: 'p' });
    const cand = sel.candidates[0]!;
    const op = fc.oneof(
      fc.record({ k: fc.constant('deposit' as const), amount: fc.bigInt({ min: 1n, max: 50_000n }) }),
      fc.record({ k: fc.constant('hold' as const) }),
      fc.record({ k: fc.constant('release' as const), i: fc.nat() }),
      fc.record({ k: fc.constant('settle' as const), i: fc.nat(), tin: fc.nat(1000), tout: fc.nat(1000) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.bigInt({ min: 0n, max: 20_000n }), fc.array(op, { maxLength: 30 }), async (opening, ops) => {
        const ledger = SqliteLedger.open(':memory:', { signer });
        try {
          const { account } = await ledger.createAccount({ currency: 'USD', prepaid: opening }, NOW);
          const holds: Hold[] = [];
          let charged = 0n;
          let deposited = opening;
          for (const o of ops) {
            if (o.k === 'deposit') {
              await ledger.deposit(account.id, o.amount, NOW);
              deposited += o.amount;
            } else if (o.k === 'hold') {
              try {
                holds.push(await ledger.authorize(account, cand, sel.feeBasisPoints));
              } catch (e) {
                expect((e as { code: string }).code).toBe('PAYMENT_INSUFFICIENT_FUNDS');
              }
            } else if (holds.length > 0) {
              const h = holds.splice(o.i % holds.length, 1)[0]!;
              if (o.k === 'release') await ledger.release(h);
              else charged += (await ledger.settle(h, { requestId: 'x', inputTokens: o.tin % 19, outputTokens: o.tout % 101, now: NOW })).receipt.total;
            }
            expect(await ledger.available(account.id) >= 0n).toBe(true);
          }
          expect((await ledger.account(account.id)).balance).toBe(deposited - charged);
          expect(auditLedger(ledger).problems).toEqual([]);
        } finally {
          ledger.close();
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('ledger: no charge passes its hold or its account', () => {
  it('refuses to settle a charge above the hold (SETTLE_OVER_HOLD) and takes nothing', async () => {
    const { ledger, market } = await setup();
    const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 1_000_000n }, NOW);
    const sel = market.route(body, { now: NOW, requestId: 'r', account });
    const h = await ledger.authorize(account, sel.candidates[0]!, sel.feeBasisPoints);
    await expectCode(ledger.settle(h, { requestId: 'r', inputTokens: 1, outputTokens: 10 ** 12, now: NOW }), 'SETTLE_OVER_HOLD');
    expect((await ledger.account(account.id)).balance).toBe(1_000_000n);
    expect(ledger.head.seq).toBe(0);
  });

  it('a prepaid balance never goes below zero, whatever the caller does around the holds', async () => {
    const { ledger, market } = await setup();
    const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 5_000n }, NOW);
    const sel = market.route(body, { now: NOW, requestId: 'r', account });
    const h = await ledger.authorize(account, sel.candidates[0]!, sel.feeBasisPoints);
    // Another writer (a second process on the same file) debits the account behind this ledger's holds.
    ledger.db.prepare('UPDATE accounts SET balance = 10 WHERE id = ?').run(account.id);
    await expectCode(ledger.settle(h, { requestId: 'r', inputTokens: 10, outputTokens: 100, now: NOW }), 'PAYMENT_INSUFFICIENT_FUNDS');
    expect((await ledger.account(account.id)).balance).toBe(10n);
    expect(() => ledger.db.prepare('UPDATE accounts SET balance = balance - 11 WHERE id = ?').run(account.id)).toThrow(/credit limit/);
  });

  it('a postpaid balance never passes its credit limit', async () => {
    const { ledger } = await setup();
    const { account } = await ledger.createAccount({ currency: 'USD', creditLimit: 100n }, NOW);
    ledger.db.prepare('UPDATE accounts SET balance = -100 WHERE id = ?').run(account.id);
    expect(() => ledger.db.prepare('UPDATE accounts SET balance = -101 WHERE id = ?').run(account.id)).toThrow(/credit limit/);
  });

  it('creates the ledger file 0600 in a directory it creates 0700', async () => {
    const sub = join(dir, 'private', 'deeper');
    const path = join(sub, 'ledger.sqlite');
    const l = SqliteLedger.open(path, { signer: await generateReceiptKey() });
    await l.createAccount({ currency: 'USD', prepaid: 1n }, NOW);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    expect(statSync(sub).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'private')).mode & 0o777).toBe(0o700);
    l.close();
  });
});

describe('statements', () => {
  it('per account and per worker under its terms, as CSV and JSON', async () => {
    const { ledger, market } = await setup();
    const body = { model: 'dev-model', max_tokens: 1000, messages: [{ role: 'user', content: 'x'.repeat(1000) }] };
    const { account } = await ledger.createAccount({ currency: 'USD', prepaid: 10_000_000n }, NOW);
    const run = async (b: object, id: string, tin: number, tout: number, now: number) => {
      const sel = market.route(b, { now: NOW, requestId: id, account });
      return ledger.settle(await ledger.authorize(account, sel.candidates[0]!, sel.feeBasisPoints), { requestId: id, inputTokens: tin, outputTokens: tout, now });
    };
    await run(body, 'a', 1000, 1000, NOW); // w1 per-request: 3000 + fee 75
    await run({ ...body, payment: { terms: ['postpaid'] } }, 'b', 1000, 1000, NOW); // w2 postpaid: 6000 + 150
    await run({ ...body, payment: { terms: ['postpaid'] } }, 'c', 1000, 1000, NOW + 3_600_000); // next period
    const s = accountStatement(sqliteStatements(ledger), account.id);
    expect([s.requests, s.spent, s.fees, s.account.balance]).toEqual([3, 3075n + 6150n + 6150n, 375n, 10_000_000n - 15_375n]);
    expect(accountStatementCsv(s).split('\n')[1]).toBe(`1,${new Date(NOW).toISOString()},a,dev-model,w1,per-request,1000,1000,USD,3000,75,3075`);
    expect(JSON.parse(statementJson(s)).spent).toBe('15375');

    await ledger.payWorker('w2', 'USD', 1000n, NOW);
    const ws = workerStatement(sqliteStatements(ledger), 'w2', NOW + 3_600_000); // the first hour has ended, the second has not
    expect(ws.rows).toEqual([{ currency: 'USD', terms: 'postpaid', requests: 2, inputTokens: 2000, outputTokens: 2000, earned: 12000n, dueNow: 6000n, accruing: 6000n }]);
    expect(ws.totals).toEqual([{ currency: 'USD', dueNow: 6000n, accruing: 6000n, paid: 1000n, balance: 5000n }]);
    expect(workerStatementCsv(ws).trim().split('\n')).toEqual([
      'worker_id,currency,terms,requests,input_tokens,output_tokens,earned,due_now,accruing,paid,balance',
      'w2,USD,postpaid,2,2000,2000,12000,6000,6000,,',
      'w2,USD,total,,,,,6000,6000,1000,5000',
    ]);
    expect(workerStatement(sqliteStatements(ledger), 'w1', NOW).totals[0]!.balance).toBe(3000n);
  });
});
