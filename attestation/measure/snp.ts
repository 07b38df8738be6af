/**
 * The SEV-SNP launch digest (the report's MEASUREMENT), computed offline from the pieces the VMM loads.
 *
 * AMD SEV Secure Nested Paging Firmware ABI Specification (#56860), SNP_LAUNCH_UPDATE, "PAGE_INFO": for every page
 * the VMM adds, the firmware sets LD := SHA-384(PAGE_INFO), PAGE_INFO being 0x70 bytes:
 *   DIGEST_CUR[48] (LD so far, zero at SNP_LAUNCH_START) ‖ CONTENTS[48] ‖ LENGTH u16 = 0x70 ‖ PAGE_TYPE u8 ‖
 *   IMI_PAGE u8 ‖ VMPL3_PERMS u8 ‖ VMPL2_PERMS u8 ‖ VMPL1_PERMS u8 ‖ reserved u8 ‖ GPA u64.
 * CONTENTS is SHA-384 of the page for NORMAL (1) and VMSA (2) pages and zero for ZERO (3), UNMEASURED (4),
 * SECRETS (5) and CPUID (6) pages. VMSA pages are recorded at GPA 0xFFFFFFFFF000 (−1, page-aligned, 52-bit).
 *
 * Order, as QEMU (and EC2, GCE) launch an OVMF guest: the firmware image as NORMAL pages ending at 4 GiB; then the
 * OVMF SEV metadata sections in order (SNP_SEC_MEM as ZERO pages, UNMEASURED on GCE; SNP_SECRETS; CPUID, which EC2
 * adds after all other sections; SVSM_CAA as ZERO; SNP_KERNEL_HASHES as one NORMAL page holding QEMU's SEV hashes
 * table when a kernel is given, else ZERO); then one VMSA per vCPU, BSP first.
 * With a Coconut SVSM, the OVMF image and then the SVSM image (ending at the OVMF's GPA minus the variable store)
 * are NORMAL pages, the SVSM's own metadata sections follow, and every vCPU gets the SVSM entry VMSA.
 *
 * Pure computation over Uint8Array with @noble/hashes (synchronous SHA-384, no Node APIs): it runs wherever the
 * verifiers run.
 */
import { sha256, sha384 } from '@noble/hashes/sha2.js';
import { hex } from '../bytes.ts';
import { configError } from '../errors.ts';
import { FOUR_GIB, PAGE, type SevFirmware, SectionType, parseSevFirmware } from './sev-firmware.ts';
import { type KernelHashes, SEV_HASHES_TABLE_SIZE, kernelHashes, sevHashesTable } from './sev-hashes.ts';
import { BSP_EIP, type Vmm, resetVmsa, svsmVmsa } from './vmsa.ts';

export const PageType = { NORMAL: 1, VMSA: 2, ZERO: 3, UNMEASURED: 4, SECRETS: 5, CPUID: 6 } as const;
export const VMSA_GPA = 0xfffffffff000;
const PAGE_INFO_LEN = 0x70;
const ZERO48 = new Uint8Array(48);

/** The running launch digest (one SNP_LAUNCH_UPDATE per page). */
export class LaunchDigest {
  private ld: Uint8Array;
  pages = 0;

  constructor(seed: Uint8Array = ZERO48) {
    if (seed.length !== 48) throw configError('MEASURE_INPUT_INVALID', `a launch digest seed is 48 bytes, got ${seed.length}`);
    this.ld = Uint8Array.from(seed);
  }

  get value(): Uint8Array {
    return Uint8Array.from(this.ld);
  }

  update(pageType: number, gpa: number, contents: Uint8Array): void {
    const info = new Uint8Array(PAGE_INFO_LEN);
    const dv = new DataView(info.buffer);
    info.set(this.ld, 0);
    info.set(contents, 48);
    dv.setUint16(96, PAGE_INFO_LEN, true);
    info[98] = pageType;
    // IMI_PAGE and the VMPL1..3 permissions are zero for pages the VMM adds at launch.
    dv.setBigUint64(104, BigInt(gpa), true);
    this.ld = sha384(info);
    this.pages++;
  }

