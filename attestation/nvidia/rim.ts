/**
 * NVIDIA Reference Integrity Manifests: ISO/IEC 19770-2 SWID tags profiled by the TCG RIM Information Model
 * (`Payload/Resource type="Measurement"` entries with `index`, `active`, `alternatives`, `size` and `Hash0..n`
 * in the xmlenc#sha384 namespace, as nvtrust `rim/__init__.py` reads them), one for the driver and one for the
 * VBIOS. Their signature is an enveloped XML-DSig (W3C xmldsig-core1 §6: Reference URI="" with the
 * enveloped-signature transform, Canonical XML 1.1, ECDSA-SHA384 per RFC 6931 §2.3.6 with raw r‖s) whose
 * KeyInfo carries the signing chain, verified up to the pinned NVIDIA RIM root.
 *
 * Comparison follows nvtrust `verifier.py`: RIM index i (0-based) is measurement block i+1; only active entries
 * count; a driver and a VBIOS entry must not claim the same index; index 35 is not compared when NVDEC0 is
 * disabled; any alternative of the right size matches.
 */
import { equalBytes, fromBase64, fromHex, hex, sha384 } from '../bytes.ts';
import { protocolError, rejected } from '../errors.ts';
import { type Certificate, parseCertificate } from '../x509/cert.ts';
import { type VerifiedChain, verifyChain } from '../x509/chain.ts';
import { verifySignature } from '../x509/signature.ts';
import type { GpuAttestationReport } from './spdm.ts';
import { type XmlElement, attr, c14n11, childElements, onlyChild, parseXml, textOf } from './xml.ts';

export const SWID_NS = 'http://standards.iso.org/iso/19770/-2/2015/schema.xsd';
export const DSIG_NS = 'http://www.w3.org/2000/09/xmldsig#';
export const SHA384_NS = 'http://www.w3.org/2001/04/xmlenc#sha384';
const C14N11 = 'http://www.w3.org/2006/12/xml-c14n11';
const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';
const ECDSA_SHA384 = 'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384';
const DIGEST_SHA384 = ['http://www.w3.org/2001/04/xmldsig-more#sha384', 'http://www.w3.org/2001/04/xmlenc#sha384'];
/** nvtrust: golden index 35 is skipped when NVDEC0 is disabled. */
export const NVDEC_DEPENDENT_INDEX = 35;

export interface RimMeasurement {
  /** RIM numbering (0-based); report block index = index + 1. */
  readonly index: number;
  readonly name: string;
  readonly active: boolean;
  readonly size: number;
  readonly alternatives: readonly Uint8Array[];
}

export interface Rim {
  readonly xml: string;
  readonly root: XmlElement;
  readonly kind: 'driver' | 'vbios';
  readonly tagId: string;
  readonly product: string;
  /** Meta colloquialVersion: the driver or VBIOS version the RIM describes. */
  readonly version: string;
  readonly measurements: readonly RimMeasurement[];
}

const bad = (msg: string) => protocolError('NVIDIA_RIM_INVALID', `RIM: ${msg}`);

export function parseRim(xml: string, kind?: 'driver' | 'vbios'): Rim {
  const root = parseXml(xml);
  if (root.uri !== SWID_NS || root.local !== 'SoftwareIdentity') throw bad('document element is not a SWID SoftwareIdentity');
  const meta = onlyChild(root, SWID_NS, 'Meta', 'NVIDIA_RIM_INVALID');
  const payload = onlyChild(root, SWID_NS, 'Payload', 'NVIDIA_RIM_INVALID');
  const version = attr(meta, 'colloquialVersion');
  const tagId = attr(root, 'tagId');
  if (!version || !tagId) throw bad('Meta colloquialVersion or tagId missing');
  const inferred = /^[0-9a-fA-F]{2}(\.[0-9a-fA-F]{2}){4}$/.test(version) ? 'vbios' : /^\d+(\.\d+)+$/.test(version) ? 'driver' : undefined;
  if (!inferred) throw bad(`colloquialVersion "${version}" is neither a driver nor a VBIOS version`);
  if (kind && kind !== inferred) throw bad(`expected a ${kind} RIM, this one describes ${inferred} version ${version}`);
  const measurements: RimMeasurement[] = [];
  const seen = new Set<number>();
  for (const r of childElements(payload, SWID_NS, 'Resource')) {
    if (attr(r, 'type') !== 'Measurement') continue;
    const num = (n: string) => {
      const v = attr(r, n);
      if (v === undefined || !/^\d+$/.test(v)) throw bad(`Resource ${n} "${v}" is not a number`);
      return Number(v);
    };
    const index = num('index');
    const size = num('size');
    const count = num('alternatives');
    const activeS = attr(r, 'active');
    if (activeS !== 'True' && activeS !== 'False') throw bad(`Resource ${index}: active must be True or False`);
    if (seen.has(index)) throw bad(`duplicate measurement index ${index}`);
    seen.add(index);
    const alternatives: Uint8Array[] = [];
    for (let k = 0; k < count; k++) {
      const h = attr(r, `Hash${k}`, SHA384_NS);
      if (h === undefined || h.length !== 2 * size) throw bad(`Resource ${index}: Hash${k} missing or not ${size} bytes`);
      alternatives.push(fromHex(h, `RIM index ${index} Hash${k}`));
    }
    if (r.attrs.some((a) => a.uri === SHA384_NS && a.local.startsWith('Hash') && Number(a.local.slice(4)) >= count)) throw bad(`Resource ${index}: more hashes than alternatives`);
    measurements.push({ index, name: attr(r, 'name') ?? '', active: activeS === 'True', size, alternatives });
  }
  return { xml, root, kind: inferred, tagId, product: attr(meta, 'product') ?? '', version, measurements };
}

