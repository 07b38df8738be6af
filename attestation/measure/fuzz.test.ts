/**
 * The firmware, PE and event-log parsers behind `gm measure` on damaged input: every outcome is a result or a
 * GmError with a code, never a RangeError from a read past the buffer or a hang.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isGmError } from '../errors.ts';
import { hasVectors, vector } from '../../test/vectors.ts';
import { parseEventLog } from '../tdx/ccel.ts';
import { authenticodeHash } from './authenticode.ts';
import { parseGuidTable } from './guid-table.ts';
import { explainEventLog } from './rtmr.ts';
import { parseSevFirmware } from './sev-firmware.ts';
import { measureSnp } from './snp.ts';
import { parseTdvf } from './tdvf.ts';

function outcome(f: () => unknown): 'ok' | string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
}

/** Byte edits concentrated where the structures are: the last `window` bytes of the image. */
const edits = (window: number) => fc.array(fc.record({ at: fc.nat({ max: window - 1 }), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 });
function damaged(img: Uint8Array, e: readonly { at: number; value: number }[], window: number): Uint8Array {
  const b = Uint8Array.from(img);
  for (const { at, value } of e) b[b.length - window + at] = value;
  return b;
}

describe.skipIf(!hasVectors)('measurement parsers on damaged input', () => {
  it('OVMF footer table and SEV metadata (and a whole SNP measurement when the sections stay small)', () => {
    const img = vector('measure/sev-snp-measure/ovmf_AmdSev_suffix.bin');
    fc.assert(fc.property(edits(4096), (e) => {
      const b = damaged(img, e, 4096);
      expect(outcome(() => parseGuidTable(b, 'OVMF'))).toMatch(/^(ok|MEASURE_)/);
      const parsed = outcome(() => parseSevFirmware(b, 'OVMF'));
      expect(parsed).toMatch(/^(ok|MEASURE_)/);
      // A damaged size can describe gigabytes of pages (a valid, slow launch); measure only the small ones.
      if (parsed === 'ok' && parseSevFirmware(b, 'OVMF').sections.every((s) => s.size <= 1 << 20))
        expect(outcome(() => measureSnp({ ovmf: b, kernel: new Uint8Array(0), vcpus: 2, vcpuSig: 0x800f12, vmm: 'qemu', guestFeatures: 1n }))).toMatch(/^(ok|MEASURE_)/);
    }), { numRuns: 300 });
  });

  it('TDVF metadata', () => {
    const img = vector('measure/debian-ovmf/OVMF.fd');
    fc.assert(fc.property(edits(4096), (e) => {
      expect(outcome(() => parseTdvf(damaged(img, e, 4096)))).toMatch(/^(ok|MEASURE_)/);
    }), { numRuns: 200 });
  });

  it('PE headers for the Authenticode hash', () => {
    const pe = vector('measure/debian-fwupd/fwupdx64.efi.signed');
    fc.assert(fc.property(fc.array(fc.record({ at: fc.nat({ max: 1023 }), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }), (e) => {
      const b = Uint8Array.from(pe);
      for (const { at, value } of e) b[at] = value;
      expect(outcome(() => authenticodeHash(b, 'SHA-384'))).toMatch(/^(ok|MEASURE_PE_INVALID)$/);
    }), { numRuns: 300 });
  });

  it('SVSM image footer', () => {
    const svsm = vector('measure/sev-snp-measure/svsm.bin');
    fc.assert(fc.property(edits(4096), (e) => {
      expect(outcome(() => parseSevFirmware(damaged(svsm, e, 4096), 'SVSM', 0xff000000))).toMatch(/^(ok|MEASURE_)/);
    }), { numRuns: 100 });
  });

  it('CCEL event records explained after damage', () => {
    const log = vector('tdx/go-tdx-guest/ccel_data.dat');
    const used = 12000; // the records end well before this; the rest is 0xFF
    fc.assert(fc.property(fc.array(fc.record({ at: fc.nat({ max: used - 1 }), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 }), (e) => {
      const b = Uint8Array.from(log);
      for (const { at, value } of e) b[at] = value;
      expect(outcome(() => explainEventLog(parseEventLog(b)))).toMatch(/^(ok|TDX_CCEL_INVALID)$/);
    }), { numRuns: 60 });
  }, 60_000);
});
