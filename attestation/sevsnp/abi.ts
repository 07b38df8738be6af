/**
 * SEV-SNP ATTESTATION_REPORT parser (AMD SEV Secure Nested Paging Firmware ABI Specification, pub. 56860,
 * §7.3 "Attestation", Table 23 ATTESTATION_REPORT Structure; TCB_VERSION Tables 3/4; GUEST_POLICY Table 9;
 * PLATFORM_INFO Table 24). Versions 2, 3 (adds CPUID_FAM_ID/MOD_ID/STEP) and 5 (adds LAUNCH_MIT_VECTOR and
 * CURRENT_MIT_VECTOR), always 1184 bytes.
 *
 * Layer 1 of 3 (abi): bytes to a readonly structure. It rejects what is not a report of a known layout (size,
 * version, must-be-zero ranges, signature algorithm) and decides nothing about trust.
 */
import { rejected } from '../errors.ts';

export const REPORT_SIZE = 0x4a0;
/** The signature covers bytes [0, SIGNED_LENGTH). */
export const SIGNED_LENGTH = 0x2a0;
/** SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384 (ABI Table 142). */
export const SIG_ALGO_ECDSA_P384_SHA384 = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [2, 3, 5];

export type AmdProduct = 'Milan' | 'Genoa' | 'Turin';
/** SIGNER_INFO.SIGNING_KEY: 0 VCEK, 1 VLEK, 7 none (2..6 reserved). */
export type SigningKey = 'vcek' | 'vlek' | 'none';

/**
 * TCB_VERSION. Milan and Genoa: byte 0 BOOT_LOADER, 1 TEE, 2..5 reserved, 6 SNP, 7 MICROCODE.
 * Turin: byte 0 FMC, 1 BOOT_LOADER, 2 TEE, 3 SNP, 4..6 reserved, 7 MICROCODE.
 */
export interface TcbVersion {
  readonly raw: bigint;
  /** Turin only. */
  readonly fmc: number | undefined;
  readonly bootloader: number;
  readonly tee: number;
  readonly snp: number;
  readonly microcode: number;
}
export type TcbLayout = 'milan-genoa' | 'turin';

/** GUEST POLICY (Table 9). Bit 17 is reserved and must be 1; bits 26..63 must be zero. */
export interface GuestPolicy {
  readonly raw: bigint;
  readonly abiMinor: number;
  readonly abiMajor: number;
  readonly smt: boolean;
  readonly migrateMa: boolean;
  readonly debug: boolean;
  readonly singleSocket: boolean;
  readonly cxlAllow: boolean;
  readonly memAes256Xts: boolean;
  readonly raplDis: boolean;
  readonly ciphertextHiding: boolean;
  readonly pageSwapDisable: boolean;
}

/** PLATFORM_INFO (Table 24). Bits beyond those named are kept in `raw` (firmware adds bits over time). */
export interface PlatformInfo {
  readonly raw: bigint;
  readonly smtEnabled: boolean;
  readonly tsmeEnabled: boolean;
  readonly eccEnabled: boolean;
  readonly raplDisabled: boolean;
  readonly ciphertextHidingEnabled: boolean;
  readonly aliasCheckComplete: boolean;
  readonly tioEnabled: boolean;
}

/** The word at 0x48: AUTHOR_KEY_EN (bit 0), MASK_CHIP_KEY (bit 1), SIGNING_KEY (bits 2..4); bits 5..31 reserved. */
export interface SignerInfo {
  readonly raw: number;
  readonly authorKeyEn: boolean;
  readonly maskChipKey: boolean;
  readonly signingKey: SigningKey;
}

export interface FirmwareVersion {
  readonly major: number;
  readonly minor: number;
  readonly build: number;
}

export interface Cpuid {
  readonly family: number;
  readonly model: number;
  readonly stepping: number;
}

export interface SnpReport {
  readonly raw: Uint8Array;
  readonly version: number;
  readonly guestSvn: number;
  readonly policy: GuestPolicy;
  readonly familyId: Uint8Array;
  readonly imageId: Uint8Array;
  readonly vmpl: number;
  readonly signatureAlgo: number;
  readonly currentTcb: TcbVersion;
  readonly platformInfo: PlatformInfo;
  readonly signerInfo: SignerInfo;
  readonly reportData: Uint8Array;
  readonly measurement: Uint8Array;
  readonly hostData: Uint8Array;
  readonly idKeyDigest: Uint8Array;
  readonly authorKeyDigest: Uint8Array;
  readonly reportId: Uint8Array;
  readonly reportIdMa: Uint8Array;
  readonly reportedTcb: TcbVersion;
  /** CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP: report version 3 and later. */
  readonly cpuid: Cpuid | undefined;
  readonly chipId: Uint8Array;
  readonly committedTcb: TcbVersion;
  readonly currentVersion: FirmwareVersion;
  readonly committedVersion: FirmwareVersion;
  readonly launchTcb: TcbVersion;
  /** Report version 5 and later. */
  readonly launchMitVector: bigint | undefined;
  readonly currentMitVector: bigint | undefined;
  /** Layout used to decode the TCB_VERSION fields (Turin when CPUID says family 1Ah). */
  readonly tcbLayout: TcbLayout;
  /** The signed bytes [0, 0x2A0). */
  readonly signedBytes: Uint8Array;
  /** SIGNATURE R and S as stored: 72-byte little-endian. */
  readonly signatureR: Uint8Array;
  readonly signatureS: Uint8Array;
}

