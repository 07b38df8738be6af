/** `gm verify snp` on Azure HCL reports and on certificate files in the layouts deployments write. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toBase64 } from '../attestation/bytes.ts';
import { TRUST_DIR, hasTrustAnchors, vectorPath } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';

const local = (rel: string) => vectorPath(`sev-snp/${rel}`);
const NOW = ['--now', '2026-01-01T00:00:00Z'];
const text = (p: string) => readFileSync(p, 'utf8');
/** PEM blocks of a file, in order. */
const blocks = (p: string) => text(p).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)!.map((b) => b.trimEnd() + '\n');

function io(env: Record<string, string> = { GM_TRUST_DIR: TRUST_DIR }) {
  const out: string[] = [];
  const err: string[] = [];
  const x: Io = { out: (s) => void out.push(s), err: (s) => void err.push(s), env, readFile: async (p) => new Uint8Array(await readFile(p)) };
  return { io: x, out: () => out.join(''), err: () => err.join('') };
}

describe.skipIf(!hasTrustAnchors)('gm verify snp: Azure HCL reports and certificate layouts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gm-snp-fmt-'));
  const milanReport = local('trustee-azure/hcl-report-milan.bin');
  // Azure's vcek.pem as served: VCEK, ASK, ARK in one PEM.
  const azureVcekPem = local('trustee-azure/vcek-milan.pem');
  const milanVcek = blocks(azureVcekPem)[0]!;
  const [ask, ark] = blocks(join(TRUST_DIR, 'amd/ask_ark_milan.pem'));
  const write = (name: string, body: string | Uint8Array) => {
    writeFileSync(join(dir, name), body);
    return join(dir, name);
  };

  it('an Azure HCL report, raw or base64, verifies with its binding row, and the input row says which', async () => {
    let t = io();
    expect(await main(['verify', 'snp', '--report', local('trustee-azure/hcl-report-genoa.bin'), '--cert', local('trustee-azure/vcek-genoa.pem'), ...NOW], t.io)).toBe(0);
    expect(t.out()).toMatch(/PASS +snp\.input .*\n.*Azure HCL report, raw binary/);
    expect(t.out()).toMatch(/PASS +snp\.hcl\.runtimeData/);
    const b64 = write('hcl.b64', toBase64(new Uint8Array(readFileSync(milanReport))));
    t = io();
    expect(await main(['verify', 'snp', '--report', b64, '--cert', local('trustee-azure/vcek-milan.pem'), ...NOW, '--json'], t.io)).toBe(0);
    const j = JSON.parse(t.out()) as { checks: { id: string; detail?: string }[] };
    expect(j.checks[0]).toMatchObject({ id: 'snp.input', detail: 'Azure HCL report, base64' });
  });

  it('one PEM with VCEK, ASK and ARK (Azure vcek.pem), in either order, is sorted by role and pin-checked', async () => {
    for (const [name, body] of [['vcek-ask-ark.pem', text(azureVcekPem)], ['ark-ask-vcek.pem', ark! + ask + milanVcek], ['ask-vcek.pem', ask! + milanVcek]] as const) {
      const t = io({ GM_TRUST_DIR: join(dir, 'no-trust-dir') });
      expect(await main(['verify', 'snp', '--report', milanReport, '--cert', write(name, body), ...NOW], t.io), name).toBe(name === 'ask-vcek.pem' ? 2 : 0);
      if (name === 'ask-vcek.pem') expect(t.err()).toContain('TRUST_ANCHOR_MISSING');
      else expect(t.out()).toContain('pinned ARK-Milan');
    }
    // With the trust directory, an ASK-only chain file takes its ARK from the pins.
    const t = io();
    expect(await main(['verify', 'snp', '--report', milanReport, '--cert', write('vcek.pem', milanVcek), '--chain', write('ask-only.pem', ask!), ...NOW], t.io)).toBe(0);
    expect(t.out()).toContain('SEV-Milan under pinned ARK-Milan');
  });

  it('the real azure-cvm-tooling certs.pem (VCEK, ASK, ARK) is read by role; its VCEK belongs to another chip, so the signature is what fails', async () => {
    const t = io({});
    expect(await main(['verify', 'snp', '--report', milanReport, '--cert', local('azure-cvm-tooling/certs.pem'), ...NOW], t.io)).toBe(1);
    expect(t.out()).toMatch(/PASS +snp\.chain/);
    expect(t.err()).toContain('SNP_REPORT_SIGNATURE');
  });

  it('a missing role, an unknown certificate, a duplicate role or certificates that do not link are usage errors (exit 2)', async () => {
    const cases: [string, string[], string][] = [
      ['no VCEK', ['--cert', write('chain-only.pem', ask! + ark)], 'SNP_CERT_ROLE_MISSING'],
      ['no files', [], 'SNP_CERT_ROLE_MISSING'],
      ['two ASKs', ['--cert', write('two-asks.pem', milanVcek + ask + blocks(join(TRUST_DIR, 'amd/ask_ark_genoa.pem'))[0])], 'SNP_CERT_LAYOUT'],
      ['Genoa chain for a Milan VCEK', ['--cert', write('vcek.pem', milanVcek), '--chain', join(TRUST_DIR, 'amd/ask_ark_genoa.pem')], 'SNP_CERT_LAYOUT'],
      ['Genoa ARK only for a Milan VCEK', ['--cert', write('vcek.pem', milanVcek), '--chain', write('genoa-ark.pem', blocks(join(TRUST_DIR, 'amd/ask_ark_genoa.pem'))[1]!)], 'SNP_CERT_LAYOUT'],
      ['not AMD', ['--cert', write('vcek.pem', milanVcek), '--chain', join(TRUST_DIR, 'intel/sgx_root_ca.pem')], 'SNP_CERT_LAYOUT'],
    ];
    for (const [what, args, code] of cases) {
      const t = io();
      expect(await main(['verify', 'snp', '--report', milanReport, ...args, ...NOW], t.io), what).toBe(2);
      expect(t.err(), what).toContain(code);
      expect(t.out(), what).not.toContain('VERIFIED');
    }
  });

  it('an unreadable report file is a usage error naming the formats tried', async () => {
    const t = io();
    expect(await main(['verify', 'snp', '--report', write('junk.json', '{"report":"00"}'), '--cert', azureVcekPem, ...NOW], t.io)).toBe(2);
    expect(t.err()).toContain('EVIDENCE_FORMAT_UNKNOWN');
    expect(t.err()).toContain('base64');
  });
});
