/**
 * MRTD of a TD launched from a TDVF (TDX virtual firmware, OVMF built with TDX support).
 *
 * - TDVF metadata (Intel TDX Virtual Firmware Design Guide §11, edk2 OvmfPkg/ResetVector/X64/IntelTdxMetadata.asm):
 *   the footer GUID table entry e47a6535-… holds a u32 offset, counted from the end of the image, of
 *   TDVF_DESCRIPTOR {"TDVF", u32 length = 16 + 32·n, u32 version = 1, u32 n}, which is preceded by the GUID
 *   e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae and followed by n TDVF_SECTION {u32 DataOffset, u32 RawDataSize,
 *   u64 MemoryAddress, u64 MemoryDataSize, u32 Type, u32 Attributes}. Attributes: bit 0 MR.EXTEND, bit 1 PAGE.AUG.
 * - MRTD (Intel TDX Module ABI, TDH.MEM.PAGE.ADD and TDH.MR.EXTEND): one SHA-384 over a stream of 128-byte
 *   records. PAGE.ADD of a page adds "MEM.PAGE.ADD" (zero-padded to 16 bytes) ‖ GPA u64 ‖ zeros; MR.EXTEND of each
 *   256-byte chunk adds "MR.EXTEND" (padded to 16) ‖ GPA u64 ‖ zeros, then the chunk's 256 bytes.
 *   The VMM walks the sections in order; sections with PAGE.AUG are accepted later by the guest and are not in
 *   MRTD. Upstream KVM (KVM_TDX_INIT_MEM_REGION) adds and extends page by page ("single pass"); some earlier
 *   TDX host stacks added every page of a section before extending any ("two pass"), which gives another MRTD.
 * MRTD depends on the firmware image only: kernel, initrd, command line and ACPI tables are measured into RTMRs.
 */
import { sha384 } from '@noble/hashes/sha2.js';
import { configError } from '../errors.ts';
import { entryU32, guidString, parseGuidTable } from './guid-table.ts';

export const TDX_METADATA_OFFSET_GUID = 'e47a6535-984a-4798-865e-4685a7bf8ec2';
export const TDX_METADATA_GUID = 'e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae';
const PAGE = 4096;
const CHUNK = 256;
export const ATTR_MR_EXTEND = 1;
export const ATTR_PAGE_AUG = 2;

export const TDVF_SECTION_TYPES: Readonly<Record<number, string>> = {
  0: 'BFV', 1: 'CFV', 2: 'TD_HOB', 3: 'TEMP_MEM', 4: 'PERM_MEM', 5: 'PAYLOAD', 6: 'PAYLOAD_PARAM', 7: 'TD_INFO', 8: 'TD_PARAMS',
};

export interface TdvfSection {
  readonly dataOffset: number;
  readonly rawDataSize: number;
  readonly memoryAddress: bigint;
  readonly memoryDataSize: bigint;
  readonly type: number;
  readonly typeName: string;
  readonly attributes: number;
}

