/** The worked example of docs/market.md runs and prints what the doc shows (keys and paths aside). */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

it('enclave/market/example.ts prints the documented routing, charges, verification and statements', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gm-example-'));
  try {
    const script = fileURLToPath(new URL('../enclave/market/example.ts', import.meta.url));
    const out = execFileSync(process.execPath, [script, '--out', dir], { encoding: 'utf8' });
    expect(out).toContain('candidates: worker-cheap (max cost 287 µUSD), worker-fast (max cost 642 µUSD)');
    expect(out).toContain('served by worker-cheap: 160 in + 300 out → worker 204 + fee 6 = 210 µUSD; receipt seq 1, prev 0000000000000000…');
    expect(out).toContain('served by worker-fast: 12 in + 200 out → worker 245 + fee 7 = 252 µUSD; receipt seq 2');
    expect(out).toContain('refused: NO_ELIGIBLE_OFFER: no eligible offer for model "llama-3.1-8b" among 2 offers: 2 over max_price');
    expect(out).toContain(`ledger ${join(dir, 'ledger.sqlite')}: VERIFIED`);
    expect(out).toContain('1,2026-01-01T00:00:00.000Z,req-1,llama-3.1-8b,worker-cheap,per-request,160,300,USD,204,6,210');
    expect(out).toContain('worker-fast,USD,total,,,,,0,245,0,0');
    expect(out).toContain('balance now 4999538 micro-USD');
    expect(out).not.toContain('FAIL');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
