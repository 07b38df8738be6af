/**
 * The SEV hashes table QEMU writes into guest memory for measured direct boot (QEMU target/i386/sev.c,
 * `SevHashTable`; read by OvmfPkg/AmdSev/BlobVerifierLib before it runs the kernel).
 *
 * Packed little-endian: header {EFI_GUID 9438d606-…, u16 length = 168}, then three entries {EFI_GUID, u16 length = 50,
 * SHA-256} in the order command line (97d02dd8-…), initrd (44baf731-…), kernel (4de79437-…); zero-padded to a
 * multiple of 16 bytes (176). The command line is hashed with its
 * terminating NUL; a missing initrd hashes as the empty string.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { guidBytes } from './guid-table.ts';

const HEADER_GUID = '9438d606-4f22-4cc9-b479-a793d411fd21';
const KERNEL_GUID = '4de79437-abd2-427f-b835-d5b172d2045b';
const INITRD_GUID = '44baf731-3a2f-4bd7-9af1-41e29169781d';
const CMDLINE_GUID = '97d02dd8-bd20-4c94-aa78-e7714d36ab2a';
const ENTRY = 16 + 2 + 32;
const TABLE = 16 + 2 + 3 * ENTRY;
export const SEV_HASHES_TABLE_SIZE = (TABLE + 15) & ~15;

export interface KernelHashes {
  readonly kernel: Uint8Array;
  readonly initrd: Uint8Array;
  readonly cmdline: Uint8Array;
}

/** SHA-256 of the kernel image, the initrd (empty when absent) and the command line with its NUL. */
export function kernelHashes(kernel: Uint8Array, initrd: Uint8Array | undefined, append: string): KernelHashes {
  const cmd = new TextEncoder().encode(`${append}\0`);
  return { kernel: sha256(kernel), initrd: sha256(initrd ?? new Uint8Array(0)), cmdline: sha256(cmd) };
}

/** The padded table (176 bytes). */
export function sevHashesTable(h: KernelHashes): Uint8Array {
  const out = new Uint8Array(SEV_HASHES_TABLE_SIZE);
  const dv = new DataView(out.buffer);
  out.set(guidBytes(HEADER_GUID), 0);
  dv.setUint16(16, TABLE, true);
  let o = 18;
  for (const [guid, digest] of [[CMDLINE_GUID, h.cmdline], [INITRD_GUID, h.initrd], [KERNEL_GUID, h.kernel]] as const) {
    out.set(guidBytes(guid), o);
    dv.setUint16(o + 16, ENTRY, true);
    out.set(digest, o + 18);
    o += ENTRY;
  }
  return out;
}
