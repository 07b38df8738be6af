/** `gm verify tdx` in process: exit codes, the passing report on the dcap-qvl sample, the reasoned rejection. */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { TRUST_DIR, hasVectors, vectorPath } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';
import { nodeEcdsaP256 } from './node-verifiers.ts';

function io(): Io & { stdout: string; stderr: string } {
  const o = {
    stdout: '', stderr: '',
    out: (s: string) => void (o.stdout += s),
    err: (s: string) => void (o.stderr += s),
    readFile: async (p: string) => {
      try {
        return new Uint8Array(await readFile(p));
      } catch (e) {
        const { configError } = await import('../attestation/errors.ts');
        throw configError('FILE_UNREADABLE', `cannot read ${p}`, { cause: e });
      }
    },
    env: { GM_TRUST_DIR: TRUST_DIR },
  };
  return o;
}
const v = (rel: string) => vectorPath(`tdx/${rel}`);
let chainPem = '';
if (hasVectors) chainPem = (JSON.parse(await readFile(v('dcap-qvl/tdx_quote_collateral.json'), 'utf8')) as { tcb_info_issuer_chain: string }).tcb_info_issuer_chain;

describe('nodeEcdsaP256', () => {
  it('agrees with WebCrypto on a sim quote and refuses a flipped byte and a bad point', async () => {
    const { createSimTdx } = await import('../attestation/tdx/sim.ts');
    const { parseQuote } = await import('../attestation/tdx/abi.ts');
    const sim = await createSimTdx();
    const q = parseQuote(await sim.quote());
    expect(nodeEcdsaP256(q.attestationKey, q.signedData, q.signature)).toBe(true);
    const flipped = new Uint8Array(q.signedData);
    flipped[100]! ^= 1;
    expect(nodeEcdsaP256(q.attestationKey, flipped, q.signature)).toBe(false);
    expect(() => nodeEcdsaP256(new Uint8Array(64).fill(1), q.signedData, q.signature)).toThrow();
  });
});

describe('gm verify tdx usage', () => {
  it('exits 2 without --quote, on unknown flags and on a bad --now', async () => {
    for (const argv of [['verify', 'tdx'], ['verify', 'tdx', '--quote', 'x', '--bogus'], ['verify', 'tdx', '--quote', 'x', '--collateral', 'y', '--now', 'yesterday']]) {
      const o = io();
      expect(await main(argv, o)).toBe(2);
      expect(o.stderr).toMatch(/^gm verify tdx: [^\n]+ \(see gm verify tdx --help\)\n$/);
    }
  });
});

