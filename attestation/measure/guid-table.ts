/**
 * The GUIDed table at the end of an OVMF / TDVF firmware volume.
 *
 * Layout (edk2 OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm, "OVMF GUIDed structure table"): the table ends 32
 * bytes before the end of the image (the last 32 bytes hold the reset vector). It is read backwards: each entry is
 * `data ‖ u16 size ‖ EFI_GUID`, where `size` counts the whole entry including its 18-byte trailer. The last entry is
 * the footer (OVMF_TABLE_FOOTER_GUID), whose size covers the whole table, footer included.
 * An EFI_GUID is stored with its first three fields little-endian (UEFI 2.10 Appendix A).
 */
import { configError } from '../errors.ts';

export const OVMF_TABLE_FOOTER_GUID = '96b582de-1fb2-45f7-baea-a366c55a082d';
const TRAILER = 18;
const RESET_AREA = 32;

/** EFI_GUID bytes for the canonical string form (first three groups little-endian). */
export function guidBytes(guid: string): Uint8Array {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/.exec(guid.toLowerCase());
  if (!m) throw new TypeError(`not a GUID: ${guid}`);
  const h = (s: string) => s.match(/../g)!.map((x) => parseInt(x, 16));
  return new Uint8Array([...h(m[1]!).reverse(), ...h(m[2]!).reverse(), ...h(m[3]!).reverse(), ...h(m[4]!), ...h(m[5]!)]);
}

/** The canonical lower-case string of 16 EFI_GUID bytes. */
export function guidString(b: Uint8Array): string {
  if (b.length !== 16) throw new TypeError('an EFI_GUID is 16 bytes');
  const x = (s: number, e: number, rev: boolean) => {
    const part = Array.from(b.subarray(s, e));
    return (rev ? part.reverse() : part).map((v) => v.toString(16).padStart(2, '0')).join('');
  };
  return `${x(0, 4, true)}-${x(4, 6, true)}-${x(6, 8, true)}-${x(8, 10, false)}-${x(10, 16, false)}`;
}

/**
 * Entries of the footer table, GUID string → entry data (the bytes before the entry's trailer).
 * Throws MEASURE_FIRMWARE_NO_TABLE when the image has no footer, MEASURE_FIRMWARE_INVALID when an entry does not
 * fit or a GUID repeats.
 */
export function parseGuidTable(image: Uint8Array, what: string): ReadonlyMap<string, Uint8Array> {
  const bad = (msg: string) => configError('MEASURE_FIRMWARE_INVALID', `${what}: GUIDed footer table: ${msg}`);
  if (image.length < RESET_AREA + TRAILER) throw bad(`the image is ${image.length} bytes, too short for a footer table`);
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const footerAt = image.length - RESET_AREA - TRAILER;
  if (guidString(image.subarray(footerAt + 2, footerAt + TRAILER)) !== OVMF_TABLE_FOOTER_GUID)
    throw configError('MEASURE_FIRMWARE_NO_TABLE', `${what}: no GUIDed footer table (OVMF_TABLE_FOOTER_GUID) ${RESET_AREA + TRAILER} bytes before the end of the image`);
  const total = dv.getUint16(footerAt, true);
  if (total < TRAILER) throw bad(`footer size ${total} is smaller than an entry trailer`);
  const start = footerAt + TRAILER - total;
  if (start < 0) throw bad(`footer size ${total} runs past the start of the image`);
  const entries = new Map<string, Uint8Array>();
  let end = footerAt;
  while (end > start) {
    if (end - start < TRAILER) throw bad(`${end - start} stray bytes before the first entry`);
    const size = dv.getUint16(end - TRAILER, true);
    const guid = guidString(image.subarray(end - 16, end));
    if (size < TRAILER || end - size < start) throw bad(`entry ${guid} has size ${size}, which does not fit the table`);
    if (entries.has(guid)) throw bad(`entry ${guid} appears twice`);
    entries.set(guid, image.subarray(end - size, end - TRAILER));
    end -= size;
  }
  return entries;
}

/** A u32 little-endian at the start of an entry (addresses and offsets in the table are 32-bit). */
export function entryU32(entries: ReadonlyMap<string, Uint8Array>, guid: string, what: string, name: string): number | undefined {
  const e = entries.get(guid);
  if (e === undefined) return undefined;
  if (e.length < 4) throw configError('MEASURE_FIRMWARE_INVALID', `${what}: ${name} entry is ${e.length} bytes, expected at least 4`);
  return new DataView(e.buffer, e.byteOffset, e.byteLength).getUint32(0, true);
}