  normal(gpa: number, data: Uint8Array): void {
    for (let o = 0; o < data.length; o += PAGE) this.update(PageType.NORMAL, gpa + o, sha384(data.subarray(o, o + PAGE)));
  }

  empty(pageType: number, gpa: number, size: number): void {
    for (let o = 0; o < size; o += PAGE) this.update(pageType, gpa + o, ZERO48);
  }

  vmsa(page: Uint8Array): void {
    this.update(PageType.VMSA, VMSA_GPA, sha384(page));
  }
}

export interface SnpMeasureOptions {
  /** OVMF image (whole flash image, or at least its last pages holding the footer table and metadata). */
  readonly ovmf: Uint8Array;
  /** Launch digest after the OVMF pages, when known in advance (the image is then used only for its metadata). */
  readonly ovmfHash?: Uint8Array;
  /** Measured direct boot: kernel image; initrd and command line are only meaningful with it. */
  readonly kernel?: Uint8Array;
  readonly initrd?: Uint8Array;
  readonly append?: string;
  readonly vcpus: number;
  /** CPUID signature placed in RDX (QEMU only; EC2 and GCE use 0x600). */
  readonly vcpuSig?: number;
  readonly vmm: Vmm;
  /** SEV_FEATURES of the guest (bit 0 SNPActive must be set). */
  readonly guestFeatures: bigint;
  /** Coconut SVSM image and the size of the OVMF variable store between it and OVMF (QEMU only). */
  readonly svsm?: Uint8Array;
  readonly varsSize?: number;
}

export interface MeasureStep {
  readonly what: string;
  readonly pageType: string;
  readonly gpa: string;
  readonly pages: number;
  /** Launch digest after this step. */
  readonly digest: string;
}

export interface SnpMeasurement {
  /** The 48-byte MEASUREMENT as the attestation report carries it. */
  readonly measurement: Uint8Array;
  /** Digests of every input, for an audit trail (hex). */
  readonly inputs: Record<string, unknown>;
  readonly steps: readonly MeasureStep[];
}

const PAGE_TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(PageType).map(([k, v]) => [v, k]));
const h16 = (n: number) => `0x${n.toString(16)}`;

function checkCommon(o: SnpMeasureOptions): void {
  const bad = (msg: string) => configError('MEASURE_INPUT_INVALID', msg);
  if (!Number.isInteger(o.vcpus) || o.vcpus < 1 || o.vcpus > 512) throw bad(`vCPU count ${o.vcpus} is not in 1..512`);
  if ((o.guestFeatures & 1n) !== 1n || o.guestFeatures < 0n || o.guestFeatures >= 1n << 64n)
    throw bad(`guest features 0x${o.guestFeatures.toString(16)} must be a 64-bit value with bit 0 (SNPActive) set`);
  if (o.vmm === 'qemu' && o.vcpuSig === undefined) throw bad('QEMU puts the vCPU signature in RDX: give a vCPU type or signature');
  if (o.vmm !== 'qemu' && o.vcpuSig !== undefined) throw bad(`${o.vmm} sets RDX to 0x600 whatever the vCPU; a vCPU type or signature does not apply`);
  if (o.vcpuSig !== undefined && (!Number.isInteger(o.vcpuSig) || o.vcpuSig < 0 || o.vcpuSig > 0xffffffff)) throw bad('vCPU signature is not a 32-bit value');
  if (o.kernel === undefined && (o.initrd !== undefined || o.append !== undefined)) throw bad('an initrd or command line is measured only with a kernel');
  if (o.ovmfHash !== undefined && o.ovmfHash.length !== 48) throw bad(`the OVMF hash is 48 bytes, got ${o.ovmfHash.length}`);
}

