import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isGmError } from '../errors.ts';
import { c14n11, parseXml } from './xml.ts';

/** Random small documents: prefixed and default namespaces, attributes needing escapes, mixed text, empty tags. */
const name = fc.constantFrom('a', 'b', 'Res', 'x-y', 'm.n');
const text = fc.string({ unit: fc.constantFrom('a', ' ', '<', '>', '&', '"', '\t', '\n', 'é', '\r'), maxLength: 8 });
const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;').replace(/\n/g, '&#10;');
const tree: fc.Arbitrary<string> = fc.letrec<{ node: string }>((tie) => ({
  node: fc.tuple(
    fc.constantFrom('', 'p:', 'q:'), name,
    fc.uniqueArray(fc.tuple(fc.constantFrom('', 'p:'), name, text), { maxLength: 3, selector: ([p, n]) => p + n }),
    fc.array(fc.oneof({ depthSize: 'small' }, text.map(esc), tie('node')), { maxLength: 3 }),
    fc.boolean(),
  ).map(([p, n, attrs, kids, ns]) => {
    const a = attrs.map(([ap, an, v]) => ` ${ap}${an}="${esc(v)}"`).join('');
    const decl = ns ? ' xmlns:q="urn:q2"' : '';
    return kids.length === 0 ? `<${p}${n}${decl}${a}/>` : `<${p}${n}${decl}${a}>${kids.join('')}</${p}${n}>`;
  }),
})).node;
const doc = tree.map((t) => `<root xmlns="urn:d" xmlns:p="urn:p" xmlns:q="urn:q">${t}</root>`);

describe('XML reader and Canonical XML 1.1 properties', () => {
  it('canonical form is a fixed point: c14n(parse(c14n(x))) = c14n(x)', () => {
    fc.assert(fc.property(doc, (x) => {
      const c = c14n11(parseXml(x));
      expect(c14n11(parseXml(c))).toBe(c);
    }), { numRuns: 300 });
  });

  it('attribute order, quote style and empty-element form do not change the canonical form', () => {
    const a = parseXml(`<r xmlns="urn:d" b='1' a="2"><e/></r>`);
    const b = parseXml(`<r a="2" b="1" xmlns="urn:d"><e></e></r>`);
    expect(c14n11(a)).toBe(c14n11(b));
  });

  it('arbitrary input never crashes: it parses or fails with XML_INVALID', () => {
    fc.assert(fc.property(fc.string({ unit: fc.constantFrom('<', '>', '/', 'a', 'b', '=', '"', ' ', '&', ';', '!', '-', '?', ':'), maxLength: 40 }), (s) => {
      try {
        parseXml(s);
      } catch (e) {
        expect(isGmError(e, 'XML_INVALID')).toBe(true);
      }
    }), { numRuns: 500 });
  });
});
