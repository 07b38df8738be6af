/**
 * `gm receipts verify --ledger` against someone with write access to the ledger file (docs/market.md "Auditing a
 * ledger"): thirteen tamperings, each made consistent wherever the file allows (append-only triggers dropped,
 * entries and balances adjusted so the old balance audit passes), each caught with its own code; the untouched
 * ledger verifies. The audit recomputes every receipt row from its signed body, checks every credit against its
 * signed record, and compares the chain with a signed head kept outside the file.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { main } from '../cli/main.ts';
import { nodeIo } from '../cli/io.ts';
import { HEAD_TYPE } from '../enclave/ledger/records.ts';
import { signerFromSeed } from '../enclave/ledger/signer.ts';
import { verifyLedger } from '../enclave/ledger/verify.ts';
import { buildLedger } from './market-ledger.ts';
import { NOW } from './market-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-tamper-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let good: string;
let headFile: string;
let key: Uint8Array;
let acctA: string;
let acctB: string;
let n = 0;

beforeAll(async () => {
  good = join(dir, 'good.sqlite');
  const b = await buildLedger(good, 4);
  key = b.receiptKey;
  acctA = b.account.id;
  const second = await b.ledger.createAccount({ currency: 'USD', prepaid: 50_000n }, NOW);
  acctB = second.account.id;
  await b.ledger.deposit(acctB, 1_000n, NOW + 10);
  const h = await b.ledger.signedHead(NOW + 100);
  expect(h.seq).toBe(4);
  headFile = join(dir, 'head.json');
  writeFileSync(headFile, JSON.stringify({ type: HEAD_TYPE, v: 1, head: Buffer.from(h.signed).toString('base64url') }));
  b.ledger.close();
});

/** A copy of the good ledger changed by `sql` as an attacker would: triggers gone, several statements at once. */
function tampered(sql: string): string {
  const path = join(dir, `t${n++}.sqlite`);
  copyFileSync(good, path);
  const db = new DatabaseSync(path);
  db.exec('PRAGMA foreign_keys = OFF');
  for (const t of db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").all() as { name: string }[]) db.exec(`DROP TRIGGER ${t.name}`);
  db.exec(sql);
  db.close();
  return path;
}

async function failure(path: string, withHead = true): Promise<{ check: string; code: string } | undefined> {
  try {
    const r = await verifyLedger(path, [key], withHead ? { head: new Uint8Array(readFileSync(headFile)) } : {});
    return r.verified ? undefined : { check: '?', code: '?' };
  } catch (e) {
    const rep = (e as { report?: { checks: { id: string; status: string; code?: string }[] } }).report;
    const bad = rep?.checks.find((c) => c.status === 'fail');
    return { check: bad?.id ?? '?', code: (e as { code?: string }).code ?? '?' };
  }
}

/** The SQL that keeps the balance audit quiet after a receipt's total moves by `delta` for `account`. */
const rebalance = (account: string, seq: number, delta: string) =>
  `UPDATE entries SET amount = amount - (${delta}) WHERE receipt_seq = ${seq}; UPDATE accounts SET balance = balance - (${delta}) WHERE id = '${account}';`;

const CASES: { name: string; sql: () => string; check: string; code: string }[] = [
  { name: 'a signed receipt byte flipped', sql: () => "UPDATE receipts SET signed = CAST(substr(signed, 1, 40) || X'FF' || substr(signed, 42) AS BLOB) WHERE seq = 2", check: 'receipts.decode+signature', code: 'RECEIPT_SIGNATURE' },
  { name: 'a balance raised with no entry', sql: () => `UPDATE accounts SET balance = balance + 1000 WHERE id = '${acctA}'`, check: 'ledger.audit', code: 'LEDGER_AUDIT' },
  { name: 'a receipt in the middle deleted with its debit, the balance restored', sql: () => `UPDATE accounts SET balance = balance - (SELECT amount FROM entries WHERE receipt_seq = 2) WHERE id = '${acctA}'; DELETE FROM entries WHERE receipt_seq = 2; DELETE FROM receipts WHERE seq = 2;`, check: 'receipts.chain', code: 'RECEIPT_CHAIN_BROKEN' },
  { name: 'a debit lowered with the balance', sql: () => `UPDATE entries SET amount = amount + 1 WHERE receipt_seq = 3; UPDATE accounts SET balance = balance + 1 WHERE id = '${acctA}';`, check: 'ledger.audit', code: 'LEDGER_AUDIT' },
  { name: "a receipt's offer removed", sql: () => 'DELETE FROM offers', check: 'receipts.offer', code: 'RECEIPT_OFFER_MISSING' },
  { name: 'a total lowered with its debit and the balance', sql: () => `UPDATE receipts SET total = total - 1 WHERE seq = 1; ${rebalance(acctA, 1, '-1')}`, check: 'ledger.rows', code: 'RECEIPT_ROW_MISMATCH' },
  {
    name: 'a receipt moved to another account with its debit and both balances',
    sql: () => `UPDATE accounts SET balance = balance - (SELECT amount FROM entries WHERE receipt_seq = 1) WHERE id = '${acctA}'; UPDATE accounts SET balance = balance + (SELECT amount FROM entries WHERE receipt_seq = 1) WHERE id = '${acctB}'; UPDATE entries SET account = '${acctB}' WHERE receipt_seq = 1; UPDATE receipts SET account = '${acctB}' WHERE seq = 1;`,
    check: 'ledger.rows',
    code: 'RECEIPT_ROW_MISMATCH',
  },
  { name: "a receipt's worker id replaced", sql: () => "UPDATE receipts SET worker_id = 'worker-thief' WHERE seq = 2", check: 'ledger.rows', code: 'RECEIPT_ROW_MISMATCH' },
  { name: 'input tokens inflated', sql: () => 'UPDATE receipts SET input_tokens = input_tokens * 100 WHERE seq = 3', check: 'ledger.rows', code: 'RECEIPT_ROW_MISMATCH' },
  { name: 'output tokens inflated', sql: () => 'UPDATE receipts SET output_tokens = output_tokens * 100 WHERE seq = 4', check: 'ledger.rows', code: 'RECEIPT_ROW_MISMATCH' },
  { name: 'a forged deposit with its balance', sql: () => `INSERT INTO entries (account, kind, amount, receipt_seq, at) VALUES ('${acctA}', 'deposit', 1000000, NULL, ${NOW}); UPDATE accounts SET balance = balance + 1000000 WHERE id = '${acctA}';`, check: 'ledger.credits', code: 'CREDIT_UNSIGNED' },
  { name: 'the last receipt deleted with its debit, the balance restored', sql: () => `UPDATE accounts SET balance = balance - (SELECT amount FROM entries WHERE receipt_seq = 4) WHERE id = '${acctA}'; DELETE FROM entries WHERE receipt_seq = 4; DELETE FROM receipts WHERE seq = 4;`, check: 'ledger.head', code: 'LEDGER_ROLLBACK' },
  { name: "an account's API key hash replaced", sql: () => `UPDATE accounts SET key_hash = randomblob(32) WHERE id = '${acctB}'`, check: 'ledger.credits', code: 'ACCOUNT_KEY_MISMATCH' },
];

describe('gm receipts verify --ledger catches every tampering', () => {
  it('the untouched ledger verifies, head and credits included', async () => {
    expect(await failure(good)).toBeUndefined();
  });

  it.each(CASES)('$name → $check $code', async ({ sql, check, code }) => {
    expect(await failure(tampered(sql()))).toEqual({ check, code });
  });

  it('a deposit replayed with the signed record of another is caught', async () => {
    const replay = tampered(`INSERT INTO entries (account, kind, amount, receipt_seq, at) SELECT account, kind, amount, NULL, at FROM entries WHERE kind = 'deposit'; INSERT INTO credits (entry_id, signed) SELECT (SELECT MAX(id) FROM entries), signed FROM credits WHERE entry_id = (SELECT id FROM entries WHERE kind = 'deposit' ORDER BY id LIMIT 1); UPDATE accounts SET balance = balance + 1000 WHERE id = '${acctB}';`);
    expect(await failure(replay)).toEqual({ check: 'ledger.credits', code: 'CREDIT_REPLAYED' });
  });

  it('through the command: --head FILE and --credit-key; account commands sign with the operator credit key', async () => {
    const io = (sink: { out: string }) => ({ ...nodeIo, out: (s: string) => void (sink.out += s), err: () => undefined });
    const o1 = { out: '' };
    expect(await main(['receipts', 'verify', '--ledger', good, '--key', hex(key), '--head', headFile], io(o1))).toBe(0);
    expect(o1.out).toContain('PASS  ledger.head');
    const o2 = { out: '' };
    expect(await main(['receipts', 'verify', '--ledger', tampered(CASES[11]!.sql()), '--key', hex(key), '--head', headFile], io(o2))).toBe(1);
    expect(o2.out).toContain('LEDGER_ROLLBACK');

    const seed = new Uint8Array(32).fill(7);
    const keyFile = join(dir, 'credit.key');
    writeFileSync(keyFile, hex(seed), { mode: 0o600 });
    const path = join(dir, 'cli.sqlite');
    const o3 = { out: '' };
    expect(await main(['receipts', 'account', 'create', '--ledger', path, '--credit-key-file', keyFile, '--prepaid', '1'], io(o3))).toBe(0);
    const id = /account (acct_[0-9a-f]{16})/.exec(o3.out)![1]!;
    expect(await main(['receipts', 'account', 'deposit', '--ledger', path, '--credit-key-file', keyFile, '--account', id, '--amount', '2'], io({ out: '' }))).toBe(0);
    const creditKey = hex(signerFromSeed(seed).publicKey);
    expect(await main(['receipts', 'verify', '--ledger', path, '--credit-key', creditKey], io({ out: '' }))).toBe(0);
    expect(await main(['receipts', 'verify', '--ledger', path, '--credit-key', hex(new Uint8Array(32).fill(1))], io({ out: '' }))).toBe(1);
    writeFileSync(join(dir, 'exposed.key'), hex(seed), { mode: 0o644 });
    expect(await main(['receipts', 'account', 'deposit', '--ledger', path, '--credit-key-file', join(dir, 'exposed.key'), '--account', id, '--amount', '2'], io({ out: '' }))).toBe(2);
  });
});
