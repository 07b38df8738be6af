/**
 * Fake NVIDIA signer for tests and the worker's sim mode (after go-sev-guest `testing/fake_certs.go`): a sim
 * device root, an intermediate CA and a device leaf (P-384, with NVIDIA's FWID extension), reports in the real
 * SPDM GET_MEASUREMENTS transcript layout with NVIDIA opaque fields, OCSP responses, and RIMs signed with an
 * enveloped XML-DSig under a sim RIM root. Every field is overridable so a test changes one and expects one code.
 * Verifiers accept all this only when the caller passes the sim roots explicitly (`roots`, `sim: true`).
 */
import { concat, hex, own, sha384, toBase64 } from '../bytes.ts';
import { type Certificate, OID, parseCertificate } from '../x509/cert.ts';
import {
  ALG, basicConstraints, bits, certificate, explicit, implicitPrim, int, keyUsage, name, octets, oid, seq, tlv, time, webCryptoSigner,
} from '../x509/der-write.ts';
import { TAG } from '../x509/der.ts';
import { pemEncode } from '../x509/pem.ts';
import { type CcModeDeclared, gpuEvidenceJson } from './evidence.ts';
import { OID_KP_OCSP_SIGNING, OID_OCSP_BASIC } from './ocsp.ts';
import { DSIG_NS, SHA384_NS, SWID_NS } from './rim.ts';
import { GET_MEASUREMENTS, MEASUREMENTS, NVDEC_STATUS, OPAQUE_FIELD_ID } from './spdm.ts';
import { OID_NVIDIA_FWID } from './verify.ts';
import { c14n11, childElements, onlyChild, parseXml } from './xml.ts';

const EC = { name: 'ECDSA', namedCurve: 'P-384' } as const;
const CN = '2.5.4.3';
const O = '2.5.4.10';

