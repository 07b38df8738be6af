/**
 * SEV-SNP launch digests against every expected value published with virtee/sev-snp-measure's fixtures
 * (vectors/measure/sev-snp-measure/, PROVENANCE.md there), plus strictness of the firmware parsers.
 */
import { describe, expect, it } from 'vitest';
import { fromHex, hex } from '../bytes.ts';
import { isGmError } from '../errors.ts';
import { hasVectors, vector } from '../../test/vectors.ts';
import { OVMF_TABLE_FOOTER_GUID, guidBytes, guidString, parseGuidTable } from './guid-table.ts';
import { measureSevEs, measureSnp, type SnpMeasureOptions } from './snp.ts';
import { parseSevFirmware } from './sev-firmware.ts';
import { VCPU_TYPES, cpuSignature } from './vcpu.ts';

const DIR = 'measure/sev-snp-measure/';
const EMPTY = new Uint8Array(0);
type Row = { name: string; ovmf: string; boot: 'empty' | 'cmdline' | 'none'; vcpus: number; gf: bigint; vmm: 'qemu' | 'ec2' | 'gce'; ovmfHash?: true; expect: string };

// Transcribed from PROVENANCE.md (each row is one assertion of that project's test suite at the pinned commit).
const SNP: Row[] = [
  { name: 'given OVMF hash, GF 0x21', ovmf: 'AmdSev', boot: 'empty', vcpus: 1, gf: 0x21n, vmm: 'qemu', ovmfHash: true, expect: '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198' },
  { name: 'given OVMF hash, GF 0x1', ovmf: 'AmdSev', boot: 'empty', vcpus: 1, gf: 0x1n, vmm: 'qemu', ovmfHash: true, expect: 'ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5' },
  { name: 'empty kernel, GF 0x21', ovmf: 'AmdSev', boot: 'empty', vcpus: 1, gf: 0x21n, vmm: 'qemu', expect: '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198' },
  { name: 'empty kernel, GF 0x1', ovmf: 'AmdSev', boot: 'empty', vcpus: 1, gf: 0x1n, vmm: 'qemu', expect: 'ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5' },
  { name: 'command line, GF 0x21', ovmf: 'AmdSev', boot: 'cmdline', vcpus: 1, gf: 0x21n, vmm: 'qemu', expect: '803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977' },
  { name: 'command line, GF 0x1', ovmf: 'AmdSev', boot: 'cmdline', vcpus: 1, gf: 0x1n, vmm: 'qemu', expect: '6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa' },
  { name: 'EC2, GF 0x21', ovmf: 'AmdSev', boot: 'empty', vcpus: 1, gf: 0x21n, vmm: 'ec2', expect: '0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb' },
  { name: 'EC2, GF 0x1', ovmf: 'AmdSev', boot: 'empty', vcpus: 1, gf: 0x1n, vmm: 'ec2', expect: '0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056' },
  { name: 'GCE 1 vCPU', ovmf: 'AmdSev', boot: 'empty', vcpus: 1, gf: 0x1n, vmm: 'gce', expect: '5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e' },
  { name: 'GCE 4 vCPUs', ovmf: 'AmdSev', boot: 'empty', vcpus: 4, gf: 0x1n, vmm: 'gce', expect: '5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d' },
  { name: 'no kernel hashes, GF 0x21', ovmf: 'AmdSev', boot: 'none', vcpus: 1, gf: 0x21n, vmm: 'qemu', expect: 'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b' },
  { name: 'no kernel hashes, GF 0x1', ovmf: 'AmdSev', boot: 'none', vcpus: 1, gf: 0x1n, vmm: 'qemu', expect: '19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d' },
  { name: '4 vCPUs, GF 0x21', ovmf: 'AmdSev', boot: 'empty', vcpus: 4, gf: 0x21n, vmm: 'qemu', expect: '4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942' },
  { name: '4 vCPUs, GF 0x1', ovmf: 'AmdSev', boot: 'empty', vcpus: 4, gf: 0x1n, vmm: 'qemu', expect: '5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5' },
  { name: 'OvmfX64, GF 0x21', ovmf: 'OvmfX64', boot: 'none', vcpus: 1, gf: 0x21n, vmm: 'qemu', expect: '28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385' },
  { name: 'OvmfX64, GF 0x1', ovmf: 'OvmfX64', boot: 'none', vcpus: 1, gf: 0x1n, vmm: 'qemu', expect: 'da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005' },
];
const OVMF_HASH = '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74';
const EPYC_V4 = VCPU_TYPES['EPYC-v4']!;

