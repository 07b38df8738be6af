import { describe, expect, it } from 'vitest';
import { vector } from '../../test/vectors.ts';
import { hex } from '../bytes.ts';
import { isGmError } from '../errors.ts';
import { authenticodeHash, isPe } from './authenticode.ts';

const signed = () => vector('measure/debian-fwupd/fwupdx64.efi.signed');
const SIGNED_DIGEST = '54563dba7fe706fab763168771637e02f82bf776e47fc16c96b87f3ecdb11958';

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return undefined;
}

describe('Authenticode image hash', () => {
  it('equals the digest Debian signed into the image (SHA-256)', () => {
    const pe = signed();
    expect(isPe(pe)).toBe(true);
    expect(hex(authenticodeHash(pe, 'SHA-256'))).toBe(SIGNED_DIGEST);
    // The signer's digest also sits in the file: the hash is the one inside the signature's SpcIndirectDataContent.
    expect(hex(pe)).toContain(`060960864801650304020105000420${SIGNED_DIGEST}`); // DigestInfo: OID sha256, NULL, OCTET STRING(32)
  });

  it('leaves out the checksum, the certificate directory entry and the certificate table, and nothing else', () => {
    const pe = signed();
    const base = hex(authenticodeHash(pe, 'SHA-384'));
    const dv = new DataView(pe.buffer, pe.byteOffset);
    const opt = dv.getUint32(0x3c, true) + 24;
    const at = (o: number) => {
      const b = Uint8Array.from(pe);
      b[o]! ^= 1;
      return hex(authenticodeHash(b, 'SHA-384'));
    };
    expect(at(opt + 64)).toBe(base); // CheckSum
    expect(at(pe.length - 10)).toBe(base); // inside the signature
    expect(at(opt + 4)).not.toBe(base); // linker version: a header byte
    expect(at(0x2000)).not.toBe(base); // section data
  });

  it('refuses what is not a well-formed PE', () => {
    const pe = signed();
    expect(code(() => authenticodeHash(new Uint8Array(100), 'SHA-384'))).toBe('MEASURE_PE_INVALID');
    expect(code(() => authenticodeHash(pe.subarray(0, pe.length - 1), 'SHA-384'))).toBe('MEASURE_PE_INVALID'); // certificate table no longer ends the file
    const badMagic = Uint8Array.from(pe);
    badMagic[new DataView(pe.buffer, pe.byteOffset).getUint32(0x3c, true) + 24] = 0x99;
    expect(code(() => authenticodeHash(badMagic, 'SHA-384'))).toBe('MEASURE_PE_INVALID');
  });
});
