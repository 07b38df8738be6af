/**
 * The Authenticode image hash of a PE/COFF file: what UEFI firmware extends for an EFI application it starts
 * (EV_EFI_BOOT_SERVICES_APPLICATION: shim, GRUB, systemd-boot, a UKI, a kernel's EFI stub) and what a PE signature
 * signs.
 *
 * Microsoft "Windows Authenticode Portable Executable Signature Format", "Calculating the PE Image Hash": hash the
 * headers up to SizeOfHeaders leaving out the optional header's CheckSum and the Certificate Table data directory
 * entry; then every section's raw data, sorted by PointerToRawData; then any bytes after the last section that
 * are not the attribute certificate table. Offsets per the PE/COFF specification: e_lfanew at 0x3C; "PE\0\0";
 * COFF header (NumberOfSections at +2, SizeOfOptionalHeader at +16); optional header magic 0x10B (PE32) or 0x20B
 * (PE32+), SizeOfHeaders at +60, CheckSum at +64, NumberOfRvaAndSizes at +92/+108, data directories at +96/+112
 * (Certificate Table is entry 4); section headers of 40 bytes (SizeOfRawData at +16, PointerToRawData at +20).
 */
import { sha256, sha384 } from '@noble/hashes/sha2.js';
import { configError } from '../errors.ts';

export type AuthenticodeHash = 'SHA-256' | 'SHA-384';

/** True when `b` starts like a PE image ("MZ" and a "PE\0\0" signature where e_lfanew points). */
export function isPe(b: Uint8Array): boolean {
  if (b.length < 0x40 || b[0] !== 0x4d || b[1] !== 0x5a) return false;
  const lfanew = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0x3c, true);
  return lfanew + 4 <= b.length && b[lfanew] === 0x50 && b[lfanew + 1] === 0x45 && b[lfanew + 2] === 0 && b[lfanew + 3] === 0;
}

export function authenticodeHash(pe: Uint8Array, alg: AuthenticodeHash, what = 'PE image'): Uint8Array {
  const bad = (msg: string) => configError('MEASURE_PE_INVALID', `${what}: ${msg}`);
  if (!isPe(pe)) throw bad('not a PE image (no MZ header and PE signature)');
  const dv = new DataView(pe.buffer, pe.byteOffset, pe.byteLength);
  const need = (end: number, name: string) => {
    if (end > pe.length) throw bad(`${name} runs past the end of the file`);
  };
  const coff = dv.getUint32(0x3c, true) + 4;
  need(coff + 20, 'COFF header');
  const nSections = dv.getUint16(coff + 2, true);
  const optSize = dv.getUint16(coff + 16, true);
  const opt = coff + 20;
  need(opt + optSize, 'optional header');
  if (optSize < 2) throw bad('no optional header');
  const magic = dv.getUint16(opt, true);
  if (magic !== 0x10b && magic !== 0x20b) throw bad(`optional header magic 0x${magic.toString(16)} is neither PE32 nor PE32+`);
  const plus = magic === 0x20b;
  const dirs = opt + (plus ? 112 : 96);
  const nDirs = dv.getUint32(opt + (plus ? 108 : 92), true);
  if (nDirs < 5 || dirs + 8 * nDirs > opt + optSize) throw bad('the data directories do not include the Certificate Table entry inside the optional header');
  const checksum = opt + 64;
  const certEntry = dirs + 4 * 8;
  const certAddr = dv.getUint32(certEntry, true);
  const certSize = dv.getUint32(certEntry + 4, true);
  const sizeOfHeaders = dv.getUint32(opt + 60, true);
  const sectionTable = opt + optSize;
  need(sectionTable + 40 * nSections, 'section table');
  if (sizeOfHeaders < sectionTable + 40 * nSections || sizeOfHeaders > pe.length) throw bad(`SizeOfHeaders ${sizeOfHeaders} does not cover the section table inside the file`);
  if (certSize !== 0 && (certAddr < sizeOfHeaders || certAddr + certSize !== pe.length))
    throw bad('the attribute certificate table is not at the end of the file');

  const h = alg === 'SHA-256' ? sha256.create() : sha384.create();
  h.update(pe.subarray(0, checksum));
  h.update(pe.subarray(checksum + 4, certEntry));
  h.update(pe.subarray(certEntry + 8, sizeOfHeaders));
  const sections: { ptr: number; size: number }[] = [];
  for (let i = 0; i < nSections; i++) {
    const s = sectionTable + 40 * i;
    const size = dv.getUint32(s + 16, true);
    const ptr = dv.getUint32(s + 20, true);
    if (size === 0) continue;
    if (ptr + size > pe.length) throw bad(`section ${i} raw data runs past the end of the file`);
    sections.push({ ptr, size });
  }
  sections.sort((a, b) => a.ptr - b.ptr);
  let hashed = sizeOfHeaders;
  for (const s of sections) {
    h.update(pe.subarray(s.ptr, s.ptr + s.size));
    hashed += s.size;
  }
  const end = pe.length - certSize;
  if (end > hashed) h.update(pe.subarray(hashed, end));
  return h.digest();
}