interface KeyPair {
  readonly privateKey: CryptoKey;
  readonly spki: Uint8Array;
}
async function keyPair(): Promise<KeyPair> {
  const k = (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  return { privateKey: k.privateKey, spki: new Uint8Array(await crypto.subtle.exportKey('spki', k.publicKey)) };
}

export interface NvidiaSimSigner {
  readonly root: Certificate;
  readonly intermediate: Certificate;
  readonly leaf: Certificate;
  /** Leaf, intermediate, root: as the GPU driver returns its chain. */
  readonly chainPem: string;
  readonly fwid: Uint8Array;
  readonly leafKey: CryptoKey;
  readonly intermediateKey: CryptoKey;
  readonly rootKey: CryptoKey;
}

export interface SimSignerOptions {
  /** Validity starts a day before `now` and lasts ten years. */
  readonly now: Date;
  readonly fwid?: Uint8Array;
  /** Leave the FWID extension out of the leaf (trustee chain case 4). */
  readonly leafWithoutFwid?: boolean;
  readonly rootName?: string;
}

const DAY = 86_400_000;

/** NVIDIA's value under 2.23.133.5.4.1: SEQUENCE { INTEGER 1, SubjectPublicKeyInfo, SEQUENCE { sha384, OCTET STRING fwid } }. */
function fwidExtension(spki: Uint8Array, fwid: Uint8Array): Uint8Array {
  return seq(int(1), spki, seq(oid(OID.sha384), octets(fwid)));
}

export async function createNvidiaSimSigner(options: SimSignerOptions): Promise<NvidiaSimSigner> {
  const [rk, ik, lk] = [await keyPair(), await keyPair(), await keyPair()];
  const notBefore = new Date(options.now.getTime() - DAY);
  const notAfter = new Date(options.now.getTime() + 3650 * DAY);
  const rootName = name([[CN, options.rootName ?? 'SIM NVIDIA Device Identity CA'], [O, 'gm sim']]);
  const interName = name([[CN, 'SIM GH100 A01 GSP BROM'], [O, 'gm sim']]);
  const leafName = name([[CN, 'SIM GH100 A01 GSP FMC LF'], [O, 'gm sim']]);
  const fwid = options.fwid ?? (await sha384(new TextEncoder().encode('gm sim GPU firmware')));
  const caExt = [{ oid: OID.basicConstraints, critical: true, value: basicConstraints(true) }, { oid: OID.keyUsage, critical: true, value: keyUsage([5, 6]) }];
  const rootDer = await certificate({ serial: 1, signatureAlgorithm: ALG.ecdsaSha384, issuer: rootName, subject: rootName, notBefore, notAfter, spki: rk.spki, extensions: caExt }, webCryptoSigner(rk.privateKey));
  const interDer = await certificate({ serial: 2, signatureAlgorithm: ALG.ecdsaSha384, issuer: rootName, subject: interName, notBefore, notAfter, spki: ik.spki, extensions: caExt }, webCryptoSigner(rk.privateKey));
  const leafExt = [
    { oid: OID.keyUsage, critical: true, value: keyUsage([0]) },
    ...(options.leafWithoutFwid ? [] : [{ oid: OID_NVIDIA_FWID, value: fwidExtension(lk.spki, fwid) }]),
  ];
  const leafDer = await certificate({ serial: 0x53c22ba1n, signatureAlgorithm: ALG.ecdsaSha384, issuer: interName, subject: leafName, notBefore, notAfter, spki: lk.spki, extensions: leafExt }, webCryptoSigner(ik.privateKey));
  return {
    root: parseCertificate(rootDer), intermediate: parseCertificate(interDer), leaf: parseCertificate(leafDer),
    chainPem: [leafDer, interDer, rootDer].map((d) => pemEncode(d)).join(''),
    fwid, leafKey: lk.privateKey, intermediateKey: ik.privateKey, rootKey: rk.privateKey,
  };
}

/**
 * Another sim GPU under the same fake NVIDIA root and intermediate: a fresh leaf key and a device certificate with
 * this serial number (the GPU's UEID, what tells one GPU from another). Two devices given the same serial stand for
 * one GPU presented twice.
 */
export async function simGpuDevice(signer: NvidiaSimSigner, serial: bigint, now = new Date()): Promise<NvidiaSimSigner> {
  const lk = await keyPair();
  const leafName = name([[CN, 'SIM GH100 A01 GSP FMC LF'], [O, 'gm sim']]);
  const leafExt = [
    { oid: OID.keyUsage, critical: true, value: keyUsage([0]) },
    { oid: OID_NVIDIA_FWID, value: fwidExtension(lk.spki, signer.fwid) },
  ];
  const leafDer = await certificate(
    { serial, signatureAlgorithm: ALG.ecdsaSha384, issuer: signer.intermediate.subject.raw, subject: leafName, notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + 3650 * DAY), spki: lk.spki, extensions: leafExt },
    webCryptoSigner(signer.intermediateKey),
  );
  return { ...signer, leaf: parseCertificate(leafDer), chainPem: [leafDer, signer.intermediate.der, signer.root.der].map((d) => pemEncode(d)).join(''), leafKey: lk.privateKey };
}

export interface SimReportOverrides {
  readonly nonce?: Uint8Array;
  /** Measurement block index (1-based) → value; blocks 1..blockCount default to SHA-384("block <i>"). */
  readonly measurements?: Readonly<Record<number, Uint8Array>>;
  readonly blockCount?: number;
  readonly driverVersion?: string;
  /** Dotted like 96.00.9f.00.01. */
  readonly vbiosVersion?: string;
  /** The report's FWID (default: the signer's). */
  readonly fwid?: Uint8Array;
  readonly nvdec0Status?: 'enabled' | 'disabled';
  /** Extra or replacement opaque fields (id → raw data). */
  readonly opaque?: ReadonlyMap<number, Uint8Array>;
  readonly spdmVersion?: number;
  /** Sign with this key instead of the leaf's. */
  readonly signWith?: CryptoKey;
}

const le16 = (n: number) => Uint8Array.of(n & 0xff, (n >> 8) & 0xff);
const le24 = (n: number) => Uint8Array.of(n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff);

/** VBIOS dotted version → the 8 opaque bytes (inverse of spdm.ts `formatVbiosVersion`). */
export function vbiosBytes(v: string): Uint8Array {
  const p = v.split('.').map((x) => parseInt(x, 16));
  if (p.length !== 5 || p.some((x) => !(x >= 0 && x <= 255))) throw new RangeError(`sim: bad VBIOS version ${v}`);
  return Uint8Array.of(p[3]!, p[2]!, p[1]!, p[0]!, p[4]!, 0, 0, 0);
}

