/**
 * A simulated Intel signer for TDX (after go-sev-guest `testing/fake_certs.go`): a fake Intel SGX Root CA → PCK
 * Platform CA → PCK leaf with the SGX extensions (1.2.840.113741.1.13.1, SGX PCK Certificate profile §1.5), an
 * "Intel SGX TCB Signing" certificate, a QE attestation key, and quotes in the real v4/v5 byte layout (abi.ts)
 * with matching TCB info v3 / QE identity v2 JSON and CRLs. Any field can be overridden, so a test changes one
 * thing and expects one code; the enclave's `sim` TEE provider uses it to produce evidence.
 *
 * Every organization name says "gm sim"; verifiers accept this chain only when the caller passes `roots()`.
 */
import { concat, hex, own } from '../bytes.ts';
import { type Certificate, OID, parseCertificate } from '../x509/cert.ts';
import {
  ALG, type ExtensionSpec, basicConstraints, certificate, crl as writeCrl, int, keyUsage, name, octets, oid, seq, tlv, bool, webCryptoSigner,
} from '../x509/der-write.ts';
import { pemEncode } from '../x509/pem.ts';
import { ATTESTATION_KEY_TYPE_ECDSA_P256, CERT_DATA_PCK_CHAIN, CERT_DATA_QE_REPORT, TEE_TYPE_TDX, TD10_BODY_SIZE, TD15_BODY_SIZE } from './abi.ts';
import { type CollateralAsServed, type TdxCollateral, servedFromCollateral } from './collateral.ts';
import { SGX_EXTENSIONS_OID } from './pck.ts';

/** Body fields of a sim quote; all optional. */
export interface SimTdBody {
  readonly teeTcbSvn?: Uint8Array;
  readonly mrSeam?: Uint8Array;
  readonly mrSignerSeam?: Uint8Array;
  readonly seamAttributes?: Uint8Array;
  readonly tdAttributes?: Uint8Array;
  readonly xfam?: Uint8Array;
  readonly mrTd?: Uint8Array;
  readonly mrConfigId?: Uint8Array;
  readonly mrOwner?: Uint8Array;
  readonly mrOwnerConfig?: Uint8Array;
  readonly rtmr?: readonly Uint8Array[];
  readonly reportData?: Uint8Array;
  readonly teeTcbSvn2?: Uint8Array;
  readonly mrServiceTd?: Uint8Array;
}

export interface SimQeFields {
  readonly cpuSvn?: Uint8Array;
  readonly miscSelect?: number;
  readonly attributes?: Uint8Array;
  readonly mrEnclave?: Uint8Array;
  readonly mrSigner?: Uint8Array;
  readonly isvProdId?: number;
  readonly isvSvn?: number;
  /** Overrides the computed binding SHA-256(attestation key ‖ auth data) ‖ 0^32. */
  readonly reportData?: Uint8Array;
}

export interface SimQuoteFields extends SimTdBody {
  readonly version?: 4 | 5;
  /** v5 only: 2 (TDX 1.0) or 3 (TDX 1.5, default for v5). */
  readonly bodyType?: 2 | 3;
  readonly qe?: SimQeFields;
  readonly qeAuthData?: Uint8Array;
  /** PCK chain PEM bytes to embed instead of the sim's own leaf ‖ CA ‖ root. */
  readonly pckChainPem?: Uint8Array;
  /** Sign the QE report with this PCK key instead of the sim's (e.g. a leaf from `issuePck`). */
  readonly pckKey?: CryptoKey;
  /** Raw patches of the signed region (header ‖ [descriptor ‖] body), applied before signing (reserved-byte tests). */
  readonly patch?: readonly (readonly [offset: number, bytes: Uint8Array])[];
}

export interface SimPckOverrides {
  readonly fmspc?: Uint8Array;
  readonly pceId?: Uint8Array;
  readonly sgxTcbComponents?: readonly number[];
  readonly pceSvn?: number;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly serial?: number;
  /** Leave the SGX extension out. */
  readonly omitSgxExtension?: boolean;
  readonly commonName?: string;
  /** Issue a P-384 key (a PCK key the verifier must refuse). */
  readonly keyCurve?: 'P-256' | 'P-384';
}

export interface SimPck {
  readonly der: Uint8Array;
  readonly key: CryptoKey;
  /** leaf ‖ PCK CA ‖ root as PEM bytes (type-5 certification data). */
  readonly chainPem: Uint8Array;
}

