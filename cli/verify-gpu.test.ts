import { mkdtempSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { hex, sha256 } from '../attestation/bytes.ts';
import { buildOcspFor, buildSimGpuEvidence, buildSimOcsp, buildSimRim, createNvidiaSimSigner, createSimRimSigner, simMeasurement } from '../attestation/nvidia/sim.ts';
import { pemEncode } from '../attestation/x509/pem.ts';
import { TRUST_DIR, hasVectors, vectorPath } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';

function io(env: Record<string, string> = { GM_TRUST_DIR: TRUST_DIR }) {
  const out: string[] = [];
  const err: string[] = [];
  const x: Io = { out: (s) => void out.push(s), err: (s) => void err.push(s), env, readFile: async (p) => new Uint8Array(await readFile(p)) };
  return { io: x, out: () => out.join(''), err: () => err.join('') };
}

const NONCE8 = '4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e';
const CHECKS = ['nvidia.report.parse', 'nvidia.chain', 'nvidia.fwid', 'nvidia.report.nonce', 'nvidia.report.signature'];

describe.skipIf(!hasVectors)('gm verify gpu (real vectors, pinned root)', () => {
  const evidence = () => vectorPath('nvidia/nvtrust/gpu_evidence.json');

  it('the 8-GPU evidence file: a passing report per GPU naming each check', async () => {
    const t = io();
    expect(await main(['verify', 'gpu', '--evidence', evidence(), '--nonce', NONCE8], t.io)).toBe(0);
    const o = t.out();
    for (let g = 0; g < 8; g++) expect(o).toContain(`GPU ${g} (HOPPER): VERIFIED`);
    for (const id of CHECKS) expect(o.split(`PASS  ${id} `).length - 1).toBe(8);
    expect(o).toContain('pinned NVIDIA Device Identity CA');
    expect(o).toContain('8/8 GPUs verified');
    expect(t.err()).toBe('');
  });

  it('a forged nonce: rejected, naming each GPU and why, exit 1', async () => {
    const t = io();
    const forged = `00${NONCE8.slice(2)}`;
    expect(await main(['verify', 'gpu', '--evidence', evidence(), '--nonce', forged], t.io)).toBe(1);
    expect(t.out()).toContain('GPU 3 (HOPPER): REJECTED');
    expect(t.out()).toContain('0/8 GPUs verified');
    expect(t.err()).toMatch(/GPU 0 \(HOPPER\) rejected: NVIDIA_NONCE_MISMATCH: the report answers nonce 4760e305.*, expected 0060e305/);
    expect(t.err().split('\n').filter(Boolean)).toHaveLength(8);
  });

  it('a raw report with --chain, and --json output', async () => {
    const t = io();
    const args = ['verify', 'gpu', '--evidence', vectorPath('nvidia/nvtrust/hopperAttestationReport.txt'), '--chain', vectorPath('nvidia/nvtrust/hopperCertChain.txt'),
      '--nonce', '931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb', '--json'];
    expect(await main(args, t.io)).toBe(0);
    const j = JSON.parse(t.out()) as { verified: boolean; checks: { id: string; status: string }[]; claims: { claims: { driverVersion: string } }[] };
    expect(j.verified).toBe(true);
    expect(j.claims[0]!.claims.driverVersion).toBe('550.90.07');
    // Same shape as `gm verify snp --json`: the top-level rows are the checks (per GPU, ids prefixed).
    for (const id of CHECKS) expect(j.checks.find((c) => c.id === `gpu0.${id}`)?.status, id).toBe('pass');
  });

  it('--json with a forged nonce: top-level rows name the failing check of every GPU, exit 1', async () => {
    const t = io();
    expect(await main(['verify', 'gpu', '--evidence', evidence(), '--nonce', `00${NONCE8.slice(2)}`, '--json'], t.io)).toBe(1);
    const j = JSON.parse(t.out()) as { verified: boolean; checks: { id: string; status: string; code?: string }[] };
    expect(j.verified).toBe(false);
    expect(j.checks.filter((c) => c.status === 'fail').map((c) => [c.id, c.code])).toEqual(
      Array.from({ length: 8 }, (_, g) => [`gpu${g}.nvidia.report.nonce`, 'NVIDIA_NONCE_MISMATCH']));
  });

  it('with the example policy, the nvattest file (no CC-mode reading, no RIMs, no OCSP) lists every violation', async () => {
    const t = io();
    const policy = new URL('../attestation/nvidia/policy.example.json', import.meta.url).pathname;
    expect(await main(['verify', 'gpu', '--evidence', evidence(), '--nonce', NONCE8, '--policy', policy], t.io)).toBe(1);
    const o = t.out().split('GPU 1 (HOPPER)')[0]!;
    for (const id of ['policy.cc-mode', 'policy.rim-match', 'policy.ocsp', 'policy.evidence-age']) expect(o).toContain(`FAIL  ${id}`);
    for (const id of ['policy.devtools', 'policy.driver-version', 'policy.vbios-version', 'policy.architecture']) expect(o).toContain(`PASS  ${id}`);
    expect(o).toContain('SKIP  policy.debug'); // the SPDM report states no debug status
    expect(o).toContain('the SPDM report has no CC-mode field');
  });

  it('usage errors exit 2', async () => {
    expect(await main(['verify', 'gpu'], io().io)).toBe(2);
    expect(await main(['verify', 'gpu', '--evidence', evidence(), '--nonce', 'abc'], io().io)).toBe(2);
    expect(await main(['verify', 'gpu', '--evidence', evidence(), '--bogus'], io().io)).toBe(2);
  });
});

describe('gm verify gpu (sim root, policy, RIMs, OCSP)', () => {
  it('names the one rejected GPU among several, and applies the policy file', async () => {
    const now = new Date('2026-03-01T00:00:00Z');
    const dir = mkdtempSync(join(tmpdir(), 'gm-gpu-'));
    const signer = await createNvidiaSimSigner({ now });
    const rimSigner = await createSimRimSigner(now);
    const nonce = new Uint8Array(32).fill(1);
    const entries = async (a: number, b: number) => Promise.all(Array.from({ length: b - a }, async (_, k) => ({ index: a + k, active: true, alternatives: [await simMeasurement(a + k + 1)] })));
    writeFileSync(join(dir, 'driver.xml'), await buildSimRim(rimSigner, 'driver', '550.90.07', await entries(0, 30)));
    writeFileSync(join(dir, 'vbios.xml'), await buildSimRim(rimSigner, 'vbios', '96.00.9f.00.01', await entries(30, 64)));
    writeFileSync(join(dir, 'ev.json'), await buildSimGpuEvidence(signer, [{ nonce }, { nonce }, { nonce: new Uint8Array(32).fill(2) }]));
    writeFileSync(join(dir, 'root.pem'), pemEncode(signer.root.der));
    writeFileSync(join(dir, 'rim-root.pem'), pemEncode(rimSigner.rootDer));
    const times = { thisUpdate: new Date(now.getTime() - 1000), nextUpdate: new Date(now.getTime() + 86_400_000) };
    for (const [i, c] of [signer.leaf, signer.intermediate].entries()) writeFileSync(join(dir, `ocsp${i}.der`), await buildSimOcsp(signer, c, times));
    writeFileSync(join(dir, 'ocsp-rim.der'), await buildOcspFor(rimSigner.signer, rimSigner.root, rimSigner.rootKey, times));

    const t = io({});
    const args = ['verify', 'gpu', '--evidence', join(dir, 'ev.json'), '--sim-root', join(dir, 'root.pem'), '--sim-rim-root', join(dir, 'rim-root.pem'), '--nonce', '01'.repeat(32), '--now', now.toISOString(), '--collected-at', new Date(now.getTime() - 5000).toISOString(),
      '--rim', join(dir, 'driver.xml'), '--rim', join(dir, 'vbios.xml'), '--ocsp', join(dir, 'ocsp0.der'), '--ocsp', join(dir, 'ocsp1.der'), '--ocsp', join(dir, 'ocsp-rim.der'), '--policy', new URL('../attestation/nvidia/policy.example.json', import.meta.url).pathname];
    expect(await main(args, t.io)).toBe(1);
    const o = t.out();
    expect(o).toContain('GPU 0 (HOPPER): VERIFIED');
    expect(o).toContain('GPU 2 (HOPPER): REJECTED');
    expect(o).toContain('2/3 GPUs verified');
    expect(o).toContain('PASS  nvidia.rim.measurements');
    expect(o).toContain('PASS  nvidia.ocsp.1');
    expect(o).toContain('PASS  nvidia.rim.vbios.ocsp.0');
    expect(o).toContain('PASS  policy.cc-mode');
    expect(o).toContain('PASS  policy.evidence-age');
    expect(o).toContain('SIM root');
    expect(t.err()).toMatch(/GPU 2 \(HOPPER\) rejected: NVIDIA_NONCE_MISMATCH/);
  });
});

describe('gm verify gpu --nras (fake NRAS)', () => {
  it('verifies a saved NRAS result against a saved JWKS; another key is refused', async () => {
    const now = new Date('2026-02-01T00:00:00Z');
    const iat = Math.floor(now.getTime() / 1000) - 10;
    const iss = 'https://nras.attestation.nvidia.com';
    const nonce = 'ab'.repeat(32);
    const k = await generateKeyPair('ES384');
    const other = await generateKeyPair('ES384');
    const dir = mkdtempSync(join(tmpdir(), 'gm-nras-'));
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(k.publicKey)), kid: 'k1', alg: 'ES384' }] }));
    const result = async (gpuKey: CryptoKey) => {
      const gpu = await new SignJWT({
        eat_nonce: nonce, hwmodel: 'GH100 A01 GSP BROM', secboot: true, dbgstat: 'disabled', measres: 'success', 'x-nvidia-gpu-driver-version': '550.90.07',
        'x-nvidia-gpu-vbios-version': '96.00.9F.00.01', 'x-nvidia-gpu-attestation-report-signature-verified': true, 'x-nvidia-gpu-attestation-report-cert-chain-validated': true,
        'x-nvidia-gpu-arch-check': true, 'x-nvidia-gpu-attestation-report-nonce-match': true,
      }).setProtectedHeader({ alg: 'ES384', kid: 'k1' }).setIssuer(iss).setIssuedAt(iat).setExpirationTime(iat + 600).sign(gpuKey);
      const overall = await new SignJWT({ eat_nonce: nonce, 'x-nvidia-overall-att-result': true, submods: { 'GPU-0': ['DIGEST', ['SHA256', hex(await sha256(new TextEncoder().encode(gpu)))]] } })
        .setProtectedHeader({ alg: 'ES384', kid: 'k1' }).setIssuer(iss).setIssuedAt(iat).setExpirationTime(iat + 600).sign(k.privateKey);
      return JSON.stringify([['JWT', overall], { 'GPU-0': gpu }]);
    };
    writeFileSync(join(dir, 'good.json'), await result(k.privateKey));
    writeFileSync(join(dir, 'forged.json'), await result(other.privateKey));
    const base = ['verify', 'gpu', '--jwks', join(dir, 'jwks.json'), '--issuer', iss, '--nonce', nonce, '--now', now.toISOString()];
    const t = io({});
    expect(await main([...base, '--nras', join(dir, 'good.json')], t.io)).toBe(0);
    for (const id of ['nras.overall.signature', 'gpu0.nras.submod.digest', 'gpu0.nras.gpu.signature', 'gpu0.nras.gpu.nonce']) expect(t.out()).toContain(`PASS  ${id}`);
    const f = io({});
    expect(await main([...base, '--nras', join(dir, 'forged.json')], f.io)).toBe(1);
    expect(f.err()).toMatch(/NRAS_SIGNATURE: GPU 0 \(GPU-0\) rejected/);
    expect(await main([...base, '--nras', join(dir, 'good.json'), '--evidence', join(dir, 'good.json')], io({}).io)).toBe(2);
  });
});
