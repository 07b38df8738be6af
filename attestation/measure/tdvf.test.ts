/**
 * MRTD from TDVF metadata: a real TDVF (Debian's OVMF, two-pass value agreed by an independent implementation,
 * see test/vectors/measure/debian-ovmf/PROVENANCE.md) and spec-built images exercising each rule.
 */
import { describe, expect, it } from 'vitest';
import { vector } from '../../test/vectors.ts';
import { hex } from '../bytes.ts';
import { isGmError } from '../errors.ts';
import { OVMF_TABLE_FOOTER_GUID, guidBytes } from './guid-table.ts';
import { ATTR_MR_EXTEND, ATTR_PAGE_AUG, TDX_METADATA_GUID, TDX_METADATA_OFFSET_GUID, computeMrtd, parseTdvf } from './tdvf.ts';

const debianOvmf = () => vector('measure/debian-ovmf/OVMF.fd');

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return undefined;
}

interface Sec { dataOffset: number; raw: number; gpa: number; size: number; type: number; attr: number }

/**
 * A spec-built TDVF: `pages` pages of patterned data, the TDVF descriptor (preceded by its GUID) at 0x100 of the
 * last page, the footer table (metadata offset entry + footer) ending 32 bytes before the end.
 */
function buildTdvf(pages: number, sections: Sec[]): Uint8Array {
  const img = new Uint8Array(pages * 4096);
  for (let i = 0; i < img.length; i++) img[i] = (i * 7 + (i >> 12)) & 0xff;
  const last = img.length - 4096;
  img.fill(0, last);
  const dv = new DataView(img.buffer);
  const desc = last + 0x100;
  img.set(guidBytes(TDX_METADATA_GUID), desc - 16);
  img.set(new TextEncoder().encode('TDVF'), desc);
  dv.setUint32(desc + 4, 16 + 32 * sections.length, true);
  dv.setUint32(desc + 8, 1, true);
  dv.setUint32(desc + 12, sections.length, true);
  sections.forEach((s, i) => {
    const o = desc + 16 + 32 * i;
    dv.setUint32(o, s.dataOffset, true);
    dv.setUint32(o + 4, s.raw, true);
    dv.setBigUint64(o + 8, BigInt(s.gpa), true);
    dv.setBigUint64(o + 16, BigInt(s.size), true);
    dv.setUint32(o + 24, s.type, true);
    dv.setUint32(o + 28, s.attr, true);
  });
  // Footer table: [u32 offset][u16 22][GUID] then the footer [u16 40][GUID], ending 32 bytes before the end.
  const footer = img.length - 32 - 18;
  const entry = footer - 22;
  dv.setUint32(entry, img.length - desc, true);
  dv.setUint16(entry + 4, 22, true);
  img.set(guidBytes(TDX_METADATA_OFFSET_GUID), entry + 6);
  dv.setUint16(footer, 40, true);
  img.set(guidBytes(OVMF_TABLE_FOOTER_GUID), footer + 2);
  return img;
}

const BFV: Sec = { dataOffset: 0, raw: 0x2000, gpa: 0xfffe0000, size: 0x2000, type: 0, attr: ATTR_MR_EXTEND };
const HOB: Sec = { dataOffset: 0, raw: 0, gpa: 0x809000, size: 0x2000, type: 2, attr: 0 };
const AUG: Sec = { dataOffset: 0, raw: 0, gpa: 0x900000, size: 0x1000, type: 3, attr: ATTR_PAGE_AUG };

describe('MRTD of a real TDVF (Debian bookworm OVMF.fd)', () => {
  it('parses the metadata sections', () => {
    const s = parseTdvf(debianOvmf());
    expect(s.map((x) => x.typeName)).toEqual(['BFV', 'CFV', 'TEMP_MEM', 'TEMP_MEM', 'TD_HOB', 'TEMP_MEM']);
    expect(s[0]).toMatchObject({ dataOffset: 0x20000, rawDataSize: 0x1e0000, memoryAddress: 0xffe20000n, attributes: ATTR_MR_EXTEND });
  });
  it('two-pass MRTD agrees with an independent implementation', () => {
    expect(hex(computeMrtd(debianOvmf(), 'two-pass').mrtd)).toBe('acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b33db3b32e6924cba830a724eed443f7e1');
  });
  it('single-pass MRTD (upstream KVM order) differs, pinned as computed', () => {
    expect(hex(computeMrtd(debianOvmf()).mrtd)).toBe('4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47');
  });
});