/** SNP MEASUREMENT of an OVMF guest, optionally with measured direct boot or a Coconut SVSM. */
export function measureSnp(o: SnpMeasureOptions): SnpMeasurement {
  checkCommon(o);
  if (o.svsm !== undefined) return measureSvsm(o);
  if (o.varsSize !== undefined) throw configError('MEASURE_INPUT_INVALID', 'a variable-store size applies only with an SVSM');
  const fw = parseSevFirmware(o.ovmf, 'OVMF');
  const steps: MeasureStep[] = [];
  const ld = new LaunchDigest(o.ovmfHash);
  const step = (what: string, pageType: number, gpa: number, pages: number) =>
    steps.push({ what, pageType: PAGE_TYPE_NAMES[pageType]!, gpa: h16(gpa), pages, digest: hex(ld.value) });

  if (o.ovmfHash === undefined) {
    ld.normal(fw.gpa, fw.image);
    step('OVMF', PageType.NORMAL, fw.gpa, fw.image.length / PAGE);
  } else steps.push({ what: 'OVMF (given hash)', pageType: 'NORMAL', gpa: h16(fw.gpa), pages: fw.image.length / PAGE, digest: hex(ld.value) });

  const hashes = o.kernel === undefined ? undefined : kernelHashes(o.kernel, o.initrd, o.append ?? '');
  if (hashes && !fw.sections.some((s) => s.type === SectionType.SNP_KERNEL_HASHES))
    throw configError('MEASURE_NO_KERNEL_HASHES', 'a kernel was given but the OVMF metadata has no SNP_KERNEL_HASHES section (this OVMF build does not support measured direct boot)');
  metadataPages(ld, fw, hashes, o.vmm, step);

  const apEip = fw.apResetEip;
  if (o.vcpus > 1 && (apEip === undefined || apEip === 0)) throw configError('MEASURE_FIRMWARE_INVALID', 'OVMF has no SEV-ES reset block, so APs have no start address');
  const vo = { vmm: o.vmm, sevFeatures: o.guestFeatures, vcpuSig: o.vcpuSig ?? 0 };
  const bsp = resetVmsa(BSP_EIP, vo);
  const ap = o.vcpus > 1 ? resetVmsa(apEip!, vo) : undefined;
  for (let i = 0; i < o.vcpus; i++) ld.vmsa(i === 0 ? bsp : ap!);
  step(`VMSA × ${o.vcpus}`, PageType.VMSA, VMSA_GPA, o.vcpus);

  const measurement = ld.value;
  return {
    measurement,
    inputs: {
      mode: 'snp', vmm: o.vmm, vcpus: o.vcpus, vcpuSig: o.vcpuSig === undefined ? null : h16(o.vcpuSig),
      guestFeatures: `0x${o.guestFeatures.toString(16)}`,
      ovmf: { bytes: fw.image.length, gpa: h16(fw.gpa), sha256: hex(sha256(fw.image)), sha384: hex(sha384(fw.image)), launchDigest: steps[0]!.digest },
      ...(o.ovmfHash ? { ovmfHashGiven: hex(o.ovmfHash) } : {}),
      sections: fw.sections.map((s) => ({ type: s.typeName, gpa: h16(s.gpa), size: h16(s.size) })),
      ...(hashes ? { kernelHashes: hashesJson(hashes, o.append ?? '') } : {}),
      apResetEip: apEip === undefined ? null : h16(apEip),
      vmsa: { bsp: hex(sha384(bsp)), ...(ap ? { ap: hex(sha384(ap)) } : {}) },
      measurement: hex(measurement),
    },
    steps,
  };
}

function hashesJson(h: KernelHashes, append: string): Record<string, string> {
  return { kernelSha256: hex(h.kernel), initrdSha256: hex(h.initrd), cmdline: append, cmdlineSha256: hex(h.cmdline), table: hex(sevHashesTable(h)) };
}

