import { describe, expect, it } from 'vitest';
import { isGmError } from '../errors.ts';
import { ecdsaDerToP1363 } from './signature.ts';

/** Strict DER for ECDSA-Sig-Value (RFC 3279 §2.2.3): SEQUENCE { r INTEGER, s INTEGER }, nothing else. */
describe('ecdsaDerToP1363', () => {
  const good = Uint8Array.from([0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07]);
  const code = (b: Uint8Array) => {
    try {
      ecdsaDerToP1363(b, 4);
      return 'accepted';
    } catch (e) {
      return isGmError(e) ? e.code : String(e);
    }
  };

  it('left-pads r and s to the curve size', () => {
    expect([...ecdsaDerToP1363(good, 4)]).toEqual([0, 0, 0, 5, 0, 0, 0, 7]);
  });

  it('refuses another outer tag, a missing or extra element, and trailing bytes', () => {
    for (const tag of [0x31, 0x2c, 0x2f, 0xa0]) expect(code(Uint8Array.from([tag, ...good.subarray(1)]))).toBe('CERT_SIGNATURE');
    expect(code(Uint8Array.from([0x30, 0x03, 0x02, 0x01, 0x05]))).not.toBe('accepted');
    expect(code(Uint8Array.from([0x30, 0x09, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07, 0x02, 0x01, 0x01]))).not.toBe('accepted');
    expect(code(Uint8Array.from([...good, 0x00]))).not.toBe('accepted');
  });

  it('refuses a component longer than the curve size', () => {
    expect(code(Uint8Array.from([0x30, 0x0a, 0x02, 0x05, 0x01, 0x02, 0x03, 0x04, 0x05, 0x02, 0x01, 0x07]))).toBe('CERT_SIGNATURE');
  });
});