export function parseTdvf(image: Uint8Array, what = 'TDVF'): readonly TdvfSection[] {
  const bad = (msg: string) => configError('MEASURE_FIRMWARE_INVALID', `${what}: ${msg}`);
  const table = parseGuidTable(image, what);
  const off = entryU32(table, TDX_METADATA_OFFSET_GUID, what, 'TDX metadata offset');
  if (off === undefined) throw configError('MEASURE_NO_TDX_METADATA', `${what}: no TDX metadata (footer entry ${TDX_METADATA_OFFSET_GUID}); this firmware is not built for TDX`);
  const at = image.length - off;
  if (off > image.length || at < 16 || at + 16 > image.length) throw bad(`TDX metadata offset ${off} is outside the image`);
  if (guidString(image.subarray(at - 16, at)) !== TDX_METADATA_GUID) throw bad(`TDVF descriptor is not preceded by ${TDX_METADATA_GUID}`);
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (String.fromCharCode(...image.subarray(at, at + 4)) !== 'TDVF') throw bad('TDVF descriptor signature is not "TDVF"');
  const length = dv.getUint32(at + 4, true);
  const version = dv.getUint32(at + 8, true);
  const n = dv.getUint32(at + 12, true);
  if (version !== 1) throw bad(`TDVF descriptor version ${version} is not 1`);
  if (n === 0 || length !== 16 + 32 * n || at + length > image.length) throw bad(`TDVF descriptor length ${length} does not hold ${n} sections inside the image`);
  const sections: TdvfSection[] = [];
  for (let i = 0; i < n; i++) {
    const o = at + 16 + 32 * i;
    const s: TdvfSection = {
      dataOffset: dv.getUint32(o, true), rawDataSize: dv.getUint32(o + 4, true),
      memoryAddress: dv.getBigUint64(o + 8, true), memoryDataSize: dv.getBigUint64(o + 16, true),
      type: dv.getUint32(o + 24, true), typeName: TDVF_SECTION_TYPES[dv.getUint32(o + 24, true)] ?? '', attributes: dv.getUint32(o + 28, true),
    };
    const name = `section ${i} (${s.typeName || `type ${s.type}`})`;
    if (!s.typeName) throw bad(`${name} has an unknown type`);
    if ((s.attributes & ~(ATTR_MR_EXTEND | ATTR_PAGE_AUG)) !== 0) throw bad(`${name} has unknown attribute bits 0x${s.attributes.toString(16)}`);
    if (s.memoryAddress % BigInt(PAGE) !== 0n || s.memoryDataSize % BigInt(PAGE) !== 0n || s.memoryDataSize === 0n) throw bad(`${name} memory range is not whole pages`);
    if (s.memoryDataSize > 1n << 40n) throw bad(`${name} memory size is implausibly large`);
    if (BigInt(s.rawDataSize) > s.memoryDataSize) throw bad(`${name} raw data is larger than its memory range`);
    if (s.dataOffset + s.rawDataSize > image.length) throw bad(`${name} raw data runs past the end of the image`);
    if ((s.attributes & ATTR_MR_EXTEND) !== 0 && BigInt(s.rawDataSize) !== s.memoryDataSize) throw bad(`${name} is extended into MRTD but its raw data does not fill its memory range`);
    sections.push(s);
  }
  return sections;
}

export type PageOrder = 'single-pass' | 'two-pass';

export interface MrtdResult {
  readonly mrtd: Uint8Array;
  readonly sections: readonly (TdvfSection & { readonly pagesAdded: number; readonly bytesExtended: number })[];
}

export function computeMrtd(image: Uint8Array, order: PageOrder = 'single-pass', what = 'TDVF'): MrtdResult {
  const sections = parseTdvf(image, what);
  const h = sha384.create();
  const rec = new Uint8Array(128);
  const rdv = new DataView(rec.buffer);
  const record = (tag: string, gpa: bigint) => {
    rec.fill(0);
    for (let i = 0; i < tag.length; i++) rec[i] = tag.charCodeAt(i);
    rdv.setBigUint64(16, gpa, true);
    h.update(rec);
  };
  const out: MrtdResult['sections'][number][] = [];
  for (const s of sections) {
    const pages = Number(s.memoryDataSize / BigInt(PAGE));
    const add = (s.attributes & ATTR_PAGE_AUG) === 0;
    const extend = (s.attributes & ATTR_MR_EXTEND) !== 0;
    const pageAdd = (p: number) => add && record('MEM.PAGE.ADD', s.memoryAddress + BigInt(p * PAGE));
    const pageExtend = (p: number) => {
      if (!extend) return;
      for (let c = 0; c < PAGE; c += CHUNK) {
        record('MR.EXTEND', s.memoryAddress + BigInt(p * PAGE + c));
        const from = s.dataOffset + p * PAGE + c;
        h.update(image.subarray(from, from + CHUNK));
      }
    };
    if (order === 'two-pass') {
      for (let p = 0; p < pages; p++) pageAdd(p);
      for (let p = 0; p < pages; p++) pageExtend(p);
    } else {
      for (let p = 0; p < pages; p++) {
        pageAdd(p);
        pageExtend(p);
      }
    }
    out.push({ ...s, pagesAdded: add ? pages : 0, bytesExtended: extend ? pages * PAGE : 0 });
  }
  return { mrtd: h.digest(), sections: out };
}

/** The sections as the CLI's JSON shows them (addresses in hex). */
export function sectionsJson(r: MrtdResult): Record<string, unknown>[] {
  return r.sections.map((s) => ({
    type: s.typeName, gpa: `0x${s.memoryAddress.toString(16)}`, size: `0x${s.memoryDataSize.toString(16)}`,
    dataOffset: `0x${s.dataOffset.toString(16)}`, rawDataSize: `0x${s.rawDataSize.toString(16)}`,
    attributes: [...((s.attributes & ATTR_MR_EXTEND) !== 0 ? ['MR.EXTEND'] : []), ...((s.attributes & ATTR_PAGE_AUG) !== 0 ? ['PAGE.AUG'] : [])],
    pagesAdded: s.pagesAdded, bytesExtended: s.bytesExtended,
  }));
}
