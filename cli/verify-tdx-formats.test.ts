/** `gm verify tdx` on quotes as real tools write them, and without collateral. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { configError } from '../attestation/errors.ts';
import { TRUST_DIR, hasTrustAnchors, vectorPath } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';

const local = (rel: string) => vectorPath(`tdx/teekit/${rel}`);
const NOW = ['--now', '2025-09-01T00:00:00Z'];

function io(): Io & { stdout: string; stderr: string } {
  const o = {
    stdout: '', stderr: '',
    out: (s: string) => void (o.stdout += s),
    err: (s: string) => void (o.stderr += s),
    readFile: async (p: string) => {
      try {
        return new Uint8Array(await readFile(p));
      } catch (e) {
        throw configError('FILE_UNREADABLE', `cannot read ${p}`, { cause: e });
      }
    },
    env: { GM_TRUST_DIR: TRUST_DIR },
  };
  return o;
}

const SIGNATURE_ROWS = ['tdx.pck.chain', 'tdx.qe.signature', 'tdx.qe.reportData', 'tdx.quote.signature'];

describe.skipIf(!hasTrustAnchors)('gm verify tdx: encodings and no collateral (real quotes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gm-tdx-fmt-'));
  const allowUnknown = join(dir, 'allow-unknown.json');
  writeFileSync(allowUnknown, JSON.stringify({ allowUnknownTcbStatus: true }));

  it('without collateral and the default policy: exit 1, every signature row PASS, TCB status SKIP "no collateral"', async () => {
    for (const [f, enc] of [['tdx-v4-gcp.json', 'JSON {"tdx":{"quote"}}'], ['tdx-v4-phala.hex', 'hex with 0x prefix'], ['tdx-v4-tappd.hex', 'TDX quote v4, hex'], ['tdx-v4-azure', 'base64']] as const) {
      const o = io();
      expect(await main(['verify', 'tdx', '--quote', local(f), ...NOW], o), f).toBe(1);
      expect(o.stdout).toMatch(/^Intel TDX quote: REJECTED/);
      expect(o.stdout).toContain(enc);
      for (const id of SIGNATURE_ROWS) expect(o.stdout).toMatch(new RegExp(`PASS +${id.replace(/\./g, '\\.')} `));
      expect(o.stdout).toMatch(/SKIP +tdx\.tcb\.status .*\n.*no collateral: TCB status unknown/);
      expect(o.stdout).toMatch(/FAIL +tdx\.policy\.tcbStatus/);
      expect(o.stderr).toContain('TDX_POLICY_VIOLATION');
    }
  });

  it('a policy allowing unknown TCB status accepts it (exit 0); --json says Unknown and names the input format', async () => {
    const o = io();
    expect(await main(['verify', 'tdx', '--quote', local('tdx-v4-gcp.json'), ...NOW, '--policy', allowUnknown, '--json'], o)).toBe(0);
    const j = JSON.parse(o.stdout) as { verified: boolean; checks: { id: string; status: string; detail?: string }[]; claims: { tcbStatus: string; fmspc: string } };
    expect(j.verified).toBe(true);
    expect(j.claims.tcbStatus).toBe('Unknown');
    expect(j.claims.fmspc).toBe('00806f050000');
    expect(j.checks[0]).toMatchObject({ id: 'tdx.input', detail: 'TDX quote v4, base64 in JSON {"tdx":{"quote"}} (Intel Trust Authority CLI)' });
    expect(j.checks.find((c) => c.id === 'tdx.revocation.pck')?.status).toBe('skip');
  });

  it('no collateral still checks signatures: a flipped body byte fails the quote signature (exit 1)', async () => {
    const q = Buffer.from(readFileSync(local('tdx-v4-tappd.hex'), 'utf8').trim(), 'hex');
    q[48 + 100]! ^= 1;
    writeFileSync(join(dir, 'bad.hex'), hex(q));
    const o = io();
    expect(await main(['verify', 'tdx', '--quote', join(dir, 'bad.hex'), ...NOW, '--policy', allowUnknown], o)).toBe(1);
    expect(o.stdout).toMatch(/FAIL +tdx\.quote\.signature/);
    expect(o.stderr).toContain('TDX_QUOTE_SIGNATURE');
  });

  it('a dstack GetQuote response (hex quote in JSON) is read and stated', async () => {
    const q = readFileSync(local('tdx-v4-tappd.hex'), 'utf8').trim();
    writeFileSync(join(dir, 'dstack.json'), JSON.stringify({ quote: q, event_log: '[]', report_data: '' }));
    const o = io();
    expect(await main(['verify', 'tdx', '--quote', join(dir, 'dstack.json'), ...NOW, '--policy', allowUnknown], o)).toBe(0);
    expect(o.stdout).toContain('hex in JSON {"quote","event_log"} (dstack)');
  });

  it('an unrecognisable file is a usage error (exit 2) naming the formats tried, not a quote version error', async () => {
    writeFileSync(join(dir, 'junk.txt'), '0x7830deadbeef\n');
    const o = io();
    expect(await main(['verify', 'tdx', '--quote', join(dir, 'junk.txt'), ...NOW], o)).toBe(2);
    expect(o.stderr).toContain('EVIDENCE_FORMAT_UNKNOWN');
    expect(o.stderr).toContain('tried: raw binary, hex, hex with 0x prefix, base64');
    expect(o.stderr).not.toContain('version');
  });
});
