/** `gm verify gpu` on real evidence shapes: zero padding after the signature, one bad GPU in a list, --json on every error. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fromHex, toBase64 } from '../attestation/bytes.ts';
import { TRUST_DIR, hasTrustAnchors, hasVectors, vectorPath } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';

function io(env: Record<string, string> = { GM_TRUST_DIR: TRUST_DIR }) {
  const out: string[] = [];
  const err: string[] = [];
  const x: Io = { out: (s) => void out.push(s), err: (s) => void err.push(s), env, readFile: async (p) => new Uint8Array(await readFile(p)) };
  return { io: x, out: () => out.join(''), err: () => err.join('') };
}

const coco = (f: string) => vectorPath(`nvidia/trustee-coco/${f}`);
const NONCE8 = '4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e';
interface JsonReport { verified: boolean; checks: { id: string; status: string; code?: string; detail?: string }[]; claims?: unknown }

describe.skipIf(!hasTrustAnchors)('gm verify gpu: a real GH100 report with one zero byte after its signature (CoCo CI)', () => {
  it('is accepted, the padding is reported, and the signature covers the parsed bytes only', async () => {
    const t = io();
    expect(await main(['verify', 'gpu', '--evidence', coco('hopper_coco_report1.txt'), '--chain', coco('hopper_coco_certs1.txt'), '--now', '2025-06-01T00:00:00Z'], t.io)).toBe(0);
    expect(t.out()).toContain('GPU 0 (HOPPER): VERIFIED');
    expect(t.out()).toContain('1 zero padding byte after the signature (not signed)');
    expect(t.out()).toMatch(/PASS +nvidia\.report\.signature/);
  });

  it('a non-zero byte in the padding is refused as trailing bytes, with a JSON parse row under --json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gm-gpu-pad-'));
    const hexText = readFileSync(coco('hopper_coco_report1.txt'), 'utf8').trim();
    writeFileSync(join(dir, 'bad.txt'), `${hexText.slice(0, -2)}01`);
    const t = io();
    expect(await main(['verify', 'gpu', '--evidence', join(dir, 'bad.txt'), '--chain', coco('hopper_coco_certs1.txt'), '--json'], t.io)).toBe(1);
    const j = JSON.parse(t.out()) as JsonReport;
    expect(j.verified).toBe(false);
    expect(j.checks).toEqual([expect.objectContaining({ id: 'nvidia.evidence.parse', status: 'fail', code: 'NVIDIA_SPDM_TRAILING_BYTES' })]);
  });
});

describe.skipIf(!hasVectors || !hasTrustAnchors)('gm verify gpu: one unparseable GPU in a JSON list', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gm-gpu-list-'));
  const list = JSON.parse(readFileSync(vectorPath('nvidia/nvtrust/gpu_evidence.json'), 'utf8')) as { arch: string; certificate: string; evidence: string }[];

  it('fails that GPU and the verdict; the other GPUs are verified and shown', async () => {
    const broken = structuredClone(list);
    const ev = fromHex(Buffer.from(broken[3]!.evidence, 'base64').toString('hex'));
    broken[3]!.evidence = toBase64(ev.subarray(0, ev.length - 10)); // truncated transcript
    broken[5] = { ...broken[5]!, certificate: 'not base64 of PEM' };
    writeFileSync(join(dir, 'broken.json'), JSON.stringify(broken));
    const t = io();
    expect(await main(['verify', 'gpu', '--evidence', join(dir, 'broken.json'), '--nonce', NONCE8], t.io)).toBe(1);
    const o = t.out();
    for (const g of [0, 1, 2, 4, 6, 7]) expect(o).toContain(`GPU ${g} (HOPPER): VERIFIED`);
    expect(o).toContain('GPU 3 (HOPPER): REJECTED');
    expect(o).toContain('GPU 5 (HOPPER): REJECTED');
    expect(o).toMatch(/FAIL +nvidia\.report\.parse .*\n.*NVIDIA_SPDM_TRUNCATED/);
    expect(o).toContain('6/8 GPUs verified');
    expect(t.err()).toContain('GPU 3 (HOPPER) rejected: NVIDIA_SPDM_TRUNCATED');
    expect(t.err()).toContain('GPU 5 (HOPPER) rejected: NVIDIA_EVIDENCE_INVALID');

    const tj = io();
    expect(await main(['verify', 'gpu', '--evidence', join(dir, 'broken.json'), '--nonce', NONCE8, '--json'], tj.io)).toBe(1);
    const j = JSON.parse(tj.out()) as JsonReport;
    expect(j.verified).toBe(false);
    expect(j.checks.find((c) => c.id === 'gpu3.nvidia.report.parse')).toMatchObject({ status: 'fail', code: 'NVIDIA_SPDM_TRUNCATED' });
    expect(j.checks.filter((c) => c.id.endsWith('.nvidia.report.signature') && c.status === 'pass')).toHaveLength(6);
  });

  it('--json prints a report with a failed parse row for a file that is no evidence list at all, and for usage errors', async () => {
    writeFileSync(join(dir, 'notjson.json'), '[{');
    let t = io();
    expect(await main(['verify', 'gpu', '--evidence', join(dir, 'notjson.json'), '--json'], t.io)).toBe(1);
    let j = JSON.parse(t.out()) as JsonReport;
    expect(j.checks).toEqual([expect.objectContaining({ id: 'nvidia.evidence.parse', status: 'fail', code: 'NVIDIA_EVIDENCE_INVALID' })]);
    writeFileSync(join(dir, 'raw.bin'), new Uint8Array([1, 2, 3]));
    t = io();
    expect(await main(['verify', 'gpu', '--evidence', join(dir, 'raw.bin'), '--json'], t.io)).toBe(2);
    j = JSON.parse(t.out()) as JsonReport;
    expect(j.checks[0]).toMatchObject({ id: 'nvidia.evidence.parse', status: 'fail', code: 'USAGE' });
  });
});
