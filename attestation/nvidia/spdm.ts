/**
 * NVIDIA GPU attestation report parser: an SPDM GET_MEASUREMENTS request ‖ MEASUREMENTS response transcript
 * (DMTF DSP0274 SPDM 1.1, §10.11 "GET_MEASUREMENTS request and MEASUREMENTS response"; measurement blocks in the
 * DMTF measurement specification format, §10.11.1.1; libspdm's "standard all-measurements report" for SPDM 1.0/1.1
 * is exactly these two messages). NVIDIA fills the response's OpaqueData with type-length-value
 * fields (ids as nvtrust `local_gpu_verifier` names them, `OPAQUE_FIELD_ID_*`), and the 96-byte ECDSA P-384
 * signature (raw r‖s) follows the opaque data.
 *
 * The opaque data comes in two layouts, told apart by its first six bytes (NVIDIA "Opaque Data Format" specification,
 * docs.nvidia.com/attestation/specs/latest/opaque-data-format.html): the legacy one is bare entries of type u16, size
 * u16, value; the versioned one (drivers from CUDA 13.5) starts with a 12-byte header, magic "NVDAOD", profile u16
 * (must be 0), version major, minor, patch and a padding byte, and each entry carries a value type u16 between its
 * type and its size.
 *
 * Layer 1 of 3 (abi): bytes to a readonly structure. Every part is located from the parsed lengths; a length that
 * runs past the buffer, a duplicate block index or opaque field are rejected. After the signature only zero bytes may
 * follow (a driver's fixed-size buffer, as the TDX parser accepts): they are counted in `padding` and never signed.
 * No trust decision.
 */
import { hex, isZero } from '../bytes.ts';
import { protocolError } from '../errors.ts';

/**
 * SPDM versions this parser and the signature rule in verify.ts apply to. Only 1.1: from 1.2 on the signed
 * transcript also holds the VCA messages and the signature covers a prefixed hash, which a bare request ‖ response
 * report cannot reproduce.
 */
export const SPDM_VERSIONS: readonly number[] = [0x11];
export const GET_MEASUREMENTS = 0xe0;
export const MEASUREMENTS = 0x60;
export const NONCE_SIZE = 32;
/** SPDMVersion, code, Param1, Param2, Nonce, SlotIDParam (signature requested). */
export const REQUEST_SIZE = 4 + NONCE_SIZE + 1;
/** ECDSA P-384 r‖s (TPM_ALG_ECDSA_ECC_NIST_P384 in the SPDM BaseAsymAlgo negotiated by NVIDIA GPUs). */
export const SIGNATURE_SIZE = 96;
/** MeasurementSpecification bit 0: DMTF. */
export const DMTF_MEASUREMENT_SPEC = 0x01;

/** NVIDIA opaque field ids (nvtrust `OpaqueData` / `GpuOpaqueDataType`). */
export const OPAQUE_FIELD_ID = {
  CERT_ISSUER_NAME: 1,
  CERT_AUTHORITY_KEY_IDENTIFIER: 2,
  DRIVER_VERSION: 3,
  GPU_INFO: 4,
  SKU: 5,
  VBIOS_VERSION: 6,
  MANUFACTURER_ID: 7,
  TAMPER_DETECTION: 8,
  SMC: 9,
  VPR: 10,
  NVDEC0_STATUS: 11,
  MSRSCNT: 12,
  CPRINFO: 13,
  BOARD_ID: 14,
  CHIP_SKU: 15,
  CHIP_SKU_MOD: 16,
  PROJECT: 17,
  PROJECT_SKU: 18,
  PROJECT_SKU_MOD: 19,
  FWID: 20,
  PROTECTED_PCIE_STATUS: 21,
  SWITCH_PDI: 22,
  FLOORSWEPT_PORTS: 23,
  POSITION_ID: 24,
  LOCK_SWITCH_STATUS: 25,
  GPU_LINK_CONN: 32,
  SYS_ENABLE_STATUS: 33,
  OPAQUE_DATA_VERSION: 34,
  CHIP_INFO: 35,
  FEATURE_FLAG: 36,
} as const;
export type OpaqueFieldName = keyof typeof OPAQUE_FIELD_ID;
const FIELD_NAME = new Map<number, OpaqueFieldName>(Object.entries(OPAQUE_FIELD_ID).map(([k, v]) => [v, k as OpaqueFieldName]));