describe('MRTD rules on spec-built TDVF images', () => {
  const mrtd = (img: Uint8Array, order?: 'single-pass' | 'two-pass') => hex(computeMrtd(img, order).mrtd);

  it('is SHA-384 over 128-byte MEM.PAGE.ADD / MR.EXTEND records (one page, one chunk rule checked by hand)', async () => {
    const img = buildTdvf(2, [{ dataOffset: 0, raw: 0x1000, gpa: 0x1000, size: 0x1000, type: 0, attr: ATTR_MR_EXTEND }]);
    const rec = (tag: string, gpa: number) => {
      const r = new Uint8Array(128);
      r.set(new TextEncoder().encode(tag));
      new DataView(r.buffer).setBigUint64(16, BigInt(gpa), true);
      return r;
    };
    const parts: Uint8Array[] = [rec('MEM.PAGE.ADD', 0x1000)];
    for (let c = 0; c < 16; c++) parts.push(rec('MR.EXTEND', 0x1000 + c * 256), img.subarray(c * 256, c * 256 + 256));
    const all = new Uint8Array(new ArrayBuffer(parts.reduce((n, p) => n + p.length, 0)));
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    expect(mrtd(img)).toBe(hex(new Uint8Array(await crypto.subtle.digest('SHA-384', all))));
  });

  it('extended data counts; added-only and PAGE.AUG sections count only by address, or not at all', () => {
    const base = buildTdvf(4, [BFV, HOB, AUG]);
    const flipBfv = Uint8Array.from(base);
    flipBfv[0x1234]! ^= 1;
    expect(mrtd(flipBfv)).not.toBe(mrtd(base));
    expect(mrtd(buildTdvf(4, [BFV, { ...HOB, gpa: 0x80a000 }, AUG]))).not.toBe(mrtd(base));
    expect(mrtd(buildTdvf(4, [BFV, HOB, { ...AUG, gpa: 0xa00000 }]))).toBe(mrtd(base));
    expect(mrtd(buildTdvf(4, [BFV, HOB]))).toBe(mrtd(base));
    expect(mrtd(base, 'two-pass')).not.toBe(mrtd(base)); // BFV has two pages
  });

  it.each([
    ['an unknown section type', { ...HOB, type: 9 }],
    ['unknown attribute bits', { ...HOB, attr: 4 }],
    ['an unaligned address', { ...HOB, gpa: 0x809100 }],
    ['raw data past the end of the image', { ...BFV, dataOffset: 0x3000 }],
    ['an extended section whose raw data does not fill it', { ...BFV, raw: 0x1000 }],
    ['raw data larger than its memory', { ...HOB, raw: 0x3000 }],
  ])('refuses %s', (_n, bad) => {
    expect(code(() => computeMrtd(buildTdvf(4, [bad])))).toBe('MEASURE_FIRMWARE_INVALID');
  });

  it('refuses a damaged descriptor and firmware without TDX metadata', () => {
    const img = buildTdvf(2, [HOB]);
    for (const [off, v] of [[0, 0x41], [8, 2], [4, 0x99], [-1, 0]] as const) {
      const b = Uint8Array.from(img);
      b[img.length - 4096 + 0x100 + off] = v;
      expect(code(() => parseTdvf(b)), `byte ${off}`).toBe('MEASURE_FIRMWARE_INVALID');
    }
    const lastPages = debianOvmf().subarray(0x1f0000); // the footer survives, the section data does not
    expect(code(() => parseTdvf(lastPages))).toBe('MEASURE_FIRMWARE_INVALID');
    const noEntry = Uint8Array.from(img);
    noEntry[img.length - 32 - 18 - 16]! ^= 0xff; // the metadata-offset entry's GUID
    expect(code(() => parseTdvf(noEntry))).toBe('MEASURE_NO_TDX_METADATA');
    const noTable = new Uint8Array(8192);
    expect(code(() => parseTdvf(noTable))).toBe('MEASURE_FIRMWARE_NO_TABLE');
  });
});