const defaultBlock = async (i: number) => sha384(new TextEncoder().encode(`gm sim measurement block ${i}`));

/** The default value of measurement block `index` in sim reports (what a sim RIM must list to match). */
export const simMeasurement = defaultBlock;

/** Builds a signed SPDM GET_MEASUREMENTS transcript (request 37 B ‖ response ‖ 96-byte signature). */
export async function buildSimGpuReport(signer: NvidiaSimSigner, o: SimReportOverrides = {}): Promise<Uint8Array> {
  const version = o.spdmVersion ?? 0x11;
  const nonce = o.nonce ?? new Uint8Array(32);
  const request = concat(Uint8Array.of(version, GET_MEASUREMENTS, 0x01, 0xff), nonce, Uint8Array.of(0));
  const count = o.blockCount ?? 64;
  const blocks: Uint8Array[] = [];
  for (let i = 1; i <= count; i++) {
    const v = o.measurements?.[i] ?? (await defaultBlock(i));
    const dmtf = concat(Uint8Array.of(0x01), le16(v.length), v);
    blocks.push(concat(Uint8Array.of(i, 0x01), le16(dmtf.length), dmtf));
  }
  const record = concat(...blocks);
  const fields = new Map<number, Uint8Array>([
    [OPAQUE_FIELD_ID.DRIVER_VERSION, concat(new TextEncoder().encode(o.driverVersion ?? '550.90.07'), Uint8Array.of(0))],
    [OPAQUE_FIELD_ID.VBIOS_VERSION, vbiosBytes(o.vbiosVersion ?? '96.00.9f.00.01')],
    [OPAQUE_FIELD_ID.CHIP_SKU, new TextEncoder().encode('882\0')],
    [OPAQUE_FIELD_ID.PROJECT, new TextEncoder().encode('1010\0')],
    [OPAQUE_FIELD_ID.PROJECT_SKU, new TextEncoder().encode('0200\0')],
    [OPAQUE_FIELD_ID.NVDEC0_STATUS, Uint8Array.of(o.nvdec0Status === 'enabled' ? NVDEC_STATUS.ENABLED : NVDEC_STATUS.DISABLED)],
    [OPAQUE_FIELD_ID.MSRSCNT, concat(...Array.from({ length: count }, () => Uint8Array.of(1, 0, 0, 0)))],
    [OPAQUE_FIELD_ID.FWID, o.fwid ?? signer.fwid],
  ]);
  for (const [k, v] of o.opaque ?? []) fields.set(k, v);
  const opaque = concat(...[...fields].map(([id, d]) => concat(le16(id), le16(d.length), d)));
  const response = concat(Uint8Array.of(version, MEASUREMENTS, 0, 0, count), le24(record.length), record, new Uint8Array(32).fill(0x5a), le16(opaque.length), opaque);
  const signed = concat(request, response);
  const sig = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, o.signWith ?? signer.leafKey, own(signed)));
  return concat(signed, sig);
}

export interface SimGpu extends SimReportOverrides {
  readonly arch?: string;
  readonly ccMode?: CcModeDeclared;
  /** Use another chain (PEM) than the signer's. */
  readonly chainPem?: string;
}

/** The nvtrust JSON form for several sim GPUs (each entry may override fields; `ccMode` defaults to ON). */
export async function buildSimGpuEvidence(signer: NvidiaSimSigner, gpus: readonly SimGpu[]): Promise<string> {
  const items = [];
  for (const g of gpus)
    items.push({ arch: g.arch ?? 'HOPPER', certificatePem: g.chainPem ?? signer.chainPem, report: await buildSimGpuReport(signer, g), ccMode: g.ccMode ?? ('on' as const) });
  return gpuEvidenceJson(items);
}

export interface SimOcspOptions {
  readonly status?: 'good' | 'revoked' | 'unknown';
  readonly thisUpdate: Date;
  readonly nextUpdate?: Date;
  /** Sign with this key (default: the issuer's key from the signer). */
  readonly signWith?: CryptoKey;
  /** A delegated responder (RFC 6960 §4.2.2.2): its certificate travels in `certs` and it signs. */
  readonly responder?: SimOcspResponder;
}