/** NVDEC0 status byte values (nvtrust `NVDEC_STATUS`). */
export const NVDEC_STATUS = { ENABLED: 0xaa, DISABLED: 0x55 } as const;
/** FWID digest size: SHA-384. */
export const FWID_SIZE = 48;

export interface GetMeasurementsRequest {
  readonly raw: Uint8Array;
  readonly spdmVersion: number;
  /** Bit 0: signature requested. */
  readonly param1: number;
  /** Measurement operation: 0xff = all measurements. */
  readonly param2: number;
  readonly nonce: Uint8Array;
  readonly slotId: number;
}

/** A DMTF measurement block (DSP0274 Table 47 + Table 48). */
export interface MeasurementBlock {
  readonly index: number;
  readonly measurementSpecification: number;
  /** DMTFSpecMeasurementValueType bits [6:0] (0 immutable ROM, 1 mutable firmware, 2 hardware config, 3 firmware config, ...). */
  readonly dmtfType: number;
  /** DMTFSpecMeasurementValueType bit 7: 1 raw bit stream, 0 digest. */
  readonly representation: 'digest' | 'raw';
  readonly value: Uint8Array;
}

export interface OpaqueField {
  readonly id: number;
  /** The versioned format's value type of the entry; undefined in the legacy format. */
  readonly valueType: number | undefined;
  /** nvtrust's name without the `OPAQUE_FIELD_ID_` prefix; `UNKNOWN_<id>` for ids this parser does not know. */
  readonly name: OpaqueFieldName | `UNKNOWN_${number}`;
  readonly data: Uint8Array;
}

/** The NVIDIA opaque fields, decoded where their meaning is fixed; `fields` keeps every field's raw bytes. */
export interface NvidiaOpaqueData {
  /** Which layout the opaque data used: legacy TLV, or the versioned NVDAOD header with its version. */
  readonly format: { readonly versioned: false } | { readonly versioned: true; readonly major: number; readonly minor: number; readonly patch: number };
  readonly fields: readonly OpaqueField[];
  readonly driverVersion: string | undefined;
  /** As NVIDIA prints it, e.g. `96.00.9f.00.01` (GPU); NVSwitches report a version string. */
  readonly vbiosVersion: string | undefined;
  readonly fwid: Uint8Array | undefined;
  readonly nvdec0Status: 'enabled' | 'disabled' | undefined;
  /** OPAQUE_FIELD_ID_MSRSCNT: one count per measurement block, in block order. */
  readonly measurementCount: readonly number[] | undefined;
  /** OPAQUE_FIELD_ID_FEATURE_FLAG (Blackwell): 0 SPT, 1 MPT, 2 PPCIE. */
  readonly featureFlag: 'SPT' | 'MPT' | 'PPCIE' | `unknown(${number})` | undefined;
  readonly chipSku: string | undefined;
  readonly project: string | undefined;
  /** OPAQUE_FIELD_ID_PROJECT_SKU: with PROJECT and CHIP_SKU it names the board's VBIOS RIM. */
  readonly projectSku: string | undefined;
  readonly chipInfo: string | undefined;
}

export interface MeasurementsResponse {
  readonly raw: Uint8Array;
  readonly spdmVersion: number;
  readonly param1: number;
  readonly param2: number;
  readonly numberOfBlocks: number;
  readonly measurementRecordLength: number;
  readonly blocks: readonly MeasurementBlock[];
  readonly nonce: Uint8Array;
  readonly opaqueDataLength: number;
  readonly opaqueData: Uint8Array;
  readonly opaque: NvidiaOpaqueData;
  readonly signature: Uint8Array;
}

export interface GpuAttestationReport {
  readonly raw: Uint8Array;
  readonly request: GetMeasurementsRequest;
  readonly response: MeasurementsResponse;
  /** request ‖ response without the signature: the bytes the device key signs (DSP0274 §10.11.1, L1/L2), located from the parsed lengths. */
  readonly signedBytes: Uint8Array;
  /** Zero bytes after the signature (not part of the report). */
  readonly padding: number;
}

const bad = (code: string, msg: string) => protocolError(code, `GPU attestation report: ${msg}`);
const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const u24 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16);

