/**
 * The reference collector end to end: the worker's command source runs deploy/worker/collect-gpu-evidence with fake
 * `nvattest` and `nvidia-smi` on PATH that answer with NVIDIA's real 8 × H100 evidence, and the result verifies
 * against the pinned NVIDIA root for the nonce the worker asked.
 */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHex, hex } from '../attestation/bytes.ts';
import { isGmError } from '../attestation/errors.ts';
import { gpuEvidenceJson } from '../attestation/nvidia/evidence.ts';
import { verifyGpuEvidence } from '../attestation/nvidia/index.ts';
import { parseGpuAttestationReport } from '../attestation/nvidia/spdm.ts';
import { pemEncode } from '../attestation/x509/pem.ts';
import { hasTrustAnchors, hasVectors, trustStore, vectorPath } from '../test/vectors.ts';
import { ccModeFrom, collectGpuEvidence } from './collect-gpu-evidence.ts';
import { commandGpuSource } from './gpu.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const COLLECTOR = join(ROOT, 'deploy/worker/collect-gpu-evidence');
const NONCE = '4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e';

describe.skipIf(!hasVectors || !hasTrustAnchors)('collect-gpu-evidence with fake nvattest and nvidia-smi on PATH', () => {
  const bin = mkdtempSync(join(tmpdir(), 'gm-fake-nv-'));
  const saved = { PATH: process.env.PATH, GM_HOME: process.env.GM_HOME, FAKE_CC: process.env.FAKE_CC, FAKE_DEVTOOLS: process.env.FAKE_DEVTOOLS };
  beforeAll(() => {
    const real = JSON.parse(readFileSync(vectorPath('nvidia/nvtrust/gpu_evidence.json'), 'utf8')) as { arch: string; certificate: string; evidence: string }[];
    const answer = { result_code: 0, result_message: 'Ok', evidences: real.map((e) => ({ ...e, nonce: NONCE })) };
    writeFileSync(join(bin, 'answer.json'), JSON.stringify(answer, null, 2));
    // nvattest as NVIDIA's CLI behaves: log lines on stdout around the JSON; it records its arguments for the test.
    writeFileSync(join(bin, 'nvattest'), `#!/bin/sh\necho "$@" > "${bin}/nvattest.args"\necho "[info] collecting evidence"\ncat "${bin}/answer.json"\necho "[info] done"\n`);
    writeFileSync(join(bin, 'nvidia-smi'), `#!/bin/sh\n[ "$1" = conf-compute ] || exit 3\ncase "$2" in\n  -f) echo "CC status: \${FAKE_CC:-ON}" ;;\n  -d) echo "DevTools Mode: \${FAKE_DEVTOOLS:-OFF}" ;;\n  *) exit 4 ;;\nesac\n`);
    for (const f of ['nvattest', 'nvidia-smi']) chmodSync(join(bin, f), 0o755);
    process.env.PATH = `${bin}:${saved.PATH}`;
    process.env.GM_HOME = ROOT;
  });
  afterAll(() => {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  });

  it('the worker gets all 8 GPUs for its nonce, CC mode ON, and the evidence verifies against the pinned root', async () => {
    delete process.env.FAKE_CC;
    delete process.env.FAKE_DEVTOOLS;
    const entries = await commandGpuSource(COLLECTOR)(fromHex(NONCE));
    expect(readFileSync(join(bin, 'nvattest.args'), 'utf8').trim()).toBe(`collect-evidence --device gpu --nonce ${NONCE} --format json`);
    expect(entries).toHaveLength(8);
    for (const e of entries) {
      expect(e.ccMode).toBe('on');
      expect(hex(parseGpuAttestationReport(e.evidence).request.nonce)).toBe(NONCE);
    }
    const json = gpuEvidenceJson(entries.map((e) => ({ arch: e.arch, certificatePem: e.certs.map((c) => pemEncode(c)).join(''), report: e.evidence, ccMode: e.ccMode })));
    const r = await verifyGpuEvidence(json, { now: new Date('2025-06-01T00:00:00Z'), trustStore: await trustStore(), expectedNonce: fromHex(NONCE), policy: null });
    expect(r.gpus).toHaveLength(8);
    expect(r.report.verified).toBe(true);
  });

  it('evidence for another nonce is refused (the collector exits 1, the worker reports GPU_COLLECTOR_FAILED)', async () => {
    const other = fromHex(NONCE.replace(/^47/, '00'));
    const e = await commandGpuSource(COLLECTOR)(other).catch((x: unknown) => x);
    expect(isGmError(e, 'GPU_COLLECTOR_FAILED')).toBe(true);
  });

  it('CC mode OFF or DevTools is passed on as such, and the worker refuses it', async () => {
    for (const [cc, dev] of [['OFF', 'OFF'], ['ON', 'ON']]) {
      process.env.FAKE_CC = cc;
      process.env.FAKE_DEVTOOLS = dev;
      const e = await commandGpuSource(COLLECTOR)(fromHex(NONCE)).catch((x: unknown) => x);
      expect(isGmError(e, 'GPU_CC_MODE_OFF'), `${cc}/${dev}`).toBe(true);
    }
    delete process.env.FAKE_CC;
    delete process.env.FAKE_DEVTOOLS;
  });
});

describe('collectGpuEvidence (unit)', () => {
  const ok = (stdout: string) => ({ status: 0, stdout, stderr: '' });
  it('refuses a bad nonce, a failing tool, a non-zero result code and unreadable nvidia-smi output', () => {
    const smi = (args: readonly string[]) => ok(args[1] === '-f' ? 'CC status: ON' : 'DevTools Mode: OFF');
    expect(() => collectGpuEvidence({ nonce: 'abc', run: () => ok('') })).toThrow(/32 bytes of hex/);
    expect(() => collectGpuEvidence({ nonce: NONCE, run: () => ({ status: 2, stdout: '', stderr: 'no GPU' }) })).toThrow(/exited with 2: no GPU/);
    expect(() => collectGpuEvidence({ nonce: NONCE, run: (c, a) => (c === 'nvattest' ? ok('{"result_code":5,"result_message":"NVML error"}') : smi(a)) })).toThrow(/result_code 5: NVML error/);
    expect(() => collectGpuEvidence({ nonce: NONCE, run: (c, a) => (c === 'nvattest' ? ok('log only') : smi(a)) })).toThrow(/no JSON object/);
    expect(() => ccModeFrom('Confidential compute: enabled', 'DevTools Mode: OFF')).toThrow(/CC status/);
    expect(ccModeFrom('CC status: ON\n', 'DevTools Mode: OFF\n')).toBe('ON');
    expect(ccModeFrom('CC status: OFF', 'DevTools Mode: ON')).toBe('OFF');
    expect(ccModeFrom('CC status: ON', 'DevTools Mode: ON')).toBe('DEVTOOLS');
  });
});
