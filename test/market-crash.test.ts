/**
 * Crash safety of the ledger: a crash (child process killed with SIGKILL during a burst of requests)
 * leaves a ledger whose receipts and balances agree exactly. A child appends as fast as it can and reports every
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
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { auditLedger } from '../enclave/ledger/statements.ts';
import { verifyLedger } from '../enclave/ledger/verify.ts';
import { NOW } from './market-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const child = fileURLToPath(new URL('./market-crash-child.ts', import.meta.url));

/** Runs the child until it has reported `target` more commits (or its first line for target 0), then SIGKILLs it. */
function burstThenKill(path: string, apiKey: string, target: number, script = child): Promise<{ lastReported: number; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [script, path, apiKey], { stdio: ['ignore', 'pipe', 'pipe'] });
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
        last = Math.max(last, Number(l)); // concurrent requests may report out of order
        if (++seen >= target && !p.killed) p.kill('SIGKILL');
      }
    });
    p.on('error', reject);
    p.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve({ lastReported: last, signal }) : reject(new Error(`child exited ${code}: ${stderr}`))));
  });
}

/** After a kill: every reported receipt is there, and receipts, debits and the balance agree to the micro-unit. */
async function auditAfterKill(path: string, accountId: string, opening: bigint, reported: number): Promise<number> {
  const ledger = SqliteLedger.open(path, { signer: await generateReceiptKey() });
  try {
    // Nothing reported as committed is lost; anything beyond it was committed whole or not at all.
    expect(ledger.head.seq).toBeGreaterThanOrEqual(reported);
    const audit = auditLedger(ledger);
    expect(audit.problems).toEqual([]);
    const st = ledger.db.prepare("SELECT COALESCE(SUM(total), 0) AS t FROM receipts WHERE account = ?");
    st.setReadBigInts(true);
    const { t } = st.get(accountId) as { t: bigint };
    expect((await ledger.account(accountId)).balance).toBe(opening - t);
    const d = ledger.db.prepare("SELECT (SELECT COUNT(*) FROM entries WHERE kind = 'debit') AS debits, (SELECT COUNT(*) FROM receipts) AS receipts");
    d.setReadBigInts(true);
    const { debits, receipts } = d.get() as { debits: bigint; receipts: bigint };
    expect(debits).toBe(receipts); // one debit per receipt, in every account
    return ledger.head.seq;
  } finally {
    ledger.close();
  }
}

async function crashRounds(file: string, targets: readonly number[], script?: string): Promise<number> {
  const path = join(dir, file);
  const opening = 9_000_000_000n;
  const setup = SqliteLedger.open(path, { signer: await generateReceiptKey() });
  const { apiKey, account } = await setup.createAccount({ currency: 'USD', prepaid: opening }, NOW);
  setup.close();
  let reported = 0;
  for (const target of targets) {
    const { lastReported, signal } = await burstThenKill(path, apiKey, target, script);
    expect(signal).toBe('SIGKILL');
    reported = await auditAfterKill(path, account.id, opening, Math.max(reported, lastReported));
  }
  const report = await verifyLedger(path);
  expect(report.checks.filter((c) => c.status === 'fail')).toEqual([]);
  expect(report.verified).toBe(true);
  return reported;
}

it('SIGKILL during a burst of appends leaves receipts, debits and balances in exact agreement', async () => {
  expect(await crashRounds('crash.sqlite', [29, 3, 47, 1])).toBeGreaterThanOrEqual(29 + 3 + 47 + 1);
}, 60_000);

it('SIGKILL of the whole stack during a burst of concurrent encrypted requests leaves the ledger exact', async () => {
  // 8 requests in flight through enclave → worker → dev-model, each settled into the file ledger as it ends.
  const stackChild = fileURLToPath(new URL('./market-crash-stack-child.ts', import.meta.url));
  expect(await crashRounds('crash-stack.sqlite', [12, 1, 25], stackChild)).toBeGreaterThanOrEqual(12 + 1 + 25);
}, 120_000);