describe.skipIf(!hasVectors)('gm verify tdx on real vectors', () => {
  it('dcap-qvl tdx_quote with its collateral: exit 0, VERIFIED, TCB status UpToDate', async () => {
    const o = io();
    const code = await main(['verify', 'tdx', '--quote', v('dcap-qvl/tdx_quote'), '--collateral', v('dcap-qvl/tdx_quote_collateral.json'), '--now', '2025-06-25T00:00:00Z'], o);
    expect(o.stderr).toBe('');
    expect(code).toBe(0);
    expect(o.stdout).toMatch(/^Intel TDX quote: VERIFIED/);
    expect(o.stdout).toMatch(/PASS {2}tdx\.tcb\.status .*\n\s+UpToDate; no advisories/);
    expect(o.stdout).toMatch(/tcbStatus\s+UpToDate/);
  });

  it('--json gives the report and claims as JSON', async () => {
    const o = io();
    expect(await main(['verify', 'tdx', '--quote', v('dcap-qvl/tdx_quote'), '--collateral', v('dcap-qvl/tdx_quote_collateral.json'), '--now', '2025-06-25T00:00:00Z', '--json'], o)).toBe(0);
    const j = JSON.parse(o.stdout) as { verified: boolean; claims: { tcbStatus: string; mrTd: string } };
    expect(j.verified).toBe(true);
    expect(j.claims.tcbStatus).toBe('UpToDate');
    expect(j.claims.mrTd.startsWith('91eb2b44')).toBe(true);
  });

  it('dcap-qvl tdx_quote_outdated: exit 1, REJECTED, and the reason', async () => {
    const o = io();
    const code = await main(['verify', 'tdx', '--quote', v('dcap-qvl/tdx_quote_outdated'), '--collateral', v('dcap-qvl/tdx_quote_outdated_collateral.json'), '--now', '2026-03-01T00:00:00Z'], o);
    expect(code).toBe(1);
    expect(o.stdout).toMatch(/^Intel TDX quote: REJECTED/);
    expect(o.stdout).toContain('FAIL  tdx.tcb.level');
    expect(o.stderr).toContain('TDX_TCB_NOT_SUPPORTED');
    expect(o.stderr).toContain('SGX TCB component 8 is 3, needs 5');
  });

  it('PCS tcbInfo response + URL-encoded issuer chain file (go-tdx-guest v5 sample), without CRLs and QE identity', async () => {
    const o = io();
    const { writeFile, mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(`${tmpdir()}/gm-tdx-`);
    const chain = (JSON.parse(await readFile(v('dcap-qvl/tdx_quote_collateral.json'), 'utf8')) as { tcb_info_issuer_chain: string }).tcb_info_issuer_chain;
    await writeFile(`${dir}/chain.txt`, encodeURIComponent(chain));
    const code = await main(['verify', 'tdx', '--quote', v('go-tdx-guest/quote_v5_sample.dat'), '--collateral', v('go-tdx-guest/sample_tcbinfo_response_v5'),
      '--collateral', `${dir}/chain.txt`, '--now', '2026-02-03T00:00:00Z', '--no-revocation', '--no-qe-identity', '--json'], o);
    const j = JSON.parse(o.stdout) as { checks: { id: string; status: string; detail?: string }[] };
    expect(j.checks.find((c) => c.id === 'tdx.collateral.tcbInfo')?.status).toBe('pass');
    expect(j.checks.find((c) => c.id === 'tdx.revocation.root')?.status).toBe('skip');
    expect(j.checks.find((c) => c.id === 'tdx.tcb.status')?.detail).toBe('UpToDate; no advisories');
    expect(code).toBe(0);
  });

  it('CRL files (DER root CA CRL, PCK CRL) and PCS responses are recognized by content (trustee quote 4, go-tdx-guest 2023 collateral)', async () => {
    const o = io();
    const code = await main(['verify', 'tdx', '--quote', v('trustee/tdx_quote_4.dat'), '--collateral', v('go-tdx-guest/rootcrl.der'), '--collateral', v('go-tdx-guest/pckcrl'),
      '--collateral', v('go-tdx-guest/sample_tcbInfo_response'), '--collateral', v('go-tdx-guest/sample_qeIdentity_response'), '--collateral', '/tmp/gm-tdx-chain.pem',
      '--now', '2023-07-01T00:00:00Z', '--json'], { ...o, readFile: async (p: string) => (p === '/tmp/gm-tdx-chain.pem' ? new TextEncoder().encode(chainPem) : o.readFile(p)) });
    const j = JSON.parse(o.stdout) as { checks: { id: string; status: string; code?: string }[] };
    expect(j.checks.find((c) => c.id === 'tdx.revocation.root')?.status).toBe('pass');
    expect(j.checks.find((c) => c.id === 'tdx.revocation.pck')?.status).toBe('pass');
    // The only TCB Signing certificate among the vectors was issued in 2025, so the 2023 TCB info cannot chain at 2023.
    expect(j.checks.find((c) => c.id === 'tdx.collateral.tcbInfo')).toMatchObject({ status: 'fail', code: 'CERT_NOT_YET_VALID' });
    expect(code).toBe(1);
  });

  it('--ccel-table without --ccel-log is a usage error', async () => {
    const o = io();
    expect(await main(['verify', 'tdx', '--quote', v('go-tdx-guest/cos-113-tdx-quote.dat'), '--collateral', v('dcap-qvl/tdx_quote_collateral.json'), '--ccel-table', v('go-tdx-guest/ccel_table.dat')], o)).toBe(2);
    expect(o.stderr).toContain('--ccel-table needs --ccel-log');
  });
});
