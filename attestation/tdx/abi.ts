/**
 * Intel TDX DCAP quote, versions 4 and 5: bytes to a readonly structure, no trust decision.
 *
 * Layouts per Intel "TDX DCAP Quoting Library API" (Quote Format, Appendix A): header (A.3.1, 48 bytes), TD quote
 * body (A.3.2, TDX 1.0 = 584 bytes; TDX 1.5 = 648 bytes adding TEE_TCB_SVN_2 and MRSERVICETD), v5 body descriptor
 * (type u16 + size u32), quote signature data (A.3.8: signature, attestation key, certification data), certification
 * data type 6 "QE report certification data" (A.3.11: QE REPORT 384, QE report signature 64, QE authentication
 * data, nested certification data type 5 = PEM PCK certificate chain), and the SGX REPORT body of the QE (SGX SDM
 * Vol. 3 §38.15, "REPORT"). All integers little-endian.
 *
 * Strict: every length field is checked against the buffer and must account for the bytes exactly. The only bytes
 * allowed after the quote are zero padding (kernels that return a fixed-size buffer), reported as `padding`.
 */
import { isZero } from '../bytes.ts';
import { protocolError } from '../errors.ts';

export const QUOTE_HEADER_SIZE = 48;
export const TD10_BODY_SIZE = 584;
export const TD15_BODY_SIZE = 648;
export const SGX_REPORT_SIZE = 384;
/** Header `att_key_type`: ECDSA-256-with-P-256 curve. */
export const ATTESTATION_KEY_TYPE_ECDSA_P256 = 2;
export const TEE_TYPE_TDX = 0x81;
/** v5 body descriptor types (A.4): 2 = TD report 1.0, 3 = TD report 1.5. */
export const BODY_TYPE_TD10 = 2;
export const BODY_TYPE_TD15 = 3;
export const CERT_DATA_PCK_CHAIN = 5;
export const CERT_DATA_QE_REPORT = 6;

export interface QuoteHeader {
  readonly version: 4 | 5;
  readonly attestationKeyType: number;
  readonly teeType: number;
  readonly reserved: Uint8Array;
  readonly qeVendorId: Uint8Array;
  readonly userData: Uint8Array;
}

