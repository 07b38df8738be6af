/**
 * Crash safety of the ledger (issue 7: "a crash (child process killed with SIGKILL during a burst of requests)
 * leaves a ledger whose receipts and balances agree exactly"). A child appends as fast as it can and reports every
 * committed seq; the parent SIGKILLs it at a different point in each of several rounds, then checks that every
 * reported receipt is present, the chain verifies from seq 1 across the rounds, and the balance equals the opening
 * deposit minus the receipts' totals, to the micro-unit.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { generateReceiptKey } from '../protocol/receipt.ts';
import { Ledger } from '../enclave/ledger/ledger.ts';
import { auditLedger } from '../enclave/ledger/statements.ts';
import { verifyLedger } from '../enclave/ledger/verify.ts';
import { NOW } from './market-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const child = fileURLToPath(new URL('./market-crash-child.ts', import.meta.url));

/** Runs the child until it has reported `target` more commits (or its first line for target 0), then SIGKILLs it. */
function burstThenKill(path: string, apiKey: string, target: number): Promise<{ lastReported: number; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, path, apiKey], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    let seen = 0;
    let last = 0;
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => void (stderr += d.toString()));
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        last = Number(l);
        if (++seen >= target && !p.killed) p.kill('SIGKILL');
      }
    });
    p.on('error', reject);
    p.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve({ lastReported: last, signal }) : reject(new Error(`child exited ${code}: ${stderr}`))));
  });
}

it('SIGKILL during a burst of appends leaves receipts, debits and balances in exact agreement', async () => {
  const path = join(dir, 'crash.sqlite');
  const opening = 9_000_000_000n;
  const setup = Ledger.open(path, { signer: await generateReceiptKey() });
  const { apiKey, account } = await setup.createAccount({ currency: 'USD', prepaid: opening }, NOW);
  setup.close();

  let reported = 0;
  for (const target of [29, 3, 47, 1]) {
    const { lastReported, signal } = await burstThenKill(path, apiKey, target);
    expect(signal).toBe('SIGKILL');
    reported = Math.max(reported, lastReported);
    const ledger = Ledger.open(path, { signer: await generateReceiptKey() });
    try {
      // Nothing reported as committed is lost; anything beyond it was committed whole or not at all.
      expect(ledger.head.seq).toBeGreaterThanOrEqual(reported);
      const audit = auditLedger(ledger);
      expect(audit.problems).toEqual([]);
      const st = ledger.db.prepare("SELECT COALESCE(SUM(total), 0) AS t, COUNT(*) AS n FROM receipts WHERE account = ?");
      st.setReadBigInts(true);
      const { t, n } = st.get(account.id) as { t: bigint; n: bigint };
      expect(ledger.account(account.id).balance).toBe(opening - t);
      const d = ledger.db.prepare("SELECT COUNT(*) AS n FROM entries WHERE kind = 'debit'");
      d.setReadBigInts(true);
      expect((d.get() as { n: bigint }).n).toBe(n);
      reported = ledger.head.seq;
    } finally {
      ledger.close();
    }
  }
  const report = await verifyLedger(path);
  expect(report.checks.filter((c) => c.status === 'fail')).toEqual([]);
  expect(report.verified).toBe(true);
  expect(reported).toBeGreaterThanOrEqual(29 + 3 + 47 + 1);
}, 60_000);