/** Takes `n` bytes at `o` or throws NVIDIA_SPDM_TRUNCATED naming `what`: subarray would clamp silently. */
function take(b: Uint8Array, o: number, n: number, what: string): Uint8Array {
  if (o + n > b.length) throw bad('NVIDIA_SPDM_TRUNCATED', `${what} needs ${n} bytes at offset ${o}, only ${Math.max(0, b.length - o)} remain`);
  return b.subarray(o, o + n);
}

export function parseGetMeasurementsRequest(b: Uint8Array): GetMeasurementsRequest {
  const raw = take(b, 0, REQUEST_SIZE, 'GET_MEASUREMENTS request');
  const spdmVersion = raw[0]!;
  if (!SPDM_VERSIONS.includes(spdmVersion)) throw bad('NVIDIA_SPDM_VERSION', `request SPDM version 0x${spdmVersion.toString(16)} is not supported`);
  if (raw[1] !== GET_MEASUREMENTS) throw bad('NVIDIA_SPDM_INVALID', `request code 0x${raw[1]!.toString(16)} is not GET_MEASUREMENTS`);
  const param1 = raw[2]!;
  // Without the signature-requested bit there is neither nonce nor signature and this layout does not apply.
  if ((param1 & 1) !== 1) throw bad('NVIDIA_SPDM_INVALID', 'request does not ask for a signed response (Param1 bit 0)');
  return { raw, spdmVersion, param1, param2: raw[3]!, nonce: raw.subarray(4, 4 + NONCE_SIZE), slotId: raw[4 + NONCE_SIZE]! };
}

function parseBlocks(record: Uint8Array, count: number): MeasurementBlock[] {
  const blocks: MeasurementBlock[] = [];
  const seen = new Set<number>();
  let o = 0;
  for (let i = 0; i < count; i++) {
    const hdr = take(record, o, 4, `measurement block ${i + 1} header`);
    const index = hdr[0]!;
    const spec = hdr[1]!;
    const size = u16(hdr, 2);
    if (spec !== DMTF_MEASUREMENT_SPEC) throw bad('NVIDIA_SPDM_INVALID', `measurement block ${index} uses specification 0x${spec.toString(16)}, only DMTF is defined`);
    if (seen.has(index)) throw bad('NVIDIA_SPDM_INVALID', `duplicate measurement block index ${index}`);
    seen.add(index);
    const m = take(record, o + 4, size, `measurement block ${index}`);
    const dm = take(m, 0, 3, `DMTF measurement header of block ${index}`);
    const valueSize = u16(dm, 1);
    if (3 + valueSize !== size) throw bad('NVIDIA_SPDM_INVALID', `block ${index}: MeasurementSize ${size} != 3 + DMTFSpecMeasurementValueSize ${valueSize}`);
    const t = dm[0]!;
    blocks.push({ index, measurementSpecification: spec, dmtfType: t & 0x7f, representation: t & 0x80 ? 'raw' : 'digest', value: m.subarray(3) });
    o += 4 + size;
  }
  if (o !== record.length) throw bad('NVIDIA_SPDM_INVALID', `measurement record has ${record.length - o} bytes after block ${count}`);
  return blocks;
}

const latin = (b: Uint8Array) => String.fromCharCode(...b);
/** Version strings are NUL-padded ASCII. */
function text(f: OpaqueField): string {
  let end = f.data.length;
  while (end > 0 && f.data[end - 1] === 0) end--;
  const s = latin(f.data.subarray(0, end));
  if (!/^[\x20-\x7e]*$/.test(s)) throw bad('NVIDIA_OPAQUE_INVALID', `opaque field ${f.name} is not printable ASCII`);
  return s;
}

/** VBIOS version bytes → NVIDIA's dotted form: first half reversed, then the first byte of the second half. */
export function formatVbiosVersion(b: Uint8Array): string {
  if (b.length !== 8) throw bad('NVIDIA_OPAQUE_INVALID', `VBIOS version is ${b.length} bytes, expected 8`);
  const h = b.length / 2;
  return [...b.subarray(0, h)].reverse().concat(b[h]!).map((x) => x.toString(16).padStart(2, '0')).join('.');
}

