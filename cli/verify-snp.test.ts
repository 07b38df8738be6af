import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { createSimAmd, type SimAmd } from '../attestation/sevsnp/sim.ts';
import { pemEncode } from '../attestation/x509/pem.ts';
import { TRUST_DIR, hasVectors, vectorPath } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';

function io(env: Record<string, string> = { GM_TRUST_DIR: TRUST_DIR }) {
  const out: string[] = [];
  const err: string[] = [];
  const x: Io = {
    out: (s) => void out.push(s), err: (s) => void err.push(s), env,
    readFile: async (p) => new Uint8Array(await readFile(p)),
  };
  return { io: x, out: () => out.join(''), err: () => err.join('') };
}

const genoa = () => ['--report', vectorPath('sev-snp/azure-genoa/genoa-hcl-snp-report.bin'), '--cert', vectorPath('sev-snp/azure-genoa/vcek-genoa.pem'), '--now', '2026-01-01T00:00:00Z'];

describe.skipIf(!hasVectors)('gm verify snp (real vectors, pinned anchors)', () => {
  it('verifies the Azure Genoa report and names every check', async () => {
    const t = io();
    expect(await main(['verify', 'snp', ...genoa()], t.io)).toBe(0);
    const o = t.out();
    expect(o).toMatch(/^AMD SEV-SNP attestation report: VERIFIED/);
    for (const id of ['snp.report.parse', 'snp.report.signature', 'snp.chain', 'snp.cert.hwid', 'snp.cert.tcb', 'snp.policy.debug']) expect(o).toContain(id);
    expect(o).toContain('pinned ARK-Genoa');
    expect(o).toContain('f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae');
  });

  it('--json prints the report and claims as JSON; hex reports are accepted', async () => {
    const t = io();
    const args = ['verify', 'snp', '--report', vectorPath('sev-snp/virtee-sev/report_milan.hex'), '--cert', vectorPath('sev-snp/virtee-sev/vcek_milan.der'), '--now', '2024-06-01T00:00:00Z', '--json'];
    expect(await main(args, t.io)).toBe(0);
    const j = JSON.parse(t.out());
    expect(j.verified).toBe(true);
    expect(j.claims.product).toBe('Milan');
    expect(j.claims.reportedTcb.raw).toBe('0x7308000000000003');
  });

  it('rejects (exit 1) with the failing row: expired VCEK, tampered report, debug under the default policy', async () => {
    let t = io();
    expect(await main(['verify', 'snp', ...genoa().slice(0, 4), '--now', '2033-01-01T00:00:00Z'], t.io)).toBe(1);
    expect(t.out()).toContain('REJECTED');
    expect(t.out()).toContain('CERT_EXPIRED');

    const dir = mkdtempSync(join(tmpdir(), 'gm-snp-'));
    const bad = new Uint8Array(await readFile(vectorPath('sev-snp/azure-genoa/genoa-hcl-snp-report.bin')));
    bad[0x90]! ^= 1;
    writeFileSync(join(dir, 'bad.hex'), hex(bad));
    t = io();
    expect(await main(['verify', 'snp', '--report', join(dir, 'bad.hex'), ...genoa().slice(2)], t.io)).toBe(1);
    expect(t.err()).toContain('SNP_REPORT_SIGNATURE');

    t = io();
    expect(await main(['verify', 'snp', '--report', vectorPath('sev-snp/go-sev-guest/attestation.bin'), '--cert', vectorPath('sev-snp/go-sev-guest/vcek.testcer'), '--now', '2022-10-01T00:00:00Z'], t.io)).toBe(1);
    expect(t.out()).toContain('SNP_POLICY_DEBUG');

    writeFileSync(join(dir, 'policy.json'), JSON.stringify({ measurements: 'any', allowDebug: true }));
    t = io();
    expect(await main(['verify', 'snp', '--report', vectorPath('sev-snp/go-sev-guest/attestation.bin'), '--cert', vectorPath('sev-snp/go-sev-guest/vcek.testcer'), '--now', '2022-10-01T00:00:00Z', '--policy', join(dir, 'policy.json')], t.io)).toBe(0);
  });

  it('the example policy file parses and accepts the Azure Genoa report', async () => {
    const t = io();
    expect(await main(['verify', 'snp', ...genoa(), '--policy', new URL('../attestation/sevsnp/policy.example.json', import.meta.url).pathname], t.io)).toBe(0);
    expect(t.out()).toMatch(/PASS +snp\.policy\.measurement/);
    expect(t.out()).toMatch(/PASS +snp\.policy\.min-tcb/);
    expect(t.out()).not.toContain('FAIL');
  });

  it('--chain with the pinned chain file works; a VLEK report with --chain of the VCEK chain is a usage error (its ASVK is missing)', async () => {
    let t = io({});
    const vlek = ['--report', vectorPath('sev-snp/trustee/test-vlek-report.bin'), '--cert', vectorPath('sev-snp/trustee/test-vlek.der'), '--now', '2025-06-01T00:00:00Z', '--policy'];
    const dir = mkdtempSync(join(tmpdir(), 'gm-snp-'));
    writeFileSync(join(dir, 'p.json'), JSON.stringify({ measurements: 'any', allowDebug: false, vmpls: [0, 1] }));
    expect(await main(['verify', 'snp', ...vlek, join(dir, 'p.json'), '--chain', join(TRUST_DIR, 'amd/ask_ark_milan_vlek.pem')], t.io)).toBe(0);
    expect(t.out()).toContain('VERIFIED');
    t = io({});
    expect(await main(['verify', 'snp', ...vlek, join(dir, 'p.json'), '--chain', join(TRUST_DIR, 'amd/ask_ark_milan.pem')], t.io)).toBe(2);
    expect(t.err()).toContain('SNP_CERT_LAYOUT');
    expect(t.err()).toContain('needs an ASVK');
  });

  it('usage errors exit 2', async () => {
    for (const argv of [[], ['--cert', 'x'], ['--report'], ['--report', 'a', '--bogus'], ['--report', 'a', '--now', 'yesterday']]) {
      const t = io();
      expect(await main(['verify', 'snp', ...argv], t.io), argv.join(' ')).toBe(2);
      expect(t.err()).toMatch(/^gm verify snp: [^\n]+ \(see gm verify snp --help\)\n$/);
    }
    const t = io({ GM_TRUST_DIR: '/nonexistent/gm-trust' });
    expect(await main(['verify', 'snp', ...genoa()], t.io)).toBe(2);
    expect(t.err()).toContain('TRUST_ANCHOR_MISSING');
  });

  it('a trust directory holding a certificate that fails its pin is refused (exit 2), never used', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gm-snp-trust-'));
    cpSync(TRUST_DIR, dir, { recursive: true });
    // Milan's chain under Genoa's file name: real AMD certificates, wrong pins.
    writeFileSync(join(dir, 'amd/ask_ark_genoa.pem'), readFileSync(join(TRUST_DIR, 'amd/ask_ark_milan.pem')));
    const t = io({ GM_TRUST_DIR: dir });
    expect(await main(['verify', 'snp', ...genoa()], t.io)).toBe(2);
    expect(t.err()).toContain('TRUST_PIN_MISMATCH');
    expect(t.err()).toContain('amd/ask_ark_genoa.pem');
    expect(t.out()).not.toContain('VERIFIED');
  });
});