export interface RimComparison {
  /** Report block indices (1-based) compared and matched. */
  readonly matched: readonly number[];
  /** Report block indices (1-based) whose value matched no alternative, with what was expected. */
  readonly mismatches: readonly { readonly block: number; readonly rimIndex: number; readonly source: 'driver' | 'vbios'; readonly runtime: string | undefined }[];
  readonly skipped: readonly number[];
}

/** Versions as the RIM and the report spell them (case differs: 96.00.5E.00.01 vs 96.00.5e.00.01). */
function sameVersion(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/**
 * Compares every active RIM measurement with the report. Throws NVIDIA_RIM_VERSION_MISMATCH when a RIM is for
 * another driver or VBIOS version than the report's, NVIDIA_RIM_CONFLICT when driver and VBIOS claim one index;
 * mismatches are returned (not thrown) so that the caller reports each by index.
 */
export function compareWithRims(report: GpuAttestationReport, driver: Rim, vbios: Rim): RimComparison {
  const op = report.response.opaque;
  if (driver.kind !== 'driver' || vbios.kind !== 'vbios') throw rejected('NVIDIA_RIM_KIND', 'compareWithRims needs a driver RIM and a VBIOS RIM');
  if (!op.driverVersion || !sameVersion(op.driverVersion, driver.version))
    throw rejected('NVIDIA_RIM_VERSION_MISMATCH', `driver RIM is for version ${driver.version}, the report says ${op.driverVersion ?? '(none)'}`);
  if (!op.vbiosVersion || !sameVersion(op.vbiosVersion, vbios.version))
    throw rejected('NVIDIA_RIM_VERSION_MISMATCH', `VBIOS RIM is for version ${vbios.version}, the report says ${op.vbiosVersion ?? '(none)'}`);
  const golden = new Map<number, { m: RimMeasurement; source: 'driver' | 'vbios' }>();
  for (const [rim, source] of [[driver, 'driver'], [vbios, 'vbios']] as const) {
    for (const m of rim.measurements) {
      if (!m.active) continue;
      if (golden.has(m.index)) throw rejected('NVIDIA_RIM_CONFLICT', `driver and VBIOS RIMs both define active measurement index ${m.index}`);
      golden.set(m.index, { m, source });
    }
  }
  const runtime = new Map(report.response.blocks.map((b) => [b.index, b.value]));
  if (golden.size > runtime.size) throw rejected('NVIDIA_RIM_MISMATCH', `the RIMs define ${golden.size} active measurements, the report has only ${runtime.size}`);
  const matched: number[] = [];
  const skipped: number[] = [];
  const mismatches: RimComparison['mismatches'][number][] = [];
  for (const [i, { m, source }] of [...golden].sort((a, b) => a[0] - b[0])) {
    const block = i + 1;
    if (i === NVDEC_DEPENDENT_INDEX && op.nvdec0Status === 'disabled') {
      skipped.push(block);
      continue;
    }
    const v = runtime.get(block);
    if (v && v.length === m.size && m.alternatives.some((a) => equalBytes(a, v))) matched.push(block);
    else mismatches.push({ block, rimIndex: i, source, runtime: v ? hex(v) : undefined });
  }
  return { matched, mismatches, skipped };
}

export interface RimSignatureResult {
  readonly chain: VerifiedChain;
  readonly signer: Certificate;
}

/**
 * Verifies the RIM's enveloped XML-DSig: algorithms allowlisted first, the Reference digest over the canonical
 * document without the Signature, the ECDSA P-384 signature over the canonical SignedInfo with the first
 * KeyInfo certificate, and that certificate's chain (the rest of KeyInfo) to one of `roots`.
 */
export async function verifyRimSignature(rim: Rim, roots: readonly Certificate[], now: Date): Promise<RimSignatureResult> {
  const sigs = childElements(rim.root, DSIG_NS, 'Signature');
  if (sigs.length !== 1) throw rejected('NVIDIA_RIM_SIGNATURE', `RIM ${rim.tagId.slice(0, 16)}…: expected one enveloped ds:Signature, found ${sigs.length}`);
  const sig = sigs[0]!;
  const si = onlyChild(sig, DSIG_NS, 'SignedInfo');
  const algo = (el: XmlElement) => attr(el, 'Algorithm') ?? '';
  const c14nAlg = algo(onlyChild(si, DSIG_NS, 'CanonicalizationMethod'));
  if (c14nAlg !== C14N11) throw rejected('NVIDIA_RIM_ALGORITHM', `RIM canonicalization ${c14nAlg} is not allowed (only Canonical XML 1.1)`);
  const sigAlg = algo(onlyChild(si, DSIG_NS, 'SignatureMethod'));
  if (sigAlg !== ECDSA_SHA384) throw rejected('NVIDIA_RIM_ALGORITHM', `RIM signature method ${sigAlg} is not allowed (only ECDSA-SHA384)`);
  const ref = onlyChild(si, DSIG_NS, 'Reference');
  if (attr(ref, 'URI') !== '') throw rejected('NVIDIA_RIM_ALGORITHM', 'RIM Reference must cover the whole document (URI="")');
  const transforms = childElements(onlyChild(ref, DSIG_NS, 'Transforms'), DSIG_NS, 'Transform').map(algo);
  if (transforms.length !== 2 || transforms[0] !== ENVELOPED || transforms[1] !== C14N11)
    throw rejected('NVIDIA_RIM_ALGORITHM', `RIM transforms ${transforms.join(', ')} are not enveloped-signature + Canonical XML 1.1`);
  const dm = algo(onlyChild(ref, DSIG_NS, 'DigestMethod'));
  if (!DIGEST_SHA384.includes(dm)) throw rejected('NVIDIA_RIM_ALGORITHM', `RIM digest method ${dm} is not SHA-384`);

  const enc = new TextEncoder();
  const digest = await sha384(enc.encode(c14n11(rim.root, sig)));
  const want = fromBase64(textOf(onlyChild(ref, DSIG_NS, 'DigestValue')), 'DigestValue');
  if (!equalBytes(digest, want)) throw rejected('NVIDIA_RIM_DIGEST', `RIM ${rim.kind} ${rim.version}: document digest does not match the signed DigestValue (the RIM was altered)`);

  const certEls = childElements(onlyChild(onlyChild(sig, DSIG_NS, 'KeyInfo'), DSIG_NS, 'X509Data'), DSIG_NS, 'X509Certificate');
  if (certEls.length === 0) throw rejected('NVIDIA_RIM_SIGNATURE', 'RIM KeyInfo carries no certificate');
  const certs = certEls.map((c) => parseCertificate(fromBase64(textOf(c), 'X509Certificate')));
  const signer = certs[0]!;
  await verifySignature(signer.spki, 'ecdsa-p384-sha384', enc.encode(c14n11(si)), fromBase64(textOf(onlyChild(sig, DSIG_NS, 'SignatureValue')), 'SignatureValue'), {
    allowed: ['ecdsa-p384-sha384'], failCode: 'NVIDIA_RIM_SIGNATURE', what: `RIM ${rim.kind} ${rim.version} XML signature`, ecdsaFormat: 'p1363',
  });
  let chain: VerifiedChain;
  try {
    chain = await verifyChain(certs, { now, roots, algorithms: ['ecdsa-p384-sha384'] });
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'CERT_INVALID';
    throw rejected(code === 'CERT_UNTRUSTED_ROOT' ? 'NVIDIA_RIM_UNTRUSTED_ROOT' : code, `RIM ${rim.kind} ${rim.version} signing chain: ${(e as Error).message}`, { cause: e });
  }
  return { chain, signer };
}
