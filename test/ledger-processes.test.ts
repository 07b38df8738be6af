/**
 * Several processes of one enclave on one SQLite ledger file (WAL, busy_timeout; docs/design.md §6.1): 200 hold
 * attempts from 4 processes against an account covering 50 get exactly 50 holds, every other attempt the 402 code,
 * and after the settles the debits, the receipts and the balance change agree; each process's chain verifies.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEnclaveReceiptKey } from '../enclave/ledger/signer.ts';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { auditLedger } from '../enclave/ledger/statements.ts';
import { verifyLedger } from '../enclave/ledger/verify.ts';
import { NOW } from './market-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-ledger-procs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  held: number;
  refused: string[];
  total: string;
  seqs: number[];
}

describe('one SQLite ledger, several processes', () => {
  it('200 holds tried from 4 processes against an account covering 50: exactly 50 pass, debits = receipts = balance change', async () => {
    const path = join(dir, 'shared.sqlite');
    const setup = SqliteLedger.open(path, { signer: generateEnclaveReceiptKey() });
    const opening = 50n * 10_000n;
    const { apiKey, account } = await setup.createAccount({ currency: 'USD', prepaid: opening }, NOW);
    await setup.close();
    const script = join(import.meta.dirname, 'ledger-processes-child.ts');
    const children = [0, 1, 2, 3].map((i) => spawn(process.execPath, [script, path, apiKey, `p${i}`, '50'], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const lines = children.map((c) => createInterface({ input: c.stdout! })[Symbol.asyncIterator]());
    const errs = children.map((c) => {
      let e = '';
      c.stderr!.on('data', (d: Buffer) => void (e += d.toString()));
      return () => e;
    });
    for (const [i, it] of lines.entries()) {
      const first = await it.next();
      if (first.value !== 'ready') throw new Error(`child ${i} did not start: ${errs[i]!()}`);
    }
    for (const c of children) c.stdin!.write('go\n');
    for (const [i, it] of lines.entries()) if ((await it.next()).value !== 'tried') throw new Error(`child ${i} failed: ${errs[i]!()}`);
    for (const c of children) c.stdin!.end('settle\n');
    const outcomes = await Promise.all(lines.map(async (it, i) => {
      const r = await it.next();
      if (r.done) throw new Error(`child ${i} ended without a result: ${errs[i]!()}`);
      return JSON.parse(r.value) as Outcome;
    }));
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(c.exitCode) : c.once('exit', r)))));
    expect(outcomes.reduce((n, o) => n + o.held, 0)).toBe(50);
    expect(outcomes.flatMap((o) => o.refused)).toEqual(Array(150).fill('PAYMENT_INSUFFICIENT_FUNDS'));
    for (const o of outcomes) expect(o.seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: o.held }, (_, i) => i + 1));
    const spent = outcomes.reduce((s, o) => s + BigInt(o.total), 0n);
    const check = SqliteLedger.open(path, {});
    try {
      expect((await check.account(account.id)).balance).toBe(opening - spent);
      expect(await check.available(account.id)).toBe(opening - spent);
      expect(auditLedger(check).problems).toEqual([]);
    } finally {
      await check.close();
    }
    const report = await verifyLedger(path);
    expect(report.verified).toBe(true);
  }, 60_000);
});