function options(r: Row): SnpMeasureOptions {
  const ovmf = vector(`${DIR}ovmf_${r.ovmf}_suffix.bin`);
  const boot = r.boot === 'none' ? {} : { kernel: EMPTY, initrd: EMPTY, append: r.boot === 'cmdline' ? 'console=ttyS0 loglevel=7' : '' };
  return {
    ovmf, ...boot, vcpus: r.vcpus, vmm: r.vmm, guestFeatures: r.gf,
    ...(r.vmm === 'qemu' ? { vcpuSig: EPYC_V4 } : {}),
    ...(r.ovmfHash ? { ovmfHash: fromHex(OVMF_HASH) } : {}),
  };
}

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return undefined;
}

describe.skipIf(!hasVectors)('SEV-SNP launch digest: sev-snp-measure expected values', () => {
  it.each(SNP)('$name', (r) => {
    expect(hex(measureSnp(options(r)).measurement)).toBe(r.expect);
  });

  it('the digest after the OVMF pages alone is the published OVMF hash', () => {
    const m = measureSnp({ ovmf: vector(`${DIR}ovmf_AmdSev_suffix.bin`), vcpus: 1, vcpuSig: EPYC_V4, vmm: 'qemu', guestFeatures: 1n });
    expect(m.steps[0]).toMatchObject({ what: 'OVMF', digest: OVMF_HASH });
  });

  it('a kernel with an OVMF build that lacks SNP_KERNEL_HASHES is refused', () => {
    const r = { ...SNP[14]!, boot: 'empty' as const };
    expect(code(() => measureSnp(options(r)))).toBe('MEASURE_NO_KERNEL_HASHES');
  });

  it.each([
    { vcpus: 4, expect: '27d154c27b7b359c935e250ec6fee72aa0ae8c1225e3b0e1cf46a9567e938066d7d6f94bbdc4a857818bdb79277a44b2' },
    { vcpus: 2, expect: '9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7' },
  ])('Coconut SVSM with $vcpus vCPUs', ({ vcpus, expect: want }) => {
    const m = measureSnp({ ovmf: vector(`${DIR}svsm_ovmf.fd`), svsm: vector(`${DIR}svsm.bin`), varsSize: 540672, vcpus, vcpuSig: EPYC_V4, vmm: 'qemu', guestFeatures: 1n });
    expect(hex(m.measurement)).toBe(want);
  });

  it.each([
    { vcpus: 1, expect: '13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c' },
    { vcpus: 4, expect: '0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91' },
  ])('SEV-ES with $vcpus vCPUs (SHA-256)', ({ vcpus, expect: want }) => {
    const m = measureSevEs({ ovmf: vector(`${DIR}ovmf_AmdSev_suffix.bin`), kernel: EMPTY, initrd: EMPTY, append: '', vcpus, vcpuSig: EPYC_V4, vmm: 'qemu' });
    expect(hex(m.measurement)).toBe(want);
  });

  it('every input changes the digest: one OVMF bit, the kernel, initrd, command line, vCPU signature', () => {
    const base = options(SNP[2]!);
    const d = (o: SnpMeasureOptions) => hex(measureSnp(o).measurement);
    const seen = new Set([d(base)]);
    const flipped = Uint8Array.from(base.ovmf);
    flipped[100]! ^= 1;
    for (const o of [
      { ...base, ovmf: flipped }, { ...base, kernel: new Uint8Array([1]) }, { ...base, initrd: new Uint8Array([1]) },
      { ...base, append: 'quiet' }, { ...base, vcpuSig: VCPU_TYPES['EPYC-Milan']! }, { ...base, vcpus: 2 },
    ]) seen.add(d(o));
    expect(seen.size).toBe(7);
  });

  it('reports each input digest in the audit record', () => {
    const m = measureSnp(options(SNP[4]!));
    const k = m.inputs.kernelHashes as Record<string, string>;
    expect(k.kernelSha256).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'); // SHA-256("")
    expect(k.cmdline).toBe('console=ttyS0 loglevel=7');
    expect(m.inputs.measurement).toBe(SNP[4]!.expect);
    expect(m.steps.at(-1)!.digest).toBe(SNP[4]!.expect);
  });
});