/** "NVDAOD": the versioned opaque data magic. */
export const OPAQUE_MAGIC = Uint8Array.of(0x4e, 0x56, 0x44, 0x41, 0x4f, 0x44);
export const OPAQUE_HEADER_SIZE = 12;
/** Versioned-format majors this parser reads: 2, the version the specification and the drivers emit. */
export const OPAQUE_FORMAT_MAJORS: readonly number[] = [2];

function versionedHeader(b: Uint8Array): NvidiaOpaqueData['format'] | undefined {
  if (b.length < OPAQUE_MAGIC.length || !OPAQUE_MAGIC.every((x, i) => b[i] === x)) return undefined;
  const h = take(b, 0, OPAQUE_HEADER_SIZE, 'NVDAOD opaque data header');
  const profile = u16(h, 6);
  if (profile !== 0) throw bad('NVIDIA_OPAQUE_INVALID', `NVDAOD profile ${profile} is not 0`);
  const [major, minor, patch, pad] = [h[8]!, h[9]!, h[10]!, h[11]!];
  if (pad !== 0) throw bad('NVIDIA_OPAQUE_INVALID', `NVDAOD version padding byte is 0x${pad.toString(16)}, not 0`);
  if (!OPAQUE_FORMAT_MAJORS.includes(major)) throw bad('NVIDIA_OPAQUE_VERSION', `NVDAOD opaque data version ${major}.${minor}.${patch} is not supported (majors ${OPAQUE_FORMAT_MAJORS.join(', ')})`);
  return { versioned: true, major, minor, patch };
}

export function parseOpaqueData(b: Uint8Array): NvidiaOpaqueData {
  const fields: OpaqueField[] = [];
  const byId = new Map<number, OpaqueField>();
  const format = versionedHeader(b) ?? { versioned: false };
  // Entry header: type, [value type,] size; all u16 little-endian.
  const hdrSize = format.versioned ? 6 : 4;
  let o = format.versioned ? OPAQUE_HEADER_SIZE : 0;
  while (o < b.length) {
    const hdr = take(b, o, hdrSize, 'opaque field header');
    const id = u16(hdr, 0);
    const valueType = format.versioned ? u16(hdr, 2) : undefined;
    const size = u16(hdr, hdrSize - 2);
    const data = take(b, o + hdrSize, size, `opaque field ${id}`);
    const name = FIELD_NAME.get(id) ?? (`UNKNOWN_${id}` as const);
    if (byId.has(id)) throw bad('NVIDIA_OPAQUE_INVALID', `duplicate opaque field ${name}`);
    const f: OpaqueField = { id, valueType, name, data };
    fields.push(f);
    byId.set(id, f);
    o += hdrSize + size;
  }
  const get = (id: number) => byId.get(id);
  const fwidF = get(OPAQUE_FIELD_ID.FWID);
  if (fwidF && fwidF.data.length !== FWID_SIZE) throw bad('NVIDIA_OPAQUE_INVALID', `FWID is ${fwidF.data.length} bytes, expected ${FWID_SIZE}`);
  const nv = get(OPAQUE_FIELD_ID.NVDEC0_STATUS);
  let nvdec0Status: NvidiaOpaqueData['nvdec0Status'];
  if (nv) {
    if (nv.data.length !== 1 || (nv.data[0] !== NVDEC_STATUS.ENABLED && nv.data[0] !== NVDEC_STATUS.DISABLED))
      throw bad('NVIDIA_OPAQUE_INVALID', `NVDEC0 status ${hex(nv.data)} is neither enabled (aa) nor disabled (55)`);
    nvdec0Status = nv.data[0] === NVDEC_STATUS.ENABLED ? 'enabled' : 'disabled';
  }
  const mc = get(OPAQUE_FIELD_ID.MSRSCNT);
  let measurementCount: number[] | undefined;
  if (mc) {
    if (mc.data.length % 4 !== 0) throw bad('NVIDIA_OPAQUE_INVALID', 'measurement count field is not a multiple of 4 bytes');
    const dv = new DataView(mc.data.buffer, mc.data.byteOffset, mc.data.byteLength);
    measurementCount = Array.from({ length: mc.data.length / 4 }, (_, i) => dv.getUint32(4 * i, true));
  }
  const ff = get(OPAQUE_FIELD_ID.FEATURE_FLAG);
  let featureFlag: NvidiaOpaqueData['featureFlag'];
  if (ff) {
    if (ff.data.length === 0 || ff.data.length > 8) throw bad('NVIDIA_OPAQUE_INVALID', 'feature flag is not a 1..8 byte integer');
    let v = 0;
    for (let i = ff.data.length - 1; i >= 0; i--) v = v * 256 + ff.data[i]!;
    featureFlag = v === 0 ? 'SPT' : v === 1 ? 'MPT' : v === 2 ? 'PPCIE' : `unknown(${v})`;
  }
  const str = (id: number) => {
    const f = get(id);
    return f ? text(f) : undefined;
  };
  // GPUs carry 8 version bytes; NVSwitches (LS10) an ASCII string (nvtrust's switch `format_vbios_version`).
  const vb = get(OPAQUE_FIELD_ID.VBIOS_VERSION);
  const vbiosVersion = vb ? (vb.data.length === 8 ? formatVbiosVersion(vb.data) : text(vb)) : undefined;
  return {
    format,
    fields,
    driverVersion: str(OPAQUE_FIELD_ID.DRIVER_VERSION),
    vbiosVersion,
    fwid: fwidF?.data,
    nvdec0Status,
    measurementCount,
    featureFlag,
    chipSku: str(OPAQUE_FIELD_ID.CHIP_SKU),
    project: str(OPAQUE_FIELD_ID.PROJECT),
    projectSku: str(OPAQUE_FIELD_ID.PROJECT_SKU),
    chipInfo: str(OPAQUE_FIELD_ID.CHIP_INFO),
  };
}