function metadataPages(
  ld: LaunchDigest, fw: SevFirmware, hashes: KernelHashes | undefined, vmm: Vmm,
  step: (what: string, pageType: number, gpa: number, pages: number) => void,
): void {
  for (const s of fw.sections) {
    switch (s.type) {
      case SectionType.SNP_SEC_MEM: {
        const t = vmm === 'gce' ? PageType.UNMEASURED : PageType.ZERO;
        ld.empty(t, s.gpa, s.size);
        step(s.typeName, t, s.gpa, s.size / PAGE);
        break;
      }
      case SectionType.SNP_SECRETS:
        ld.empty(PageType.SECRETS, s.gpa, PAGE);
        step(s.typeName, PageType.SECRETS, s.gpa, 1);
        break;
      case SectionType.CPUID:
        if (vmm === 'ec2') break; // EC2 adds the CPUID page after every other section (below).
        ld.empty(PageType.CPUID, s.gpa, PAGE);
        step(s.typeName, PageType.CPUID, s.gpa, 1);
        break;
      case SectionType.SVSM_CAA:
        ld.empty(PageType.ZERO, s.gpa, s.size);
        step(s.typeName, PageType.ZERO, s.gpa, s.size / PAGE);
        break;
      case SectionType.SNP_KERNEL_HASHES:
        if (hashes) {
          ld.normal(s.gpa, hashesPage(fw, s.gpa, s.size, hashes));
          step(`${s.typeName} (SEV hashes table)`, PageType.NORMAL, s.gpa, 1);
        } else {
          ld.empty(PageType.ZERO, s.gpa, s.size);
          step(s.typeName, PageType.ZERO, s.gpa, s.size / PAGE);
        }
        break;
    }
  }
  if (vmm === 'ec2') {
    for (const s of fw.sections.filter((x) => x.type === SectionType.CPUID)) {
      ld.empty(PageType.CPUID, s.gpa, PAGE);
      step(`${s.typeName} (EC2 order)`, PageType.CPUID, s.gpa, 1);
    }
  }
}

/** The SNP_KERNEL_HASHES page: zeros with the SEV hashes table at SEV_HASH_TABLE_RV's offset within the page. */
function hashesPage(fw: SevFirmware, gpa: number, size: number, h: KernelHashes): Uint8Array {
  const bad = (msg: string) => configError('MEASURE_FIRMWARE_INVALID', `OVMF: ${msg}`);
  if (size !== PAGE) throw bad(`SNP_KERNEL_HASHES section is ${size} bytes, expected one page`);
  const at = fw.hashesTableGpa;
  if (at === undefined || at === 0) throw bad('SNP_KERNEL_HASHES section present but no SEV_HASH_TABLE_RV entry gives the table address');
  if (at < gpa || at + SEV_HASHES_TABLE_SIZE > gpa + PAGE) throw bad(`SEV hashes table at 0x${at.toString(16)} is not inside the SNP_KERNEL_HASHES page at 0x${gpa.toString(16)}`);
  const page = new Uint8Array(PAGE);
  page.set(sevHashesTable(h), at - gpa);
  return page;
}

function measureSvsm(o: SnpMeasureOptions): SnpMeasurement {
  const bad = (msg: string) => configError('MEASURE_INPUT_INVALID', msg);
  if (o.vmm !== 'qemu') throw bad('an SVSM launch is defined here for QEMU only');
  if (o.kernel !== undefined) throw bad('measured direct boot does not apply with an SVSM (OVMF runs under the SVSM)');
  if (o.ovmfHash !== undefined) throw bad('a precomputed OVMF hash does not apply with an SVSM');
  if (o.guestFeatures !== 1n) throw bad('with an SVSM the VMSA carries SEV_FEATURES 0x1 (SNPActive only); other guest features do not apply');
  const varsSize = o.varsSize;
  if (varsSize === undefined || !Number.isInteger(varsSize) || varsSize < 0 || varsSize % PAGE !== 0) throw bad('an SVSM launch needs the OVMF variable-store size, a multiple of 4096');
  // OVMF is only loaded (its metadata is the SVSM's concern), so only its size matters beyond the page contents.
  if (o.ovmf.length === 0 || o.ovmf.length % PAGE !== 0) throw configError('MEASURE_FIRMWARE_INVALID', `OVMF: image is ${o.ovmf.length} bytes, not a non-zero multiple of ${PAGE}`);
  const ovmfGpa = FOUR_GIB - o.ovmf.length;
  const svsm = parseSevFirmware(o.svsm!, 'SVSM', ovmfGpa - varsSize);
  if (svsm.svsmEntryOffset === undefined) throw configError('MEASURE_FIRMWARE_INVALID', 'SVSM: no SVSM_INFO entry in its footer table');
  const eip = svsm.gpa + svsm.svsmEntryOffset;
  const steps: MeasureStep[] = [];
  const ld = new LaunchDigest();
  const step = (what: string, pageType: number, gpa: number, pages: number) =>
    steps.push({ what, pageType: PAGE_TYPE_NAMES[pageType]!, gpa: h16(gpa), pages, digest: hex(ld.value) });
  ld.normal(ovmfGpa, o.ovmf);
  step('OVMF', PageType.NORMAL, ovmfGpa, o.ovmf.length / PAGE);
  ld.normal(svsm.gpa, svsm.image);
  step('SVSM', PageType.NORMAL, svsm.gpa, svsm.image.length / PAGE);
  metadataPages(ld, svsm, undefined, 'qemu', step);
  const vmsa = svsmVmsa(eip, o.vcpuSig!);
  for (let i = 0; i < o.vcpus; i++) ld.vmsa(vmsa);
  step(`VMSA × ${o.vcpus}`, PageType.VMSA, VMSA_GPA, o.vcpus);
  const measurement = ld.value;
  return {
    measurement,
    inputs: {
      mode: 'snp-svsm', vmm: 'qemu', vcpus: o.vcpus, vcpuSig: h16(o.vcpuSig!), guestFeatures: '0x1',
      ovmf: { bytes: o.ovmf.length, gpa: h16(ovmfGpa), sha256: hex(sha256(o.ovmf)), sha384: hex(sha384(o.ovmf)) },
      varsSize,
      svsm: { bytes: svsm.image.length, gpa: h16(svsm.gpa), entry: h16(eip), sha256: hex(sha256(svsm.image)), sha384: hex(sha384(svsm.image)) },
      sections: svsm.sections.map((s) => ({ type: s.typeName, gpa: h16(s.gpa), size: h16(s.size) })),
      vmsa: { all: hex(sha384(vmsa)) },
      measurement: hex(measurement),
    },
    steps,
  };
}