describe('gm verify snp (sim chain)', () => {
  let sim: SimAmd;
  let dir: string;
  beforeAll(async () => {
    sim = await createSimAmd({ product: 'Milan' });
    dir = mkdtempSync(join(tmpdir(), 'gm-snp-sim-'));
    writeFileSync(join(dir, 'report.bin'), await sim.vcek.signReport());
    writeFileSync(join(dir, 'vcek.pem'), pemEncode(sim.vcek.der));
    writeFileSync(join(dir, 'chain.pem'), pemEncode(sim.askDer) + pemEncode(sim.arkDer));
  });

  it('refuses an unpinned chain unless --allow-unpinned, then says which root it trusted', async () => {
    const args = ['verify', 'snp', '--report', join(dir, 'report.bin'), '--cert', join(dir, 'vcek.pem'), '--chain', join(dir, 'chain.pem'), '--now', '2026-01-01T00:00:00Z'];
    let t = io({});
    expect(await main(args, t.io)).toBe(2);
    expect(t.err()).toContain('SNP_CHAIN_NOT_PINNED');
    t = io({});
    expect(await main([...args, '--allow-unpinned'], t.io)).toBe(0);
    expect(t.out()).toContain('caller-supplied root');
    expect(t.out()).toContain('(sim)');
  });
});
