import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { hasVectors, vectorPath } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  const x: Io = {
    out: (s) => void out.push(s), err: (s) => void err.push(s), env: { GM_VCPUS: '8', GM_KERNEL: '/nonexistent' },
    readFile: async (p) => new Uint8Array(await readFile(p)),
  };
  return { io: x, out: () => out.join(''), err: () => err.join('') };
}

const AMD = () => vectorPath('measure/sev-snp-measure/ovmf_AmdSev_suffix.bin');
const NULL = '/dev/null';

describe.skipIf(!hasVectors)('gm measure snp', () => {
  it('prints the MEASUREMENT for measured direct boot (published sev-snp-measure value)', async () => {
    const t = io();
    const code = await main(['measure', 'snp', '--ovmf', AMD(), '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--kernel', NULL, '--initrd', NULL, '--append', 'console=ttyS0 loglevel=7', '--guest-features', '0x21'], t.io);
    expect(t.err()).toBe('');
    expect(code).toBe(0);
    expect(t.out()).toBe('803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977\n');
  });

  it('--vcpu-sig is the same as the named type; --vmm gce needs none', async () => {
    const t = io();
    expect(await main(['measure', 'snp', '--ovmf', AMD(), '--vcpus', '4', '--vcpu-sig', '0x800f12', '--kernel', NULL, '--initrd', NULL, '--append', ''], t.io)).toBe(0);
    expect(t.out()).toBe('5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5\n');
    const g = io();
    expect(await main(['measure', 'snp', '--ovmf', AMD(), '--vcpus=4', '--vmm', 'gce', '--kernel', NULL, '--initrd', NULL, '--append', ''], g.io)).toBe(0);
    expect(g.out()).toBe('5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d\n');
  });

  it('--json lists every input digest and the digest after each step', async () => {
    const t = io();
    expect(await main(['measure', 'snp', '--ovmf', AMD(), '--vcpus', '2', '--vcpu-type', 'EPYC-v4', '--kernel', NULL, '--json'], t.io)).toBe(0);
    const j = JSON.parse(t.out());
    expect(j.ovmf.launchDigest).toBe('086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74');
    expect(j.kernelHashes.cmdlineSha256).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d'); // SHA-256("\0")
    expect(j.vmsa.ap).toMatch(/^[0-9a-f]{96}$/);
    expect(j.steps.map((s: { what: string }) => s.what)).toContain('SNP_KERNEL_HASHES (SEV hashes table)');
    expect(j.steps.at(-1).digest).toBe(j.measurement);
  });

  it('SVSM and SEV-ES modes', async () => {
    const d = (f: string) => vectorPath(`measure/sev-snp-measure/${f}`);
    const t = io();
    expect(await main(['measure', 'snp', '--ovmf', d('svsm_ovmf.fd'), '--svsm', d('svsm.bin'), '--vars-size', '540672', '--vcpus', '2', '--vcpu-type', 'EPYC-v4'], t.io)).toBe(0);
    expect(t.out()).toBe('9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7\n');
    const e = io();
    expect(await main(['measure', 'snp', '--sev-es', '--ovmf', AMD(), '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--kernel', NULL, '--initrd', NULL, '--append', ''], e.io)).toBe(0);
    expect(e.out()).toBe('13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c\n');
  });

  it('--expected and --report compare with what a guest reported (exit 1 when different)', async () => {
    const args = ['measure', 'snp', '--ovmf', AMD(), '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--guest-features', '0x21'];
    const same = io();
    expect(await main([...args, '--expected', '0xE1E1CA029DD7973AB9513295BE68198472DCD4FC834BD9AF9B63F6E8A1674DBF281A9278A4A2EBE0EED9F22ADBCD0E2B'], same.io)).toBe(0);
    const other = io();
    expect(await main([...args, '--report', vectorPath('sev-snp/azure-genoa/genoa-hcl-snp-report.bin'), '--json'], other.io)).toBe(1);
    const j = JSON.parse(other.out());
    expect(j).toMatchObject({ expected: 'f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae', matches: false });
    expect(other.err()).toContain('the computed MEASUREMENT differs from');
    const short = io();
    expect(await main([...args, '--expected', 'abcd'], short.io)).toBe(2);
  });

  it.each([
    [['--vcpus', '1', '--vcpu-type', 'EPYC-v4'], '--ovmf is required'],
    [['--ovmf', 'X', '--vcpus', '1', '--vcpu-type', 'EPYC-v9'], 'is not one of'],
    [['--ovmf', 'X', '--vcpus', '1', '--vcpu-type', 'EPYC', '--vcpu-sig', '1'], 'not both'],
    [['--ovmf', 'X', '--vcpus', '1', '--vmm', 'azure'], 'is not qemu, ec2 or gce'],
    [['--ovmf', 'X', '--vcpus', 'two'], 'not a decimal or 0x-hex integer'],
    [['--ovmf', 'X', '--vcpus', '1', '--frobnicate'], "unknown option '--frobnicate'"],
  ])('usage error (exit 2): %j', async (args, msg) => {
    const t = io();
    expect(await main(['measure', 'snp', ...args], t.io)).toBe(2);
    expect(t.err()).toContain(msg);
  });

  it('a kernel with an OVMF build that cannot measure it is an input error naming the missing section', async () => {
    const t = io();
    const x64 = vectorPath('measure/sev-snp-measure/ovmf_OvmfX64_suffix.bin');
    expect(await main(['measure', 'snp', '--ovmf', x64, '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--kernel', NULL], t.io)).toBe(2);
    expect(t.err()).toContain('MEASURE_NO_KERNEL_HASHES');
    expect(t.out()).toBe('');
  });
});