/** Product from CPUID family/model (AMD family 19h: Milan models 00h-0Fh, Genoa 10h-1Fh and A0h-AFh; 1Ah: Turin 00h-1Fh). */
export function productFromCpuid(c: Cpuid): AmdProduct | undefined {
  if (c.family === 0x19) {
    if (c.model <= 0x0f) return 'Milan';
    if ((c.model >= 0x10 && c.model <= 0x1f) || (c.model >= 0xa0 && c.model <= 0xaf)) return 'Genoa';
  }
  if (c.family === 0x1a && c.model <= 0x1f) return 'Turin';
  return undefined;
}

export function decodeTcb(raw: bigint, layout: TcbLayout): TcbVersion {
  const b = (i: number) => Number((raw >> BigInt(8 * i)) & 0xffn);
  return layout === 'turin'
    ? { raw, fmc: b(0), bootloader: b(1), tee: b(2), snp: b(3), microcode: b(7) }
    : { raw, fmc: undefined, bootloader: b(0), tee: b(1), snp: b(6), microcode: b(7) };
}

/** Reserved bytes of a TCB_VERSION must be zero. */
function tcbReservedZero(raw: bigint, layout: TcbLayout): boolean {
  const mask = layout === 'turin' ? 0x00ffffff00000000n : 0x0000ffffffff0000n;
  return (raw & mask) === 0n;
}

const bad = (code: string, msg: string) => rejected(code, `SEV-SNP report: ${msg}`);

function mbz(b: Uint8Array, lo: number, hi: number, what: string): void {
  for (let i = lo; i < hi; i++) if (b[i] !== 0) throw bad('SNP_REPORT_RESERVED', `reserved ${what} [0x${lo.toString(16)}, 0x${hi.toString(16)}) is not zero (byte 0x${i.toString(16)})`);
}

