/**
 * Azure confidential VMs: the HCL report, the container the paravisor (HCL) writes to the vTPM NV index 0x01400001.
 * Layout (little-endian; Microsoft azure-cvm-tooling `az-cvm-vtpm/src/hcl`, the IGVM attestation request):
 *
 *   0x000  header: signature "HCLA", version u32, report_size u32, request_type u32, status u32, reserved u32[3]
 *   0x020  hardware report, 1184 bytes: the SEV-SNP ATTESTATION_REPORT (SNP ABI Table 23); for TDX a TDREPORT
 *   0x4C0  IGVM request data: data_size u32, version u32, report_type u32 (2 SNP, 4 TDX),
 *          report_data_hash_type u32 (1 SHA-256, 2 SHA-384, 3 SHA-512), variable_data_size u32
 *   0x4D4  variable data: the runtime data (a JSON document holding the vTPM's attestation key and VM configuration)
 *
 * data_size = 20 + variable_data_size and report_size = 0x20 + 1184 + data_size; the NV index is larger than the
 * report, and everything after report_size must be zero. The SNP report's REPORT_DATA holds the hash of the runtime
 * data followed by zero bytes: that binding is checked by the verifier (index.ts), not here.
 *
 * abi layer: bytes to a readonly structure, exact lengths, reserved and padding bytes zero. No trust decision.
 */
import { isZero } from '../bytes.ts';
import { configError, protocolError } from '../errors.ts';
import { REPORT_SIZE } from './abi.ts';

export const HCL_HEADER_SIZE = 0x20;
export const HCL_REQUEST_DATA_OFFSET = HCL_HEADER_SIZE + REPORT_SIZE;
const REQUEST_DATA_HEADER = 20;
/** IGVM report_type values. */
export const HCL_REPORT_TYPE = { SNP: 2, TDX: 4 } as const;
export type HclHash = 'SHA-256' | 'SHA-384' | 'SHA-512';
const HASH_TYPES: Record<number, HclHash> = { 1: 'SHA-256', 2: 'SHA-384', 3: 'SHA-512' };
export const HCL_HASH_SIZE: Record<HclHash, number> = { 'SHA-256': 32, 'SHA-384': 48, 'SHA-512': 64 };

export interface HclReport {
  readonly version: number;
  readonly requestType: number;
  /** The SEV-SNP ATTESTATION_REPORT (1184 bytes), still to be parsed and verified. */
  readonly snpReport: Uint8Array;
  readonly requestDataVersion: number;
  readonly hashType: HclHash;
  /** The bytes whose hash REPORT_DATA carries. */
  readonly runtimeData: Uint8Array;
  /** Zero bytes after report_size. */
  readonly padding: number;
}

const bad = (msg: string) => protocolError('SNP_HCL_INVALID', `Azure HCL report: ${msg}`);
const u32 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(o, true);

export function parseHclReport(b: Uint8Array): HclReport {
  if (b.length < HCL_REQUEST_DATA_OFFSET + REQUEST_DATA_HEADER) throw bad(`${b.length} bytes, shorter than header, report and request data (${HCL_REQUEST_DATA_OFFSET + REQUEST_DATA_HEADER})`);
  if (b[0] !== 0x48 || b[1] !== 0x43 || b[2] !== 0x4c || b[3] !== 0x41) throw bad('signature is not "HCLA"');
  const version = u32(b, 4);
  const reportSize = u32(b, 8);
  const requestType = u32(b, 12);
  const status = u32(b, 16);
  if (status !== 0) throw bad(`status ${status}: the paravisor did not obtain a report`);
  if (!isZero(b.subarray(20, HCL_HEADER_SIZE))) throw bad('reserved header bytes are not zero');
  const r = HCL_REQUEST_DATA_OFFSET;
  const dataSize = u32(b, r);
  const requestDataVersion = u32(b, r + 4);
  const reportType = u32(b, r + 8);
  const hashCode = u32(b, r + 12);
  const variableSize = u32(b, r + 16);
  if (reportType === HCL_REPORT_TYPE.TDX)
    throw configError('SNP_HCL_TDX', 'Azure HCL report holds a TDX TDREPORT (report_type 4), which carries no signature: verify the TD quote instead (gm verify tdx)');
  if (reportType !== HCL_REPORT_TYPE.SNP) throw bad(`report_type ${reportType} is neither SNP (2) nor TDX (4)`);
  const hashType = HASH_TYPES[hashCode];
  if (!hashType) throw bad(`report_data_hash_type ${hashCode} is not SHA-256 (1), SHA-384 (2) or SHA-512 (3)`);
  if (dataSize !== REQUEST_DATA_HEADER + variableSize) throw bad(`data_size ${dataSize} != 20 + variable_data_size ${variableSize}`);
  if (reportSize !== HCL_REQUEST_DATA_OFFSET + dataSize) throw bad(`report_size ${reportSize} != 0x4C0 + data_size ${dataSize}`);
  if (reportSize > b.length) throw bad(`report_size ${reportSize} runs past the ${b.length} bytes given`);
  if (!isZero(b.subarray(reportSize))) throw bad(`non-zero bytes after report_size ${reportSize}`);
  return {
    version, requestType,
    snpReport: b.subarray(HCL_HEADER_SIZE, HCL_REQUEST_DATA_OFFSET),
    requestDataVersion, hashType,
    runtimeData: b.subarray(r + REQUEST_DATA_HEADER, reportSize),
    padding: b.length - reportSize,
  };
}