export interface SimOcspResponder {
  readonly cert: Certificate;
  readonly key: CryptoKey;
}

/** A responder certificate issued by the leaf's issuer (the intermediate), with id-kp-OCSPSigning unless `eku` is false. */
export async function createSimOcspResponder(signer: NvidiaSimSigner, now: Date, eku = true): Promise<SimOcspResponder> {
  const k = await keyPair();
  const der = await certificate({
    serial: 77, signatureAlgorithm: ALG.ecdsaSha384, issuer: signer.intermediate.subject.raw, subject: name([[CN, 'SIM NVIDIA OCSP Responder'], [O, 'gm sim']]),
    notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + 365 * DAY), spki: k.spki,
    extensions: [{ oid: OID.keyUsage, critical: true, value: keyUsage([0]) }, ...(eku ? [{ oid: '2.5.29.37', value: seq(oid(OID_KP_OCSP_SIGNING)) }] : [])],
  }, webCryptoSigner(signer.intermediateKey));
  return { cert: parseCertificate(der), key: k.privateKey };
}

/** An OCSPResponse (RFC 6960 §4.2.1) for `cert`, signed by its issuer (CA-signed; ResponderID byName). */
export async function buildSimOcsp(signer: NvidiaSimSigner, cert: Certificate, o: SimOcspOptions): Promise<Uint8Array> {
  const issuer = cert === signer.leaf || cert.issuer.text === signer.intermediate.subject.text ? signer.intermediate : signer.root;
  return buildOcspFor(cert, issuer, issuer === signer.intermediate ? signer.intermediateKey : signer.rootKey, o);
}

/** An OCSPResponse for `cert` signed by `issuerKey` (its issuer's), or by the delegated responder / `signWith`. */
export async function buildOcspFor(cert: Certificate, issuer: Certificate, issuerKey: CryptoKey, o: SimOcspOptions): Promise<Uint8Array> {
  const key = o.signWith ?? o.responder?.key ?? issuerKey;
  const gt = (d: Date) => {
    const t = time(d);
    // BasicOCSPResponse times are GeneralizedTime (RFC 6960 §4.2.1) regardless of year.
    if (t[0] === TAG.GeneralizedTime) return t;
    const s = String.fromCharCode(...t.subarray(2));
    return tlv(TAG.GeneralizedTime, new TextEncoder().encode(`${d.getUTCFullYear()}${s.slice(2)}`));
  };
  const nameHash = await sha384(issuer.subject.raw);
  const keyHash = await sha384(issuer.spki.publicKey);
  const certId = seq(seq(oid(OID.sha384), tlv(TAG.NULL, new Uint8Array(0))), octets(nameHash), octets(keyHash), tlv(TAG.INTEGER, cert.serialNumber));
  const status = o.status === 'revoked' ? tlv(0xa1, gt(o.thisUpdate)) : o.status === 'unknown' ? implicitPrim(2, new Uint8Array(0)) : implicitPrim(0, new Uint8Array(0));
  const single = seq(certId, status, gt(o.thisUpdate), ...(o.nextUpdate ? [explicit(0, gt(o.nextUpdate))] : []));
  const tbs = seq(explicit(1, (o.responder?.cert ?? issuer).subject.raw), gt(o.thisUpdate), seq(single));
  const sig = await webCryptoSigner(key)(tbs);
  const basic = seq(tbs, ALG.ecdsaSha384, bits(sig), ...(o.responder ? [explicit(0, seq(o.responder.cert.der))] : []));
  return seq(tlv(TAG.ENUMERATED, Uint8Array.of(0)), explicit(0, seq(oid(OID_OCSP_BASIC), octets(basic))));
}

/** A sim RIM signing chain: root → signer leaf (P-384). */
export interface SimRimSigner {
  readonly root: Certificate;
  readonly signer: Certificate;
  readonly signerKey: CryptoKey;
  /** Signs OCSP responses for the signer certificate (`buildOcspFor`). */
  readonly rootKey: CryptoKey;
  readonly rootDer: Uint8Array;
  readonly signerDer: Uint8Array;
}