/** Parses one attestation report. Throws GmError SNP_REPORT_SIZE / SNP_REPORT_VERSION / SNP_REPORT_RESERVED / SNP_SIG_ALGO. */
export function parseReport(input: Uint8Array): SnpReport {
  if (!(input instanceof Uint8Array)) throw bad('SNP_REPORT_SIZE', 'not a byte array');
  if (input.length !== REPORT_SIZE) throw bad('SNP_REPORT_SIZE', `${input.length} bytes, expected ${REPORT_SIZE}`);
  const raw = input.slice();
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number) => dv.getBigUint64(o, true);
  const bytes = (o: number, n: number) => raw.subarray(o, o + n);

  const version = u32(0x00);
  if (!SUPPORTED_VERSIONS.includes(version)) throw bad('SNP_REPORT_VERSION', `version ${version} is not one of ${SUPPORTED_VERSIONS.join(', ')}`);
  const signatureAlgo = u32(0x34);
  if (signatureAlgo !== SIG_ALGO_ECDSA_P384_SHA384) throw bad('SNP_SIG_ALGO', `SIGNATURE_ALGO ${signatureAlgo} is not 1 (ECDSA P-384 SHA-384)`);

  const policyRaw = u64(0x08);
  if (!((policyRaw >> 17n) & 1n)) throw bad('SNP_REPORT_RESERVED', 'GUEST POLICY bit 17 (reserved, must be one) is zero');
  if (policyRaw >> 26n) throw bad('SNP_REPORT_RESERVED', `GUEST POLICY reserved bits 26..63 are not zero (0x${policyRaw.toString(16)})`);
  const pbit = (n: number) => ((policyRaw >> BigInt(n)) & 1n) === 1n;
  const policy: GuestPolicy = {
    raw: policyRaw, abiMinor: Number(policyRaw & 0xffn), abiMajor: Number((policyRaw >> 8n) & 0xffn),
    smt: pbit(16), migrateMa: pbit(18), debug: pbit(19), singleSocket: pbit(20), cxlAllow: pbit(21), memAes256Xts: pbit(22),
    raplDis: pbit(23), ciphertextHiding: pbit(24), pageSwapDisable: pbit(25),
  };

  const piRaw = u64(0x40);
  const ibit = (n: number) => ((piRaw >> BigInt(n)) & 1n) === 1n;
  const platformInfo: PlatformInfo = {
    raw: piRaw, smtEnabled: ibit(0), tsmeEnabled: ibit(1), eccEnabled: ibit(2), raplDisabled: ibit(3),
    ciphertextHidingEnabled: ibit(4), aliasCheckComplete: ibit(5), tioEnabled: ibit(7),
  };

  const si = u32(0x48);
  if (si >>> 5) throw bad('SNP_REPORT_RESERVED', `SIGNER_INFO reserved bits 5..31 are not zero (0x${si.toString(16)})`);
  const sk = (si >>> 2) & 7;
  if (sk !== 0 && sk !== 1 && sk !== 7) throw bad('SNP_REPORT_RESERVED', `SIGNING_KEY ${sk} is reserved`);
  const signerInfo: SignerInfo = { raw: si, authorKeyEn: (si & 1) === 1, maskChipKey: (si & 2) === 2, signingKey: sk === 0 ? 'vcek' : sk === 1 ? 'vlek' : 'none' };
  mbz(raw, 0x4c, 0x50, 'word after SIGNER_INFO');

  let cpuid: Cpuid | undefined;
  if (version >= 3) {
    cpuid = { family: raw[0x188]!, model: raw[0x189]!, stepping: raw[0x18a]! };
    mbz(raw, 0x18b, 0x1a0, 'bytes after CPUID_STEP');
  } else mbz(raw, 0x188, 0x1a0, 'bytes after REPORTED_TCB');
  mbz(raw, 0x1eb, 0x1ec, 'byte after CURRENT_MAJOR');
  mbz(raw, 0x1ef, 0x1f0, 'byte after COMMITTED_MAJOR');
  let launchMitVector: bigint | undefined;
  let currentMitVector: bigint | undefined;
  if (version >= 5) {
    launchMitVector = u64(0x1f8);
    currentMitVector = u64(0x200);
    mbz(raw, 0x208, SIGNED_LENGTH, 'bytes after CURRENT_MIT_VECTOR');
  } else mbz(raw, 0x1f8, SIGNED_LENGTH, 'bytes after LAUNCH_TCB');

  // SIGNATURE (Table 142): R at 0x00, S at 0x48 of the block, 72 bytes little-endian each; a P-384 value fills 48
  // of them, so bytes 48..72 of each and the rest of the 512-byte block are zero.
  const signatureR = bytes(0x2a0, 72);
  const signatureS = bytes(0x2e8, 72);
  mbz(raw, 0x2a0 + 48, 0x2a0 + 72, 'high bytes of SIGNATURE R');
  mbz(raw, 0x2e8 + 48, 0x2e8 + 72, 'high bytes of SIGNATURE S');
  mbz(raw, 0x330, REPORT_SIZE, 'bytes after SIGNATURE S');

  const tcbLayout: TcbLayout = cpuid?.family === 0x1a ? 'turin' : 'milan-genoa';
  const tcb = (o: number, what: string) => {
    const v = u64(o);
    if (!tcbReservedZero(v, tcbLayout)) throw bad('SNP_REPORT_RESERVED', `${what} reserved bytes are not zero (0x${v.toString(16)})`);
    return decodeTcb(v, tcbLayout);
  };
  const fw = (o: number): FirmwareVersion => ({ build: raw[o]!, minor: raw[o + 1]!, major: raw[o + 2]! });

  return {
    raw,
    version,
    guestSvn: u32(0x04),
    policy,
    familyId: bytes(0x10, 16),
    imageId: bytes(0x20, 16),
    vmpl: u32(0x30),
    signatureAlgo,
    currentTcb: tcb(0x38, 'CURRENT_TCB'),
    platformInfo,
    signerInfo,
    reportData: bytes(0x50, 64),
    measurement: bytes(0x90, 48),
    hostData: bytes(0xc0, 32),
    idKeyDigest: bytes(0xe0, 48),
    authorKeyDigest: bytes(0x110, 48),
    reportId: bytes(0x140, 32),
    reportIdMa: bytes(0x160, 32),
    reportedTcb: tcb(0x180, 'REPORTED_TCB'),
    cpuid,
    chipId: bytes(0x1a0, 64),
    committedTcb: tcb(0x1e0, 'COMMITTED_TCB'),
    currentVersion: fw(0x1e8),
    committedVersion: fw(0x1ec),
    launchTcb: tcb(0x1f0, 'LAUNCH_TCB'),
    launchMitVector,
    currentMitVector,
    tcbLayout,
    signedBytes: raw.subarray(0, SIGNED_LENGTH),
    signatureR,
    signatureS,
  };
}

/** R‖S as IEEE P1363 (48-byte big-endian halves), the form WebCrypto verifies. */
export function signatureP1363(r: SnpReport): Uint8Array {
  const out = new Uint8Array(96);
  for (let i = 0; i < 48; i++) {
    out[47 - i] = r.signatureR[i]!;
    out[95 - i] = r.signatureS[i]!;
  }
  return out;
}
