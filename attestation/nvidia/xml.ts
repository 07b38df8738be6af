/**
 * A small strict XML reader (XML 1.0 §2-§4 subset: elements, attributes, character data, CDATA, the five
 * predefined entities and character references, namespaces per "Namespaces in XML 1.0") and Canonical XML 1.1
 * (W3C REC xml-c14n11, without comments) for the XML-DSig checks on NVIDIA RIMs. No DTD is accepted (no entity
 * expansion, no external fetch); processing instructions other than the XML declaration are refused.
 */
import { protocolError } from '../errors.ts';

export interface XmlAttr {
  readonly qname: string;
  readonly prefix: string | undefined;
  readonly local: string;
  /** Namespace URI ('' for an unprefixed attribute). */
  readonly uri: string;
  readonly value: string;
}

export interface XmlElement {
  readonly kind: 'element';
  readonly qname: string;
  readonly local: string;
  readonly uri: string;
  /** Attributes other than namespace declarations, in document order. */
  readonly attrs: readonly XmlAttr[];
  /** In-scope namespaces (prefix, '' for default → URI), inherited ones included. */
  readonly ns: ReadonlyMap<string, string>;
  readonly children: XmlNode[];
  readonly parent: XmlElement | undefined;
}
export interface XmlText {
  readonly kind: 'text';
  readonly value: string;
}
export type XmlNode = XmlElement | XmlText;

const XML_NS = 'http://www.w3.org/XML/1998/namespace';
const bad = (msg: string) => protocolError('XML_INVALID', `XML: ${msg}`);
const NAME = /^[A-Za-z_][\w.-]*(:[A-Za-z_][\w.-]*)?/;

function decodeEntities(s: string): string {
  return s.replace(/&([^;]*);/g, (_m, e: string) => {
    switch (e) {
      case 'lt': return '<';
      case 'gt': return '>';
      case 'amp': return '&';
      case 'quot': return '"';
      case 'apos': return "'";
    }
    const m = /^#(x[0-9a-fA-F]+|[0-9]+)$/.exec(e);
    if (!m) throw bad(`unknown entity &${e};`);
    const cp = m[1]!.startsWith('x') ? parseInt(m[1]!.slice(1), 16) : parseInt(m[1]!, 10);
    if (cp === 0 || cp > 0x10ffff) throw bad(`bad character reference &${e};`);
    return String.fromCodePoint(cp);
  });
}

/** Parses a document; returns its document element. */
export function parseXml(input: string): XmlElement {
  const s = input.replace(/\r\n?/g, '\n');
  let i = 0;
  let root: XmlElement | undefined;
  const stack: XmlElement[] = [];
  const skipMisc = () => {
    for (;;) {
      const ws = /^\s*/.exec(s.slice(i, i + 4096))![0].length;
      i += ws;
      if (s.startsWith('<!--', i)) {
        const e = s.indexOf('-->', i + 4);
        if (e < 0) throw bad('unterminated comment');
        i = e + 3;
      } else return;
    }
  };
  if (s.startsWith('\ufeff')) i = 1;
  if (s.startsWith('<?xml', i)) {
    const e = s.indexOf('?>', i);
    if (e < 0) throw bad('unterminated XML declaration');
    i = e + 2;
  }
  skipMisc();
  if (s.startsWith('<!DOCTYPE', i)) throw bad('DTDs are not accepted');
  let text = '';
  const flush = () => {
    if (text === '') return;
    const top = stack[stack.length - 1];
    if (!top) {
      if (text.trim() !== '') throw bad('text outside the document element');
    } else top.children.push({ kind: 'text', value: decodeEntities(text) });
    text = '';
  };
  while (i < s.length) {
    if (stack.length === 0 && root) {
      skipMisc();
      if (i < s.length) throw bad('content after the document element');
      break;
    }
    const lt = s.indexOf('<', i);
    if (lt < 0) {
      text += s.slice(i);
      i = s.length;
      break;
    }
    text += s.slice(i, lt);
    i = lt;
    if (s.startsWith('<!--', i)) {
      const e = s.indexOf('-->', i + 4);
      if (e < 0) throw bad('unterminated comment');
      i = e + 3;
    } else if (s.startsWith('<![CDATA[', i)) {
      const e = s.indexOf(']]>', i);
      if (e < 0) throw bad('unterminated CDATA');
      // CDATA content is literal: escape its ampersands so decodeEntities leaves it unchanged.
      text += s.slice(i + 9, e).replace(/&/g, '&amp;');
      i = e + 3;
    } else if (s.startsWith('<?', i) || s.startsWith('<!', i)) {
      throw bad('processing instructions and declarations are not accepted');
    } else if (s.startsWith('</', i)) {
      flush();
      const m = NAME.exec(s.slice(i + 2, i + 200));
      const top = stack.pop();
      if (!m || !top || m[0] !== top.qname) throw bad(`mismatched end tag at ${i}`);
      i += 2 + m[0].length;
      const e = /^\s*>/.exec(s.slice(i, i + 100));
      if (!e) throw bad(`bad end tag at ${i}`);
      i += e[0].length;
    } else {
      flush();
      i = openTag(s, i + 1, stack, (el) => {
        if (!root) root = el;
      });
    }
  }
  if (!root || stack.length > 0) throw bad('unterminated document');
  return root;
}