export interface SimCollateralOverrides {
  /** Mutates the TCB info JSON object before it is serialized and signed. */
  readonly tcbInfo?: (j: Record<string, any>) => void;
  readonly qeIdentity?: (j: Record<string, any>) => void;
  /** Serials the root CA CRL revokes (the PCK CA is serial 2, the TCB signing cert 3). */
  readonly revokeByRoot?: readonly number[];
  /** Serials the PCK CRL revokes (the default PCK leaf is serial 0x100). */
  readonly revokeByPckCa?: readonly number[];
  readonly crlThisUpdate?: Date;
  readonly crlNextUpdate?: Date;
}

export interface SimTdx {
  readonly rootDer: Uint8Array;
  readonly pckCaDer: Uint8Array;
  readonly tcbSigningDer: Uint8Array;
  readonly pck: SimPck;
  /** The roots to pass as `options.roots`. */
  roots(): Certificate[];
  /** Issue time of the collateral and the default `now` for verification. */
  readonly now: Date;
  readonly defaultBody: Required<Omit<SimTdBody, 'teeTcbSvn2' | 'mrServiceTd'>>;
  quote(fields?: SimQuoteFields): Promise<Uint8Array>;
  collateral(overrides?: SimCollateralOverrides): Promise<TdxCollateral>;
  issuePck(overrides?: SimPckOverrides): Promise<SimPck>;
  /** Signs arbitrary collateral JSON text with the TCB signing key (raw r‖s). */
  signCollateral(text: string): Promise<Uint8Array>;
  /**
   * What the enclave's sim TEE provider puts in an evidence bundle: the quote (REPORTDATA = `reportData`), no extra
   * certificates (the PCK chain is in the quote) and the default collateral in its served form (made once).
   */
  evidence(reportData: Uint8Array, fields?: Omit<SimQuoteFields, 'reportData'>): Promise<{ evidence: Uint8Array; certs: Uint8Array[]; collateral: CollateralAsServed }>;
}

export interface SimTdxOptions {
  /** Collateral issue date; certificates are valid from a year earlier. Default 2025-06-01. */
  readonly now?: Date;
  readonly fmspc?: Uint8Array;
}

/** Intel's production TD QE identity values (dcap-qvl / PCS samples), reused so the sim QE looks like the real one. */
export const SIM_QE_MRSIGNER = 'dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5';
const SGX_TCB = [2, 2, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
const PCESVN = 11;
/** TEE_TCB_SVN: module ISVSVN 3, TDX module major version 1, late microcode 2. */
const TEE_TCB_SVN = Uint8Array.from([3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

const filled = (n: number, v: number) => new Uint8Array(n).fill(v);
const intelName = (cn: string) => name([['2.5.4.3', cn], ['2.5.4.10', 'Intel Corporation (gm sim)'], ['2.5.4.7', 'Santa Clara'], ['2.5.4.8', 'CA'], ['2.5.4.6', 'US']]);
const ecKey = async (namedCurve: 'P-256' | 'P-384' = 'P-256') => (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve }, true, ['sign', 'verify'])) as CryptoKeyPair;
const spkiOf = async (k: CryptoKey) => new Uint8Array(await crypto.subtle.exportKey('spki', k));
const signRaw = async (k: CryptoKey, data: Uint8Array) => new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, k, own(data)));
const components = (svns: readonly number[], named = false) =>
  svns.map((svn, i) => (named && i < 3 ? { svn, category: 'OS/VMM', type: i === 2 ? 'TDX Late Microcode Update' : 'TDX Module' } : { svn }));

function sgxExtension(o: { ppid: Uint8Array; tcb: readonly number[]; pceSvn: number; pceId: Uint8Array; fmspc: Uint8Array }): Uint8Array {
  const O = SGX_EXTENSIONS_OID;
  const entry = (sub: string, v: Uint8Array) => seq(oid(`${O}.${sub}`), v);
  return seq(
    entry('1', octets(o.ppid)),
    entry('2', seq(...o.tcb.map((v, i) => entry(`2.${i + 1}`, int(v))), entry('2.17', int(o.pceSvn)), entry('2.18', octets(Uint8Array.from(o.tcb))))),
    entry('3', octets(o.pceId)),
    entry('4', octets(o.fmspc)),
    entry('5', tlv(0x0a, Uint8Array.of(0))),
    entry('6', octets(filled(16, 0x61))),
    entry('7', seq(entry('7.1', bool(false)), entry('7.2', bool(true)), entry('7.3', bool(true)))),
  );
}