export interface SevEsMeasureOptions {
  readonly ovmf: Uint8Array;
  readonly kernel?: Uint8Array;
  readonly initrd?: Uint8Array;
  readonly append?: string;
  readonly vcpus: number;
  readonly vcpuSig?: number;
  readonly vmm: Vmm;
}

/**
 * SEV-ES launch digest (AMD SEV API #55766, LAUNCH_UPDATE_DATA / LAUNCH_UPDATE_VMSA; 32 bytes): SHA-256 over the
 * OVMF image, the padded SEV hashes table (measured direct boot) and every vCPU's VMSA (SEV_FEATURES 0).
 */
export function measureSevEs(o: SevEsMeasureOptions): SnpMeasurement {
  checkCommon({ ...o, guestFeatures: 1n });
  const fw = parseSevFirmware(o.ovmf, 'OVMF');
  const parts: Uint8Array[] = [fw.image];
  const hashes = o.kernel === undefined ? undefined : kernelHashes(o.kernel, o.initrd, o.append ?? '');
  if (hashes) {
    if (!fw.hashesTableGpa) throw configError('MEASURE_NO_KERNEL_HASHES', 'a kernel was given but this OVMF has no SEV hashes table (no measured direct boot)');
    parts.push(sevHashesTable(hashes));
  }
  if (o.vcpus > 1 && !fw.apResetEip) throw configError('MEASURE_FIRMWARE_INVALID', 'OVMF has no SEV-ES reset block, so APs have no start address');
  const vo = { vmm: o.vmm, sevFeatures: 0n, vcpuSig: o.vcpuSig ?? 0 };
  const bsp = resetVmsa(BSP_EIP, vo);
  const ap = o.vcpus > 1 ? resetVmsa(fw.apResetEip!, vo) : undefined;
  for (let i = 0; i < o.vcpus; i++) parts.push(i === 0 ? bsp : ap!);
  const h = sha256.create();
  for (const p of parts) h.update(p);
  const measurement = h.digest();
  return {
    measurement,
    inputs: {
      mode: 'sev-es', vmm: o.vmm, vcpus: o.vcpus, vcpuSig: o.vcpuSig === undefined ? null : h16(o.vcpuSig),
      ovmf: { bytes: fw.image.length, sha256: hex(sha256(fw.image)) },
      ...(hashes ? { kernelHashes: hashesJson(hashes, o.append ?? '') } : {}),
      vmsa: { bsp: hex(sha256(bsp)), ...(ap ? { ap: hex(sha256(ap)) } : {}) },
      measurement: hex(measurement),
    },
    steps: [],
  };
}
