import { describe, expect, it } from 'vitest';
import { fromHex } from '../bytes.ts';
import { type GmError, isGmError } from '../errors.ts';
import { parseCertificate, pemDecodeAll, pemEncode } from '../x509/index.ts';
import { hasVectors, trustStore, vectorText } from '../../test/vectors.ts';
import { gpuEvidenceFromRaw, verifyGpuEvidence } from './index.ts';
import { leafFwid, verifyGpuChain } from './verify.ts';
import { checkFwid } from './verify.ts';
import { REQUEST_SIZE } from './spdm.ts';

const NOW = new Date('2025-01-15T00:00:00Z');
const GH100_NONCE = fromHex('931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb');
const H100X8_NONCE = fromHex('4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e');

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return undefined;
}

describe.skipIf(!hasVectors)('real NVIDIA evidence', () => {
  const reportHex = vectorText('nvidia/nvtrust/hopperAttestationReport.txt').replace(/\s/g, '');
  const chainPem = vectorText('nvidia/nvtrust/hopperCertChain.txt');
  const verifyRaw = async (report: Uint8Array, pem = chainPem, nonce = GH100_NONCE) =>
    verifyGpuEvidence([gpuEvidenceFromRaw(report, pem)], { now: NOW, trustStore: await trustStore(), expectedNonce: nonce, policy: null });

  it('the GH100 report and chain verify with their nonce, naming each check', async () => {
    const r = await verifyRaw(fromHex(reportHex));
    expect(r.report.verified).toBe(true);
    const ids = r.report.checks.filter((c) => c.status === 'pass').map((c) => c.id);
    expect(ids).toEqual(['gpu0.nvidia.report.parse', 'gpu0.nvidia.chain', 'gpu0.nvidia.fwid', 'gpu0.nvidia.report.nonce', 'gpu0.nvidia.report.signature', 'gpu0.nvidia.evidence.envelope']);
    const c = r.gpus[0]!.claims;
    expect(c.driverVersion).toBe('550.90.07');
    expect(c.vbiosVersion).toBe('96.00.9f.00.01');
    expect(c.fwid).toBe('f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d');
    expect(c.hwmodel).toBe('GH100 A01 GSP BROM');
    expect(c.nonceMatch).toBe(true);
    expect(c.ocsp).toBe('skipped');
  });

  it("the verified claims agree with trustee's expected claims file (arch, driver, VBIOS, FWID, every measurement)", async () => {
    const want = JSON.parse(vectorText('nvidia/trustee/hopperAttestationReport-claims.txt')) as {
      arch: string; config: { driver_version: string; vbios_version: string; fwid: string }; measurements: Record<string, string>;
    };
    const c = (await verifyRaw(fromHex(reportHex))).gpus[0]!.claims;
    expect(c.arch).toBe(want.arch.toUpperCase());
    expect([c.driverVersion, c.vbiosVersion, c.fwid]).toEqual([want.config.driver_version, want.config.vbios_version, want.config.fwid]);
    expect({ ...c.measurements }).toEqual(want.measurements);
  });

  it('all 8 H100 reports of gpu_evidence.json verify with their nonce', async () => {
    const r = await verifyGpuEvidence(vectorText('nvidia/nvtrust/gpu_evidence.json'), { now: NOW, trustStore: await trustStore(), expectedNonce: H100X8_NONCE, policy: null });
    expect(r.gpus).toHaveLength(8);
    expect(r.gpus.every((g) => g.report.verified && g.claims.driverVersion === '590.12')).toBe(true);
    expect(new Set(r.gpus.map((g) => g.claims.ueid)).size).toBe(8);
  });

  it('the 4 NVSwitch (LS10) reports of switch_evidence.json verify with the same nonce', async () => {
    const r = await verifyGpuEvidence(vectorText('nvidia/nvtrust/switch_evidence.json'), { now: NOW, trustStore: await trustStore(), expectedNonce: H100X8_NONCE, policy: null });
    expect(r.gpus.map((g) => [g.claims.arch, g.claims.vbiosVersion])).toEqual(Array.from({ length: 4 }, () => ['LS10', '96.10.73.00.01']));
  });

  it('a forged nonce is rejected naming the GPU and the reason', async () => {
    const forged = H100X8_NONCE.slice();
    forged[0] = forged[0]! ^ 1;
    const e = await verifyGpuEvidence(vectorText('nvidia/nvtrust/gpu_evidence.json'), { now: NOW, trustStore: await trustStore(), expectedNonce: forged, policy: null }).catch((x: GmError) => x);
    expect(isGmError(e, 'NVIDIA_NONCE_MISMATCH')).toBe(true);
    expect((e as GmError).message).toMatch(/^GPU 0 \(HOPPER\) rejected: .*nonce/);
    expect((e as GmError).report!.checks.filter((c) => c.status === 'fail').map((c) => c.id)).toEqual(Array.from({ length: 8 }, (_, i) => `gpu${i}.nvidia.report.nonce`));
  });

  it('flipped bytes: each place gives its own code', async () => {
    const raw = fromHex(reportHex);
    const flip = (pos: number) => {
      const m = raw.slice();
      m[pos] = m[pos]! ^ 0x01;
      return m;
    };
    const fwidAt = raw.length - 96 - (4 + 1) - 48; // FWID sits before PROTECTED_PCIE_STATUS (4-byte header + 1 byte)
    expect(await codeOf(verifyRaw(flip(4)))).toBe('NVIDIA_NONCE_MISMATCH'); // request nonce
    expect(await codeOf(verifyRaw(flip(REQUEST_SIZE + 8 + 7 + 10)))).toBe('NVIDIA_REPORT_SIGNATURE'); // block 1 digest
    expect(await codeOf(verifyRaw(flip(fwidAt)))).toBe('NVIDIA_FWID_MISMATCH');
    expect(await codeOf(verifyRaw(flip(raw.length - 20)))).toBe('NVIDIA_REPORT_SIGNATURE'); // signature s
    expect(await codeOf(verifyRaw(flip(REQUEST_SIZE + 5)))).toBe('NVIDIA_SPDM_INVALID'); // record length
    // Chain: a byte inside the intermediate's TBS (its subject key) breaks the leaf's signature check.
    const ders = pemDecodeAll(chainPem);
    const bad = ders[1]!.slice();
    bad[bad.length - 120] = bad[bad.length - 120]! ^ 0x01;
    const pem = ders.map((d, i) => pemEncode(i === 1 ? bad : d)).join('');
    expect(await codeOf(verifyRaw(raw, pem))).toBe('CERT_SIGNATURE');
  });

  it('the FWID extension is read from the leaf', () => {
    const leaf = parseCertificate(pemDecodeAll(vectorText('nvidia/trustee/hopper_signing_cert.pem'))[0]!);
    expect(Buffer.from(leafFwid(leaf)!).toString('hex')).toBe('f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d');
  });

  describe('trustee cert_chain.rs cases', () => {
    const report = () => gpuEvidenceFromRaw(fromHex(reportHex), chainPem).report;
    const chain = (f: string) => pemDecodeAll(vectorText(f)).map((d) => parseCertificate(d));
    const run = async (f: string) => {
      const c = chain(f);
      const v = await verifyGpuChain(c, [(await trustStore()).get('nvidia-device-root')], NOW);
      checkFwid(v.path[0]!, report());
    };
    it('case 1: valid Hopper chain', async () => expect(await codeOf(run('nvidia/nvtrust/hopperCertChain.txt'))).toBeUndefined());
    it('case 2: only the root CA', async () => expect(await codeOf(run('nvidia/trustee/hopper_cert_chain_case2.txt'))).toBe('NVIDIA_CHAIN_TOO_SHORT'));
    it('case 3: missing intermediate CA', async () => expect(await codeOf(run('nvidia/trustee/hopper_cert_chain_case3.txt'))).toBe('CERT_ISSUER_MISMATCH'));
    it('case 4: missing signing certificate (no FWID)', async () => expect(await codeOf(run('nvidia/trustee/hopper_cert_chain_case4.txt'))).toBe('NVIDIA_FWID_MISSING'));
  });

  it('the nvtrust JSON envelope must agree with the signed report', async () => {
    const ev = JSON.parse(vectorText('nvidia/nvtrust/gpu_evidence.json')) as Record<string, string>[];
    ev[2]!.driver_version = '999.99';
    const e = await verifyGpuEvidence(JSON.stringify(ev), { now: NOW, trustStore: await trustStore(), expectedNonce: H100X8_NONCE, policy: null }).catch((x: GmError) => x);
    expect(isGmError(e, 'NVIDIA_EVIDENCE_INCONSISTENT')).toBe(true);
    expect((e as GmError).message).toMatch(/^GPU 2 /);
  });
});