function sgxReport(f: SimQeFields, binding: Uint8Array): Uint8Array {
  const b = new Uint8Array(384);
  const dv = new DataView(b.buffer);
  b.set(f.cpuSvn ?? Uint8Array.from(SGX_TCB), 0);
  dv.setUint32(16, f.miscSelect ?? 0, true);
  b.set(f.attributes ?? concat(Uint8Array.of(0x11), new Uint8Array(15)), 48);
  b.set(f.mrEnclave ?? filled(32, 0xe1), 64);
  b.set(f.mrSigner ?? Uint8Array.from(SIM_QE_MRSIGNER.match(/../g)!.map((x) => parseInt(x, 16))), 128);
  dv.setUint16(256, f.isvProdId ?? 2, true);
  dv.setUint16(258, f.isvSvn ?? 4, true);
  b.set(f.reportData ?? binding, 320);
  return b;
}

function u16(v: number): Uint8Array {
  return Uint8Array.of(v & 0xff, v >> 8);
}
function u32(v: number): Uint8Array {
  return Uint8Array.of(v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24);
}

export async function createSimTdx(options: SimTdxOptions = {}): Promise<SimTdx> {
  const now = options.now ?? new Date('2025-06-01T00:00:00Z');
  const notBefore = new Date(now.getTime() - 365 * 86400_000);
  const notAfter = new Date(now.getTime() + 5 * 365 * 86400_000);
  const fmspc = options.fmspc ?? Uint8Array.from([0x90, 0xc0, 0x6f, 0, 0, 0]);
  const pceId = Uint8Array.of(0, 0);
  const [rootKey, caKey, tcbKey, attKey] = await Promise.all([ecKey(), ecKey(), ecKey(), ecKey()]);
  const rootName = intelName('Intel SGX Root CA');
  const caName = intelName('Intel SGX PCK Platform CA');
  const ca = (pathLen?: number): ExtensionSpec[] => [
    { oid: OID.basicConstraints, critical: true, value: basicConstraints(true, pathLen) },
    { oid: OID.keyUsage, critical: true, value: keyUsage([5, 6]) },
  ];
  const rootSign = webCryptoSigner(rootKey.privateKey, 'SHA-256');
  const caSign = webCryptoSigner(caKey.privateKey, 'SHA-256');
  const cert = (serial: number, issuer: Uint8Array, subject: Uint8Array, spki: Uint8Array, ext: ExtensionSpec[], sign: typeof rootSign, nb = notBefore, na = notAfter) =>
    certificate({ serial, signatureAlgorithm: ALG.ecdsaSha256, issuer, subject, notBefore: nb, notAfter: na, spki, extensions: ext }, sign);
  const rootDer = await cert(1, rootName, rootName, await spkiOf(rootKey.publicKey), ca(1), rootSign);
  const pckCaDer = await cert(2, rootName, caName, await spkiOf(caKey.publicKey), ca(0), rootSign);
  const tcbSigningDer = await cert(3, rootName, intelName('Intel SGX TCB Signing'), await spkiOf(tcbKey.publicKey),
    [{ oid: OID.basicConstraints, critical: true, value: basicConstraints(false) }, { oid: OID.keyUsage, critical: true, value: keyUsage([0, 1]) }], rootSign);
  const root = parseCertificate(rootDer);

  const issuePck = async (ov: SimPckOverrides = {}): Promise<SimPck> => {
    const k = await ecKey(ov.keyCurve);
    const ext: ExtensionSpec[] = [{ oid: OID.basicConstraints, critical: true, value: basicConstraints(false) }, { oid: OID.keyUsage, critical: true, value: keyUsage([0, 1]) }];
    if (!ov.omitSgxExtension) {
      ext.push({ oid: SGX_EXTENSIONS_OID, value: sgxExtension({
        ppid: filled(16, 0x0b), tcb: ov.sgxTcbComponents ?? SGX_TCB, pceSvn: ov.pceSvn ?? PCESVN, pceId: ov.pceId ?? pceId, fmspc: ov.fmspc ?? fmspc,
      }) });
    }
    const der = await cert(ov.serial ?? 0x100, caName, intelName(ov.commonName ?? 'Intel SGX PCK Certificate'), await spkiOf(k.publicKey), ext, caSign,
      ov.notBefore ?? notBefore, ov.notAfter ?? notAfter);
    const chainPem = new TextEncoder().encode(pemEncode(der) + pemEncode(pckCaDer) + pemEncode(rootDer) + '\0');
    return { der, key: k.privateKey, chainPem };
  };
  const pck = await issuePck();
  const attRaw = new Uint8Array(await crypto.subtle.exportKey('raw', attKey.publicKey)).subarray(1);

  const defaultBody = {
    teeTcbSvn: TEE_TCB_SVN, mrSeam: filled(48, 0x5e), mrSignerSeam: new Uint8Array(48), seamAttributes: new Uint8Array(8),
    tdAttributes: Uint8Array.from([0, 0, 0, 0x10, 0, 0, 0, 0]), xfam: Uint8Array.from([0xe7, 0x1a, 0x06, 0, 0, 0, 0, 0]), mrTd: filled(48, 0x7d),
    mrConfigId: new Uint8Array(48), mrOwner: new Uint8Array(48), mrOwnerConfig: new Uint8Array(48),
    rtmr: [filled(48, 0xa0), filled(48, 0xa1), filled(48, 0xa2), new Uint8Array(48)], reportData: new Uint8Array(64),
  };

  const quote = async (f: SimQuoteFields = {}): Promise<Uint8Array> => {
    const version = f.version ?? 4;
    const bodyType = version === 5 ? (f.bodyType ?? 3) : 2;
    const field = (v: Uint8Array | undefined, d: Uint8Array, n: number, what: string) => {
      const x = v ?? d;
      if (x.length !== n) throw new RangeError(`sim quote: ${what} must be ${n} bytes`);
      return x;
    };
    const rt = f.rtmr ?? defaultBody.rtmr;
    const body = concat(
      field(f.teeTcbSvn, defaultBody.teeTcbSvn, 16, 'teeTcbSvn'), field(f.mrSeam, defaultBody.mrSeam, 48, 'mrSeam'),
      field(f.mrSignerSeam, defaultBody.mrSignerSeam, 48, 'mrSignerSeam'), field(f.seamAttributes, defaultBody.seamAttributes, 8, 'seamAttributes'),
      field(f.tdAttributes, defaultBody.tdAttributes, 8, 'tdAttributes'), field(f.xfam, defaultBody.xfam, 8, 'xfam'), field(f.mrTd, defaultBody.mrTd, 48, 'mrTd'),
      field(f.mrConfigId, defaultBody.mrConfigId, 48, 'mrConfigId'), field(f.mrOwner, defaultBody.mrOwner, 48, 'mrOwner'),
      field(f.mrOwnerConfig, defaultBody.mrOwnerConfig, 48, 'mrOwnerConfig'), ...[0, 1, 2, 3].map((i) => field(rt[i], defaultBody.rtmr[i]!, 48, `rtmr${i}`)),
      field(f.reportData, defaultBody.reportData, 64, 'reportData'),
      ...(bodyType === 3 ? [field(f.teeTcbSvn2, TEE_TCB_SVN, 16, 'teeTcbSvn2'), field(f.mrServiceTd, new Uint8Array(48), 48, 'mrServiceTd')] : []),
    );
    const header = concat(u16(version), u16(ATTESTATION_KEY_TYPE_ECDSA_P256), u32(TEE_TYPE_TDX), new Uint8Array(4),
      Uint8Array.from([0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07]), new Uint8Array(20));
    const signed = version === 5 ? concat(header, u16(bodyType), u32(bodyType === 3 ? TD15_BODY_SIZE : TD10_BODY_SIZE), body) : concat(header, body);
    for (const [at, bytes] of f.patch ?? []) {
      if (at < 0 || at + bytes.length > signed.length) throw new RangeError('sim quote: patch outside the signed region');
      signed.set(bytes, at);
    }
    const authData = f.qeAuthData ?? Uint8Array.from({ length: 32 }, (_, i) => i);
    const binding = concat(new Uint8Array(await crypto.subtle.digest('SHA-256', own(concat(attRaw, authData)))), new Uint8Array(32));
    const qeReport = sgxReport(f.qe ?? {}, binding);
    const qeSig = await signRaw(f.pckKey ?? pck.key, qeReport);
    const chain = f.pckChainPem ?? pck.chainPem;
    const inner = concat(u16(CERT_DATA_PCK_CHAIN), u32(chain.length), chain);
    const certData = concat(qeReport, qeSig, u16(authData.length), authData, inner);
    const sig = await signRaw(attKey.privateKey, signed);
    const sigData = concat(sig, attRaw, u16(CERT_DATA_QE_REPORT), u32(certData.length), certData);
    return concat(signed, u32(sigData.length), sigData);
  };

  const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const tcbSign = (text: string) => signRaw(tcbKey.privateKey, new TextEncoder().encode(text));
  const collateral = async (ov: SimCollateralOverrides = {}): Promise<TdxCollateral> => {
    const nextUpdate = new Date(now.getTime() + 30 * 86400_000);
    const zeros48 = '00'.repeat(48);
    const tcbInfo: Record<string, any> = {
      id: 'TDX', version: 3, issueDate: iso(now), nextUpdate: iso(nextUpdate), fmspc: hex(fmspc).toUpperCase(), pceId: hex(pceId), tcbType: 0,
      tcbEvaluationDataNumber: 17,
      tdxModule: { mrsigner: zeros48, attributes: '0000000000000000', attributesMask: 'FFFFFFFFFFFFFFFF' },
      tdxModuleIdentities: [{
        id: 'TDX_01', mrsigner: zeros48, attributes: '0000000000000000', attributesMask: 'FFFFFFFFFFFFFFFF',
        tcbLevels: [
          { tcb: { isvsvn: 3 }, tcbDate: '2024-03-13T00:00:00Z', tcbStatus: 'UpToDate' },
          { tcb: { isvsvn: 2 }, tcbDate: '2023-08-09T00:00:00Z', tcbStatus: 'OutOfDate' },
        ],
      }],
      tcbLevels: [
        { tcb: { sgxtcbcomponents: components(SGX_TCB), pcesvn: PCESVN, tdxtcbcomponents: components([5, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], true) },
          tcbDate: '2024-03-13T00:00:00Z', tcbStatus: 'UpToDate' },
        { tcb: { sgxtcbcomponents: components([2, 2, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]), pcesvn: 5, tdxtcbcomponents: components([3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], true) },
          tcbDate: '2018-01-04T00:00:00Z', tcbStatus: 'OutOfDate', advisoryIDs: ['INTEL-SA-00837'] },
      ],
    };
    const qeIdentity: Record<string, any> = {
      id: 'TD_QE', version: 2, issueDate: iso(now), nextUpdate: iso(nextUpdate), tcbEvaluationDataNumber: 17, miscselect: '00000000', miscselectMask: 'FFFFFFFF',
      attributes: '11000000000000000000000000000000', attributesMask: 'FBFFFFFFFFFFFFFF0000000000000000', mrsigner: SIM_QE_MRSIGNER.toUpperCase(), isvprodid: 2,
      tcbLevels: [
        { tcb: { isvsvn: 4 }, tcbDate: '2024-03-13T00:00:00Z', tcbStatus: 'UpToDate' },
        { tcb: { isvsvn: 2 }, tcbDate: '2023-02-15T00:00:00Z', tcbStatus: 'OutOfDate', advisoryIDs: ['INTEL-SA-00615'] },
      ],
    };
    ov.tcbInfo?.(tcbInfo);
    ov.qeIdentity?.(qeIdentity);
    const tcbText = JSON.stringify(tcbInfo);
    const qeText = JSON.stringify(qeIdentity);
    const crlDates = { thisUpdate: ov.crlThisUpdate ?? now, nextUpdate: ov.crlNextUpdate ?? nextUpdate };
    const revoked = (serials: readonly number[] = []) => serials.map((serial) => ({ serial, date: now }));
    const [tcbSig, qeSig, rootCaCrl, pckCrl] = await Promise.all([
      tcbSign(tcbText), tcbSign(qeText),
      writeCrl({ signatureAlgorithm: ALG.ecdsaSha256, issuer: rootName, ...crlDates, revoked: revoked(ov.revokeByRoot) }, rootSign),
      writeCrl({ signatureAlgorithm: ALG.ecdsaSha256, issuer: caName, ...crlDates, revoked: revoked(ov.revokeByPckCa) }, caSign),
    ]);
    return {
      tcbInfo: { body: tcbText, signature: tcbSig, issuerChain: [tcbSigningDer, rootDer] },
      qeIdentity: { body: qeText, signature: qeSig, issuerChain: [tcbSigningDer, rootDer] },
      rootCaCrl, pckCrl,
    };
  };

  let served: Promise<CollateralAsServed> | undefined;
  const evidence = async (reportData: Uint8Array, fields: Omit<SimQuoteFields, 'reportData'> = {}) => {
    served ??= collateral().then(servedFromCollateral);
    return { evidence: await quote({ ...fields, reportData }), certs: [], collateral: await served };
  };
  return { rootDer, pckCaDer, tcbSigningDer, pck, now, defaultBody, roots: () => [root], quote, collateral, issuePck, signCollateral: tcbSign, evidence };
}