function openTag(s: string, start: number, stack: XmlElement[], onRoot: (e: XmlElement) => void): number {
  let i = start;
  const m = NAME.exec(s.slice(i, i + 200));
  if (!m) throw bad(`bad start tag at ${i}`);
  const qname = m[0];
  i += qname.length;
  const raw: [string, string][] = [];
  for (;;) {
    const ws = /^\s*/.exec(s.slice(i, i + 1000))![0].length;
    i += ws;
    if (s.startsWith('/>', i) || s[i] === '>') break;
    if (ws === 0) throw bad(`missing whitespace before attribute at ${i}`);
    const a = NAME.exec(s.slice(i, i + 200));
    if (!a) throw bad(`bad attribute at ${i}`);
    i += a[0].length;
    const eq = /^\s*=\s*(["'])/.exec(s.slice(i, i + 100));
    if (!eq) throw bad(`attribute ${a[0]} without a quoted value`);
    i += eq[0].length;
    const end = s.indexOf(eq[1]!, i);
    if (end < 0) throw bad('unterminated attribute value');
    const v = s.slice(i, end);
    if (v.includes('<')) throw bad(`"<" in attribute ${a[0]}`);
    if (raw.some(([n]) => n === a[0])) throw bad(`duplicate attribute ${a[0]}`);
    // Attribute-value normalization (XML 1.0 §3.3.3): whitespace characters become spaces, then references.
    raw.push([a[0], decodeEntities(v.replace(/[\t\n]/g, ' '))]);
    i = end + 1;
  }
  const parent = stack[stack.length - 1];
  const ns = new Map<string, string>(parent ? parent.ns : [['xml', XML_NS]]);
  for (const [n, v] of raw) {
    if (n === 'xmlns') ns.set('', v);
    else if (n.startsWith('xmlns:')) {
      if (v === '') throw bad(`empty namespace for prefix ${n.slice(6)}`);
      ns.set(n.slice(6), v);
    }
  }
  const resolve = (q: string, isAttr: boolean): { prefix: string | undefined; local: string; uri: string } => {
    const c = q.indexOf(':');
    if (c < 0) return { prefix: undefined, local: q, uri: isAttr ? '' : (ns.get('') ?? '') };
    const prefix = q.slice(0, c);
    const uri = ns.get(prefix);
    if (uri === undefined) throw bad(`undeclared prefix ${prefix}`);
    return { prefix, local: q.slice(c + 1), uri };
  };
  const attrs: XmlAttr[] = [];
  for (const [n, v] of raw) {
    if (n === 'xmlns' || n.startsWith('xmlns:')) continue;
    const r = resolve(n, true);
    if (attrs.some((x) => x.uri === r.uri && x.local === r.local)) throw bad(`duplicate expanded attribute ${n}`);
    attrs.push({ qname: n, ...r, value: v });
  }
  const en = resolve(qname, false);
  const el: XmlElement = { kind: 'element', qname, local: en.local, uri: en.uri, attrs, ns, children: [], parent };
  if (parent) parent.children.push(el);
  onRoot(el);
  if (s.startsWith('/>', i)) return i + 2;
  stack.push(el);
  return i + 1;
}

const escText = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#xD;');
const escAttr = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;').replace(/\t/g, '&#x9;').replace(/\n/g, '&#xA;').replace(/\r/g, '&#xD;');
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Canonical XML 1.1 (without comments) of the subtree at `apex`, leaving out `omit` (the enveloped Signature).
 * The apex renders every in-scope namespace (inclusive canonicalization) and the xml:lang / xml:space it inherits.
 */
export function c14n11(apex: XmlElement, omit?: XmlElement): string {
  const out: string[] = [];
  const walk = (el: XmlElement, parentNs: ReadonlyMap<string, string> | undefined) => {
    const decls: [string, string][] = [];
    for (const [p, uri] of el.ns) {
      if (p === 'xml') continue;
      const before = parentNs?.get(p);
      if (before === uri) continue;
      if (p === '' && uri === '' && (before === undefined || before === '')) continue;
      decls.push([p, uri]);
    }
    decls.sort((a, b) => cmp(a[0], b[0]));
    const attrs = [...el.attrs];
    if (!parentNs) {
      for (let a = el.parent; a; a = a.parent)
        for (const x of a.attrs)
          if (x.uri === XML_NS && (x.local === 'lang' || x.local === 'space') && !attrs.some((y) => y.uri === XML_NS && y.local === x.local)) attrs.push(x);
    }
    attrs.sort((a, b) => cmp(a.uri, b.uri) || cmp(a.local, b.local));
    out.push(`<${el.qname}`);
    for (const [p, uri] of decls) out.push(p === '' ? ` xmlns="${escAttr(uri)}"` : ` xmlns:${p}="${escAttr(uri)}"`);
    for (const a of attrs) out.push(` ${a.qname}="${escAttr(a.value)}"`);
    out.push('>');
    for (const c of el.children) {
      if (c.kind === 'text') out.push(escText(c.value));
      else if (c !== omit) walk(c, el.ns);
    }
    out.push(`</${el.qname}>`);
  };
  walk(apex, undefined);
  return out.join('');
}

/** Children elements of `el` named `local` in namespace `uri`. */
export function childElements(el: XmlElement, uri: string, local: string): XmlElement[] {
  return el.children.filter((c): c is XmlElement => c.kind === 'element' && c.uri === uri && c.local === local);
}

/** Exactly one child element, or XML_INVALID / the given code. */
export function onlyChild(el: XmlElement, uri: string, local: string, code = 'XML_INVALID'): XmlElement {
  const c = childElements(el, uri, local);
  if (c.length !== 1) throw protocolError(code, `XML: expected exactly one <${local}> in <${el.qname}>, found ${c.length}`);
  return c[0]!;
}

export function textOf(el: XmlElement): string {
  return el.children.map((c) => (c.kind === 'text' ? c.value : textOf(c))).join('');
}

export function attr(el: XmlElement, local: string, uri = ''): string | undefined {
  return el.attrs.find((a) => a.local === local && a.uri === uri)?.value;
}
