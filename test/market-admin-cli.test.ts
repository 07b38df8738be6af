/** `gm receipts account` and `gm receipts statement` through the command table, against a ledger file. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../cli/main.ts';
import { nodeIo } from '../cli/io.ts';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { buildLedger } from './market-ledger.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-admin-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function gm(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { ...nodeIo, out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

describe('gm receipts account / statement', () => {
  it('creates an account (key shown once, only its hash stored), deposits exactly, and reads it back by key', async () => {
    const path = join(dir, 'a.sqlite');
    const keyFile = join(dir, 'credit.key');
    writeFileSync(keyFile, '11'.repeat(32), { mode: 0o600 });
    expect((await gm('receipts', 'account', '--ledger', path, 'create', '--currency', 'USD', '--prepaid', '5.25')).code).toBe(2);
    const r = await gm('receipts', 'account', '--ledger', path, '--credit-key-file', keyFile, 'create', '--currency', 'USD', '--prepaid', '5.25');
    expect(r.code).toBe(0);
    const id = /account (acct_[0-9a-f]{16})/.exec(r.out)![1]!;
    const key = /api key \(shown once, only its hash is kept\): (gm_\S+)/.exec(r.out)![1]!;
    expect(r.out).toContain('balance 5250000 µUSD');
    const d = await gm('receipts', 'account', '--ledger', path, '--credit-key-file', keyFile, 'deposit', '--account', id, '--amount', '0.000001');
    expect(d.out).toContain('balance 5250001 µUSD');
    const l = SqliteLedger.open(path, {});
    expect((await l.accountForKey(key)).balance).toBe(5_250_001n);
    l.close();
    expect((await gm('receipts', 'account', '--ledger', path, '--credit-key-file', keyFile, 'deposit', '--account', id, '--amount', '-1')).code).toBe(2);
    expect((await gm('receipts', 'account', '--ledger', path, '--credit-key-file', keyFile, 'create', '--prepaid', '1', '--credit-limit', '1')).code).toBe(2);
  });

  it('prints account and worker statements as CSV and JSON', async () => {
    const path = join(dir, 's.sqlite');
    const b = await buildLedger(path, 3);
    b.ledger.close();
    const csv = await gm('receipts', 'statement', '--ledger', path, '--account', b.account.id);
    expect(csv.code).toBe(0);
    const lines = csv.out.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[1]).toBe(`1,2026-01-01T00:00:00.000Z,req-0,dev-model,worker-1,per-request,10,100,USD,${b.receipts[0]!.receipt.workerCost},${b.receipts[0]!.receipt.fee},${b.receipts[0]!.receipt.total}`);
    const js = JSON.parse((await gm('receipts', 'statement', '--ledger', path, '--worker', 'worker-1', '--json')).out) as { totals: { dueNow: string }[] };
    expect(js.totals[0]!.dueNow).toBe(String(b.receipts.reduce((a, r) => a + r.receipt.workerCost, 0n)));
    expect((await gm('receipts', 'statement', '--ledger', path)).code).toBe(2);
  });
});