/** Parses request ‖ response ‖ signature; exactly these bytes, then only zero padding. */
export function parseGpuAttestationReport(b: Uint8Array): GpuAttestationReport {
  const request = parseGetMeasurementsRequest(b);
  const r = b.subarray(REQUEST_SIZE);
  const hdr = take(r, 0, 8, 'MEASUREMENTS response header');
  const spdmVersion = hdr[0]!;
  if (spdmVersion !== request.spdmVersion) throw bad('NVIDIA_SPDM_VERSION', `response SPDM version 0x${spdmVersion.toString(16)} differs from the request's 0x${request.spdmVersion.toString(16)}`);
  if (hdr[1] !== MEASUREMENTS) throw bad('NVIDIA_SPDM_INVALID', `response code 0x${hdr[1]!.toString(16)} is not MEASUREMENTS`);
  // Param1 is the total count of measurement indices only when the request's operation was 0; otherwise reserved.
  if (request.param2 !== 0 && hdr[2] !== 0) throw bad('NVIDIA_SPDM_INVALID', `response Param1 is reserved for this request and must be 0 (got 0x${hdr[2]!.toString(16)})`);
  const numberOfBlocks = hdr[4]!;
  const measurementRecordLength = u24(hdr, 5);
  let o = 8;
  const record = take(r, o, measurementRecordLength, 'measurement record');
  const blocks = parseBlocks(record, numberOfBlocks);
  o += measurementRecordLength;
  const nonce = take(r, o, NONCE_SIZE, 'response nonce');
  o += NONCE_SIZE;
  const opaqueDataLength = u16(take(r, o, 2, 'OpaqueLength'), 0);
  o += 2;
  const opaqueData = take(r, o, opaqueDataLength, 'opaque data');
  o += opaqueDataLength;
  const signatureAt = o;
  const signature = take(r, o, SIGNATURE_SIZE, 'signature');
  o += SIGNATURE_SIZE;
  const trailing = r.subarray(o);
  if (!isZero(trailing)) throw bad('NVIDIA_SPDM_TRAILING_BYTES', `${trailing.length} bytes after the signature, not all zero`);
  const opaque = parseOpaqueData(opaqueData);
  const respRaw = r.subarray(0, o);
  return {
    raw: b.subarray(0, REQUEST_SIZE + o),
    request,
    response: {
      raw: respRaw, spdmVersion, param1: hdr[2]!, param2: hdr[3]!, numberOfBlocks, measurementRecordLength, blocks,
      nonce, opaqueDataLength, opaqueData, opaque, signature,
    },
    signedBytes: b.subarray(0, REQUEST_SIZE + signatureAt),
    padding: trailing.length,
  };
}

/** The opaque field with `name`, if present. */
export function opaqueField(report: GpuAttestationReport, name: OpaqueFieldName): OpaqueField | undefined {
  return report.response.opaque.fields.find((f) => f.name === name);
}
