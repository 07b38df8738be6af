/**
 * What SEV-SNP launch measurement needs from an OVMF (or Coconut SVSM) image: its GUIDed footer table entries and
 * its SEV metadata.
 *
 * - SEV_ES_RESET_BLOCK (00f771de-…): u32 address where application processors start (OvmfPkg/ResetVector
 *   Ia16/ResetVectorVtf0.asm). Needed for the AP VMSAs.
 * - SEV_HASH_TABLE_RV (7255371f-…): u32 GPA and u32 size of the area where QEMU writes the kernel/initrd/cmdline
 *   hashes table (OvmfPkg/AmdSev, measured direct boot).
 * - OVMF_SEV_METADATA (dc886566-…): u32 offset, counted from the end of the image, of the "ASEV" metadata
 *   (OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm): signature "ASEV", u32 length, u32 version (1), u32 count, then
 *   `count` descriptors {u32 GPA, u32 length, u32 type}. Types: 1 SNP_SEC_MEM, 2 SNP_SECRETS, 3 CPUID,
 *   4 SVSM_CAA, 0x10 SNP_KERNEL_HASHES.
 * - SVSM_INFO (a789a612-…, Coconut SVSM's footer): u32 offset of the SVSM entry point from the image's start.
 * The image is loaded so that it ends at `endGpa` (4 GiB for OVMF, as QEMU maps the flash below 4 GiB).
 */
import { configError } from '../errors.ts';
import { entryU32, parseGuidTable } from './guid-table.ts';

export const SEV_ES_RESET_BLOCK_GUID = '00f771de-1a7e-4fcb-890e-68c77e2fb44e';
export const SEV_HASH_TABLE_RV_GUID = '7255371f-3a3b-4b04-927b-1da6efa8d454';
export const OVMF_SEV_METADATA_GUID = 'dc886566-984a-4798-a75e-5585a7bf67cc';
export const SVSM_INFO_GUID = 'a789a612-0597-4c4b-a49f-cbb1fe9d1ddd';

export const PAGE = 4096;
export const FOUR_GIB = 0x1_0000_0000;

export const SectionType = {
  SNP_SEC_MEM: 1,
  SNP_SECRETS: 2,
  CPUID: 3,
  SVSM_CAA: 4,
  SNP_KERNEL_HASHES: 0x10,
} as const;
const SECTION_NAMES: Record<number, string> = Object.fromEntries(Object.entries(SectionType).map(([k, v]) => [v, k]));

export interface SevSection {
  readonly gpa: number;
  readonly size: number;
  readonly type: number;
  readonly typeName: string;
}

export interface SevFirmware {
  readonly what: string;
  readonly image: Uint8Array;
  /** Guest-physical address of the image's first byte. */
  readonly gpa: number;
  readonly sections: readonly SevSection[];
  /** SEV_ES_RESET_BLOCK address, when the image has one. */
  readonly apResetEip: number | undefined;
  /** SEV_HASH_TABLE_RV GPA, when the image has one (0 means "not supported" in some builds). */
  readonly hashesTableGpa: number | undefined;
  /** SVSM_INFO entry offset, for a Coconut SVSM image. */
  readonly svsmEntryOffset: number | undefined;
}

const METADATA_HEADER = 16;
const DESCRIPTOR = 12;

/** Parses an image that is loaded to end at `endGpa`. The image must be a whole number of pages. */
export function parseSevFirmware(image: Uint8Array, what: string, endGpa: number = FOUR_GIB): SevFirmware {
  const bad = (msg: string) => configError('MEASURE_FIRMWARE_INVALID', `${what}: ${msg}`);
  if (image.length === 0 || image.length % PAGE !== 0) throw bad(`image is ${image.length} bytes, not a non-zero multiple of ${PAGE}`);
  if (endGpa % PAGE !== 0 || endGpa < image.length) throw bad(`cannot end at GPA 0x${endGpa.toString(16)}`);
  const table = parseGuidTable(image, what);
  const sections: SevSection[] = [];
  const metaOffset = entryU32(table, OVMF_SEV_METADATA_GUID, what, 'SEV metadata');
  if (metaOffset !== undefined) {
    const start = image.length - metaOffset;
    if (metaOffset > image.length || start + METADATA_HEADER > image.length) throw bad(`SEV metadata offset ${metaOffset} is outside the image`);
    const dv = new DataView(image.buffer, image.byteOffset + start, image.length - start);
    if (String.fromCharCode(...image.subarray(start, start + 4)) !== 'ASEV') throw bad('SEV metadata signature is not "ASEV"');
    const length = dv.getUint32(4, true);
    const version = dv.getUint32(8, true);
    const count = dv.getUint32(12, true);
    if (version !== 1) throw bad(`SEV metadata version ${version} is not 1`);
    if (length !== METADATA_HEADER + DESCRIPTOR * count) throw bad(`SEV metadata length ${length} does not match ${count} descriptors`);
    if (start + length > image.length) throw bad('SEV metadata runs past the end of the image');
    for (let i = 0; i < count; i++) {
      const o = METADATA_HEADER + DESCRIPTOR * i;
      const gpa = dv.getUint32(o, true);
      const size = dv.getUint32(o + 4, true);
      const type = dv.getUint32(o + 8, true);
      const typeName = SECTION_NAMES[type];
      if (typeName === undefined) throw bad(`SEV metadata section ${i} has unknown type 0x${type.toString(16)}`);
      if (gpa % PAGE !== 0 || size % PAGE !== 0 || size === 0) throw bad(`SEV metadata section ${i} (${typeName}) at 0x${gpa.toString(16)}+0x${size.toString(16)} is not whole pages`);
      if ((type === SectionType.SNP_SECRETS || type === SectionType.CPUID) && size !== PAGE) throw bad(`${typeName} section is ${size} bytes, expected one page`);
      sections.push({ gpa, size, type, typeName });
    }
  }
  return {
    what, image, gpa: endGpa - image.length, sections,
    apResetEip: entryU32(table, SEV_ES_RESET_BLOCK_GUID, what, 'SEV-ES reset block'),
    hashesTableGpa: entryU32(table, SEV_HASH_TABLE_RV_GUID, what, 'SEV hashes table'),
    svsmEntryOffset: entryU32(table, SVSM_INFO_GUID, what, 'SVSM info'),
  };
}