/** TD quote body (TDREPORT fields the quote carries). Field names as in the Intel specification. */
export interface TdQuoteBody {
  /** 2 (TDX 1.0, 584 bytes) or 3 (TDX 1.5, 648 bytes). A v4 quote always carries type 2. */
  readonly bodyType: 2 | 3;
  readonly teeTcbSvn: Uint8Array;
  readonly mrSeam: Uint8Array;
  readonly mrSignerSeam: Uint8Array;
  readonly seamAttributes: Uint8Array;
  readonly tdAttributes: Uint8Array;
  readonly xfam: Uint8Array;
  readonly mrTd: Uint8Array;
  readonly mrConfigId: Uint8Array;
  readonly mrOwner: Uint8Array;
  readonly mrOwnerConfig: Uint8Array;
  readonly rtmr: readonly [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  readonly reportData: Uint8Array;
  /** TDX 1.5 only. */
  readonly teeTcbSvn2: Uint8Array | undefined;
  /** TDX 1.5 only. */
  readonly mrServiceTd: Uint8Array | undefined;
}

/** SGX REPORT body of the Quoting Enclave. */
export interface SgxReportBody {
  readonly raw: Uint8Array;
  readonly cpuSvn: Uint8Array;
  readonly miscSelect: number;
  readonly isvExtProdId: Uint8Array;
  readonly attributes: Uint8Array;
  readonly mrEnclave: Uint8Array;
  readonly mrSigner: Uint8Array;
  readonly configId: Uint8Array;
  readonly isvProdId: number;
  readonly isvSvn: number;
  readonly configSvn: number;
  readonly isvFamilyId: Uint8Array;
  readonly reportData: Uint8Array;
}

export interface QeReportCertificationData {
  readonly qeReport: SgxReportBody;
  readonly qeReportSignature: Uint8Array;
  readonly qeAuthData: Uint8Array;
  /** Type-5 certification data: the PCK chain in PEM (leaf, intermediate, root), as bytes. */
  readonly pckCertChain: Uint8Array;
}

export interface TdxQuote {
  readonly header: QuoteHeader;
  readonly body: TdQuoteBody;
  /** The bytes the attestation key signs: header ‖ (v5: body descriptor ‖) body. */
  readonly signedData: Uint8Array;
  /** ECDSA P-256 signature, raw r‖s. */
  readonly signature: Uint8Array;
  /** ECDSA P-256 attestation public key, raw x‖y. */
  readonly attestationKey: Uint8Array;
  readonly certification: QeReportCertificationData;
  /** Length of the zero padding after the quote (0 for an exact buffer). */
  readonly padding: number;
}

const bad = (code: string, msg: string) => protocolError(code, `TDX quote: ${msg}`);

/** Bounds-checked little-endian cursor: every read is checked against the end of its buffer. */
class Cursor {
  readonly #b: Uint8Array;
  readonly #dv: DataView;
  pos: number;
  readonly end: number;
  constructor(b: Uint8Array, start = 0, end = b.length) {
    this.#b = b;
    this.#dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.pos = start;
    this.end = end;
  }
  #need(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.end) throw bad('TDX_QUOTE_TRUNCATED', `${what} needs ${n} bytes at offset ${this.pos}, only ${this.end - this.pos} left`);
  }
  bytes(n: number, what: string): Uint8Array {
    this.#need(n, what);
    const out = this.#b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  u16(what: string): number {
    this.#need(2, what);
    const v = this.#dv.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.#need(4, what);
    const v = this.#dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
}

function parseQuoteHeader(c: Cursor): QuoteHeader {
  const version = c.u16('header.version');
  if (version !== 4 && version !== 5) throw bad('TDX_QUOTE_VERSION', `version ${version} is not supported (4 or 5)`);
  const attestationKeyType = c.u16('header.att_key_type');
  if (attestationKeyType !== ATTESTATION_KEY_TYPE_ECDSA_P256) throw bad('TDX_QUOTE_KEY_TYPE', `attestation key type ${attestationKeyType} is not ECDSA-256-with-P-256 (2)`);
  const teeType = c.u32('header.tee_type');
  if (teeType !== TEE_TYPE_TDX) throw bad('TDX_QUOTE_TEE_TYPE', `TEE type 0x${teeType.toString(16)} is not TDX (0x81)`);
  const reserved = c.bytes(4, 'header.reserved');
  if (!isZero(reserved)) throw bad('TDX_QUOTE_RESERVED', 'header reserved bytes 8..11 are not zero');
  const qeVendorId = c.bytes(16, 'header.qe_vendor_id');
  const userData = c.bytes(20, 'header.user_data');
  return { version, attestationKeyType, teeType, reserved, qeVendorId, userData };
}

function parseBody(c: Cursor, bodyType: 2 | 3): TdQuoteBody {
  const f = (n: number, what: string) => c.bytes(n, `body.${what}`);
  const teeTcbSvn = f(16, 'tee_tcb_svn');
  const mrSeam = f(48, 'mr_seam');
  const mrSignerSeam = f(48, 'mr_signer_seam');
  const seamAttributes = f(8, 'seam_attributes');
  const tdAttributes = f(8, 'td_attributes');
  const xfam = f(8, 'xfam');
  const mrTd = f(48, 'mr_td');
  const mrConfigId = f(48, 'mr_config_id');
  const mrOwner = f(48, 'mr_owner');
  const mrOwnerConfig = f(48, 'mr_owner_config');
  const rtmr = [f(48, 'rtmr0'), f(48, 'rtmr1'), f(48, 'rtmr2'), f(48, 'rtmr3')] as const;
  const reportData = f(64, 'report_data');
  const teeTcbSvn2 = bodyType === BODY_TYPE_TD15 ? f(16, 'tee_tcb_svn2') : undefined;
  const mrServiceTd = bodyType === BODY_TYPE_TD15 ? f(48, 'mr_servicetd') : undefined;
  return {
    bodyType, teeTcbSvn, mrSeam, mrSignerSeam, seamAttributes, tdAttributes, xfam, mrTd, mrConfigId, mrOwner, mrOwnerConfig,
    rtmr, reportData, teeTcbSvn2, mrServiceTd,
  };
}

/** SGX REPORT body (384 bytes); the reserved ranges must be zero. */
export function parseSgxReportBody(raw: Uint8Array): SgxReportBody {
  if (raw.length !== SGX_REPORT_SIZE) throw bad('TDX_QE_REPORT_INVALID', `QE report is ${raw.length} bytes, expected ${SGX_REPORT_SIZE}`);
  const c = new Cursor(raw);
  const cpuSvn = c.bytes(16, 'qe.cpu_svn');
  const miscSelect = c.u32('qe.misc_select');
  const reserved1 = c.bytes(12, 'qe.reserved1');
  const isvExtProdId = c.bytes(16, 'qe.isv_ext_prod_id');
  const attributes = c.bytes(16, 'qe.attributes');
  const mrEnclave = c.bytes(32, 'qe.mr_enclave');
  const reserved2 = c.bytes(32, 'qe.reserved2');
  const mrSigner = c.bytes(32, 'qe.mr_signer');
  const reserved3 = c.bytes(32, 'qe.reserved3');
  const configId = c.bytes(64, 'qe.config_id');
  const isvProdId = c.u16('qe.isv_prod_id');
  const isvSvn = c.u16('qe.isv_svn');
  const configSvn = c.u16('qe.config_svn');
  const reserved4 = c.bytes(42, 'qe.reserved4');
  const isvFamilyId = c.bytes(16, 'qe.isv_family_id');
  const reportData = c.bytes(64, 'qe.report_data');
  if (!isZero(reserved1) || !isZero(reserved2) || !isZero(reserved3) || !isZero(reserved4))
    throw bad('TDX_QE_REPORT_INVALID', 'QE report has non-zero reserved bytes');
  return { raw, cpuSvn, miscSelect, isvExtProdId, attributes, mrEnclave, mrSigner, configId, isvProdId, isvSvn, configSvn, isvFamilyId, reportData };
}

function parseCertificationData(c: Cursor): QeReportCertificationData {
  const type = c.u16('cert_data.type');
  if (type !== CERT_DATA_QE_REPORT) throw bad('TDX_QUOTE_CERT_TYPE', `certification data type ${type} is not 6 (QE report certification data)`);
  const size = c.u32('cert_data.size');
  const end = c.pos + size;
  if (end !== c.end) throw bad('TDX_QUOTE_LENGTH', `certification data size ${size} does not fill the signature data (${c.end - c.pos} bytes left)`);
  const qeReport = parseSgxReportBody(c.bytes(SGX_REPORT_SIZE, 'qe_report'));
  const qeReportSignature = c.bytes(64, 'qe_report_signature');
  const authSize = c.u16('qe_auth_data.size');
  const qeAuthData = c.bytes(authSize, 'qe_auth_data');
  const innerType = c.u16('pck_cert_data.type');
  if (innerType !== CERT_DATA_PCK_CHAIN) throw bad('TDX_QUOTE_CERT_TYPE', `nested certification data type ${innerType} is not 5 (PCK certificate chain)`);
  const innerSize = c.u32('pck_cert_data.size');
  const pckCertChain = c.bytes(innerSize, 'pck_cert_data');
  if (c.pos !== end) throw bad('TDX_QUOTE_LENGTH', `${end - c.pos} unaccounted bytes in the certification data`);
  return { qeReport, qeReportSignature, qeAuthData, pckCertChain };
}

/** Parses a TDX quote v4 or v5. Throws a `protocol` GmError with a TDX_QUOTE_* / TDX_QE_REPORT_* code. */
export function parseQuote(bytes: Uint8Array): TdxQuote {
  const c = new Cursor(bytes);
  const header = parseQuoteHeader(c);
  let bodyType: 2 | 3 = BODY_TYPE_TD10;
  if (header.version === 5) {
    const t = c.u16('body_descriptor.type');
    const size = c.u32('body_descriptor.size');
    if (t === BODY_TYPE_TD10 && size === TD10_BODY_SIZE) bodyType = BODY_TYPE_TD10;
    else if (t === BODY_TYPE_TD15 && size === TD15_BODY_SIZE) bodyType = BODY_TYPE_TD15;
    else throw bad('TDX_QUOTE_BODY_TYPE', `v5 body type ${t} with size ${size} is not TD 1.0 (2, 584) or TD 1.5 (3, 648)`);
  }
  const body = parseBody(c, bodyType);
  const signedData = bytes.subarray(0, c.pos);
  const sigLen = c.u32('signature_data.length');
  const sigEnd = c.pos + sigLen;
  if (sigEnd > bytes.length) throw bad('TDX_QUOTE_TRUNCATED', `signature data length ${sigLen} runs past the end (${bytes.length - c.pos} bytes left)`);
  const trailing = bytes.subarray(sigEnd);
  if (!isZero(trailing)) throw bad('TDX_QUOTE_TRAILING_BYTES', `${trailing.length} non-zero bytes after the quote's signature data`);
  const s = new Cursor(bytes, c.pos, sigEnd);
  const signature = s.bytes(64, 'signature');
  const attestationKey = s.bytes(64, 'attestation_key');
  const certification = parseCertificationData(s);
  return { header, body, signedData, signature, attestationKey, certification, padding: trailing.length };
}