describe.skipIf(!hasVectors)('SEV-SNP measurement: input checks', () => {
  const amd = () => vector(`${DIR}ovmf_AmdSev_suffix.bin`);
  const base = (): SnpMeasureOptions => ({ ovmf: amd(), vcpus: 1, vcpuSig: EPYC_V4, vmm: 'qemu', guestFeatures: 1n });

  it.each([
    ['QEMU without a vCPU signature', { vcpuSig: undefined }],
    ['EC2 with a vCPU signature', { vmm: 'ec2' }],
    ['0 vCPUs', { vcpus: 0 }],
    ['guest features without SNPActive', { guestFeatures: 0x20n }],
    ['an initrd without a kernel', { initrd: EMPTY }],
    ['a 47-byte OVMF hash', { ovmfHash: new Uint8Array(47) }],
    ['a vars size without an SVSM', { varsSize: 4096 }],
  ] as const)('refuses %s', (_n, patch) => {
    expect(code(() => measureSnp({ ...base(), ...patch } as SnpMeasureOptions))).toBe('MEASURE_INPUT_INVALID');
  });

  it('refuses SVSM inputs that do not apply', () => {
    const s = { ...base(), ovmf: vector(`${DIR}svsm_ovmf.fd`), svsm: vector(`${DIR}svsm.bin`), varsSize: 540672 };
    expect(code(() => measureSnp({ ...s, guestFeatures: 0x21n }))).toBe('MEASURE_INPUT_INVALID');
    expect(code(() => measureSnp({ ...s, varsSize: 100 }))).toBe('MEASURE_INPUT_INVALID');
    expect(code(() => measureSnp({ ...s, kernel: EMPTY }))).toBe('MEASURE_INPUT_INVALID');
    expect(code(() => measureSnp({ ...s, svsm: amd() }))).toBe('MEASURE_FIRMWARE_INVALID'); // an OVMF has no SVSM_INFO
  });

  it('refuses an image that is not whole pages, or has no footer table', () => {
    expect(code(() => measureSnp({ ...base(), ovmf: amd().subarray(1) }))).toBe('MEASURE_FIRMWARE_INVALID');
    expect(code(() => measureSnp({ ...base(), ovmf: new Uint8Array(4096) }))).toBe('MEASURE_FIRMWARE_NO_TABLE');
  });

  it('refuses a damaged SEV metadata block', () => {
    const img = amd();
    const fw = parseSevFirmware(img, 'OVMF');
    expect(fw.sections.map((s) => s.typeName)).toEqual(['SNP_SEC_MEM', 'SNP_SEC_MEM', 'SNP_SECRETS', 'CPUID', 'SVSM_CAA', 'SNP_KERNEL_HASHES', 'SNP_SEC_MEM']);
    const at = img.length - new DataView(parseGuidTable(img, 'x').get('dc886566-984a-4798-a75e-5585a7bf67cc')!.slice().buffer).getUint32(0, true);
    for (const [off, v] of [[0, 0x42], [8, 2], [4, 0xff], [16 + 8, 0x99], [16 + 1, 0x01]] as const) {
      const bad = Uint8Array.from(img);
      bad[at + off] = v;
      expect(code(() => parseSevFirmware(bad, 'OVMF')), `byte ${off}`).toBe('MEASURE_FIRMWARE_INVALID');
    }
  });

  it('refuses a footer table whose entry sizes do not fit', () => {
    const img = Uint8Array.from(amd());
    const footer = img.length - 32 - 18;
    new DataView(img.buffer).setUint16(footer, 5000, true);
    expect(code(() => parseGuidTable(img, 'OVMF'))).toBe('MEASURE_FIRMWARE_INVALID');
    const img2 = Uint8Array.from(amd());
    new DataView(img2.buffer).setUint16(footer - 18, 3, true); // the entry just before the footer: size below its trailer
    expect(code(() => parseGuidTable(img2, 'OVMF'))).toBe('MEASURE_FIRMWARE_INVALID');
  });
});

describe('GUIDs and CPU signatures', () => {
  it('round-trips EFI_GUID byte order', () => {
    const b = guidBytes(OVMF_TABLE_FOOTER_GUID);
    expect(hex(b)).toBe('de82b596b21ff745baeaa366c55a082d');
    expect(guidString(b)).toBe(OVMF_TABLE_FOOTER_GUID);
  });
  it('encodes family/model/stepping as CPUID Fn0000_0001_EAX', () => {
    expect(cpuSignature(23, 1, 2)).toBe(0x800f12);
    expect(VCPU_TYPES['EPYC-Milan']).toBe(0xa00f11);
    expect(VCPU_TYPES['EPYC-Genoa']).toBe(0xa10f10);
    expect(VCPU_TYPES['EPYC-Turin']).toBe(0xb00f00);
  });
});
