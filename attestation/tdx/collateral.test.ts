/** Collateral forms: the signed text is located verbatim in the body, never re-serialized. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasVectors, vectorText } from '../../test/vectors.ts';
import { collateralFromDcapQvl, rawJsonMember, signedFromPcs } from './collateral.ts';

describe('rawJsonMember', () => {
  it('returns the exact source text of a member, whitespace and escapes included', () => {
    const text = '{ "a" : 1, "tcbInfo" : {"x":"}\\"{","y":[1, {"z":2}]} ,"signature":"ab"}';
    expect(rawJsonMember(text, 'tcbInfo')).toBe('{"x":"}\\"{","y":[1, {"z":2}]}');
    expect(rawJsonMember(text, 'signature')).toBe('"ab"');
  });
  it('property: for any JSON object, the raw member text is the member serialized (and whitespace-tolerant)', () => {
    fc.assert(fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.jsonValue(), { minKeys: 1, maxKeys: 6 }), fc.boolean(), (obj, pretty) => {
      const text = pretty ? JSON.stringify(obj, null, 2) : JSON.stringify(obj);
      for (const k of Object.keys(obj)) {
        const raw = rawJsonMember(text, k);
        expect(JSON.parse(raw)).toEqual(JSON.parse(JSON.stringify(obj[k])));
        expect(text.includes(raw)).toBe(true);
      }
    }), { numRuns: 200 });
  });

  it('rejects a missing or duplicated member', () => {
    expect(() => rawJsonMember('{"a":1}', 'tcbInfo')).toThrow(expect.objectContaining({ code: 'TDX_COLLATERAL_INVALID' }));
    expect(() => rawJsonMember('{"tcbInfo":1,"tcbInfo":2}', 'tcbInfo')).toThrow(expect.objectContaining({ code: 'TDX_COLLATERAL_INVALID' }));
    expect(() => rawJsonMember('[1]', 'tcbInfo')).toThrow(expect.objectContaining({ code: 'TDX_COLLATERAL_INVALID' }));
  });
});

describe.skipIf(!hasVectors)('collateral forms on real files', () => {
  it('PCS response + URL-encoded issuer chain header', () => {
    const chain = (JSON.parse(vectorText('tdx/dcap-qvl/tdx_quote_collateral.json')) as { tcb_info_issuer_chain: string }).tcb_info_issuer_chain;
    const body = vectorText('tdx/go-tdx-guest/sample_tcbInfo_response');
    const s = signedFromPcs(body, encodeURIComponent(chain), 'tcbInfo');
    expect(body.includes(s.body)).toBe(true);
    expect(s.body.startsWith('{"id":"TDX"')).toBe(true);
    expect(s.signature.length).toBe(64);
    expect(s.issuerChain.length).toBe(2);
    expect(signedFromPcs(body, chain, 'tcbInfo').issuerChain.length).toBe(2); // plain PEM accepted too
  });
  it('dcap-qvl combined collateral', () => {
    const c = collateralFromDcapQvl(vectorText('tdx/dcap-qvl/tdx_quote_collateral.json'));
    expect(c.tcbInfo.body.startsWith('{"id":"TDX"')).toBe(true);
    expect(c.qeIdentity?.body.startsWith('{"id":"TD_QE"')).toBe(true);
    expect(c.rootCaCrl?.[0]).toBe(0x30);
    expect(c.pckCrl?.[0]).toBe(0x30);
    expect(() => collateralFromDcapQvl('{"tcb_info":"{}"}')).toThrow(expect.objectContaining({ code: 'TDX_COLLATERAL_INVALID' }));
  });
});