export async function createSimRimSigner(now: Date): Promise<SimRimSigner> {
  const [rk, sk] = [await keyPair(), await keyPair()];
  const notBefore = new Date(now.getTime() - DAY);
  const notAfter = new Date(now.getTime() + 3650 * DAY);
  const rootName = name([[CN, 'SIM NVIDIA CoRIM signing Root CA'], [O, 'gm sim']]);
  const sName = name([[CN, 'SIM RIM Signer'], [O, 'gm sim']]);
  const rootDer = await certificate({ serial: 10, signatureAlgorithm: ALG.ecdsaSha384, issuer: rootName, subject: rootName, notBefore, notAfter, spki: rk.spki,
    extensions: [{ oid: OID.basicConstraints, critical: true, value: basicConstraints(true) }] }, webCryptoSigner(rk.privateKey));
  const signerDer = await certificate({ serial: 11, signatureAlgorithm: ALG.ecdsaSha384, issuer: rootName, subject: sName, notBefore, notAfter, spki: sk.spki,
    extensions: [{ oid: OID.keyUsage, critical: true, value: keyUsage([0]) }] }, webCryptoSigner(rk.privateKey));
  return { root: parseCertificate(rootDer), signer: parseCertificate(signerDer), signerKey: sk.privateKey, rootKey: rk.privateKey, rootDer, signerDer };
}

export interface SimRimEntry {
  /** RIM index (0-based; report block index - 1). */
  readonly index: number;
  readonly active: boolean;
  readonly alternatives: readonly Uint8Array[];
}

/** A SWID RIM in NVIDIA's layout, signed (enveloped XML-DSig, C14N 1.1, ECDSA-SHA384) by `rimSigner`. */
export async function buildSimRim(rimSigner: SimRimSigner, kind: 'driver' | 'vbios', version: string, entries: readonly SimRimEntry[]): Promise<string> {
  const res = entries.map((e) => `        <ns0:Resource type="Measurement" index="${e.index}" active="${e.active ? 'True' : 'False'}" alternatives="${e.alternatives.length}" ${
    e.alternatives.map((a, k) => `ns2:Hash${k}="${hex(a)}"`).join(' ')} name="Measurement_${e.index}" size="${e.alternatives[0]?.length ?? 48}"/>`).join('\n');
  const head = `<SoftwareIdentity xmlns="${SWID_NS}" xmlns:ns0="${SWID_NS}" xmlns:ns2="${SHA384_NS}" corpus="false" name="SIMGPU" patch="false" supplemental="false" tagId="${hex(await sha384(new TextEncoder().encode(kind + version)))}" version="1.0" tagVersion="0">
    <ns0:Entity name="gm sim" role="softwareCreator tagCreator"/>
    <ns0:Meta colloquialVersion="${version}" edition="GPU" product="SIMGPU" revision="r1"/>
    <ns0:Payload>
${res}
    </ns0:Payload>
`;
  const tail = '</SoftwareIdentity>\n';
  const b64 = (b: Uint8Array) => toBase64(b);
  const certs = [rimSigner.signerDer, rimSigner.rootDer].map((d) => `<ds:X509Certificate>${b64(d)}</ds:X509Certificate>`).join('');
  const placeholder = `<ds:Signature xmlns:ds="${DSIG_NS}"></ds:Signature>`;
  const doc0 = parseXml(head + placeholder + tail);
  const digest = await sha384(new TextEncoder().encode(c14n11(doc0, childElements(doc0, DSIG_NS, 'Signature')[0])));
  const signedInfo = `<ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"/><ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2006/12/xml-c14n11"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#sha384"/><ds:DigestValue>${b64(digest)}</ds:DigestValue></ds:Reference></ds:SignedInfo>`;
  const withSi = `${head}<ds:Signature xmlns:ds="${DSIG_NS}">${signedInfo}<ds:SignatureValue>SIGVALUE</ds:SignatureValue><ds:KeyInfo><ds:X509Data>${certs}</ds:X509Data></ds:KeyInfo></ds:Signature>${tail}`;
  const doc1 = parseXml(withSi);
  const si = onlyChild(childElements(doc1, DSIG_NS, 'Signature')[0]!, DSIG_NS, 'SignedInfo');
  const sig = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, rimSigner.signerKey, own(new TextEncoder().encode(c14n11(si)))));
  return withSi.replace('SIGVALUE', b64(sig));
}

