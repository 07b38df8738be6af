/**
 * CCEL event-log replay for auditors: reproduces RTMR0..2 of a TD from its firmware event log.
 *
 * - ACPI "CCEL" table (ACPI 6.5 §5.2.34, Confidential Computing Event Log table): 36-byte ACPI header, CC type
 *   (2 = TDX), CC subtype, 2 reserved bytes, LAML (log area minimum length, u64), LASA (log area start, u64).
 * - Log area: TCG PC Client Platform Firmware Profile §10 "crypto agile" log: a first TCG_PCR_EVENT (SHA-1
 *   format) carrying the TCG_EfiSpecIDEvent ("Spec ID Event03") that lists the digest algorithms, then
 *   TCG_PCR_EVENT2 records {MR index u32, event type u32, TPML_DIGEST_VALUES, event size u32, event}.
 *   Unused space after the last record is 0xFF (erased flash) or zero.
 * - Intel TDX guest-host communication / UEFI CC measurement protocol: CC MR index 1 → RTMR0, 2 → RTMR1,
 *   3 → RTMR2, 4 → RTMR3 (index 0 is MRTD, never in the log); RTMR := SHA-384(RTMR ‖ digest), starting at zero.
 * EV_NO_ACTION events are informational and not extended.
 */
import { concat, equalBytes, hex, isZero, sha384 } from '../bytes.ts';
import { protocolError, rejected } from '../errors.ts';

export const TPM_ALG_SHA384 = 0x000c;
export const EV_NO_ACTION = 0x00000003;

const EVENT_TYPES: Record<number, string> = {
  0x00000001: 'EV_POST_CODE', 0x00000003: 'EV_NO_ACTION', 0x00000004: 'EV_SEPARATOR', 0x00000005: 'EV_ACTION', 0x00000006: 'EV_EVENT_TAG',
  0x00000007: 'EV_S_CRTM_CONTENTS', 0x00000008: 'EV_S_CRTM_VERSION', 0x0000000d: 'EV_IPL', 0x0000000e: 'EV_IPL_PARTITION_DATA',
  0x80000001: 'EV_EFI_VARIABLE_DRIVER_CONFIG', 0x80000002: 'EV_EFI_VARIABLE_BOOT', 0x80000003: 'EV_EFI_BOOT_SERVICES_APPLICATION',
  0x80000004: 'EV_EFI_BOOT_SERVICES_DRIVER', 0x80000007: 'EV_EFI_ACTION', 0x80000008: 'EV_EFI_PLATFORM_FIRMWARE_BLOB',
  0x80000009: 'EV_EFI_HANDOFF_TABLES', 0x8000000a: 'EV_EFI_PLATFORM_FIRMWARE_BLOB2', 0x8000000b: 'EV_EFI_HANDOFF_TABLES2',
  0x800000e0: 'EV_EFI_VARIABLE_AUTHORITY', 0x800000e1: 'EV_EFI_SPDM_FIRMWARE_BLOB',
};

export interface CcelTable {
  readonly revision: number;
  readonly oemId: string;
  readonly oemTableId: string;
  /** 2 = Intel TDX. */
  readonly ccType: number;
  readonly ccSubtype: number;
  readonly laml: bigint;
  readonly lasa: bigint;
}

export interface CcEvent {
  /** Position in the log (0 = the Spec ID event). */
  readonly seq: number;
  readonly mrIndex: number;
  readonly eventType: number;
  readonly eventTypeName: string;
  /** SHA-384 digest of the record (absent for the SHA-1-format first record). */
  readonly sha384: Uint8Array | undefined;
  readonly data: Uint8Array;
}

export interface EventLog {
  readonly algorithms: readonly { readonly algId: number; readonly size: number }[];
  readonly events: readonly CcEvent[];
}

const bad = (msg: string) => protocolError('TDX_CCEL_INVALID', `CCEL: ${msg}`);

export function parseCcelTable(b: Uint8Array): CcelTable {
  if (b.length !== 56) throw bad(`table is ${b.length} bytes, expected 56`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ascii = (s: number, n: number) => String.fromCharCode(...b.subarray(s, s + n));
  if (ascii(0, 4) !== 'CCEL') throw bad('table signature is not "CCEL"');
  if (dv.getUint32(4, true) !== 56) throw bad('table length field is not 56');
  let sum = 0;
  for (const x of b) sum = (sum + x) & 0xff;
  if (sum !== 0) throw bad('table checksum does not sum to zero');
  if (dv.getUint16(38, true) !== 0) throw bad('reserved bytes are not zero');
  return {
    revision: b[8]!, oemId: ascii(10, 6), oemTableId: ascii(16, 8), ccType: b[36]!, ccSubtype: b[37]!,
    laml: dv.getBigUint64(40, true), lasa: dv.getBigUint64(48, true),
  };
}

/** Parses the crypto-agile log; the bytes after the last record must be all 0xFF or all zero. */
export function parseEventLog(b: Uint8Array): EventLog {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  const need = (n: number, what: string) => {
    if (n < 0 || p + n > b.length) throw bad(`${what} at offset ${p} runs past the end of the log`);
  };
  const u32 = (what: string) => {
    need(4, what);
    const v = dv.getUint32(p, true);
    p += 4;
    return v;
  };
  const u16 = (what: string) => {
    need(2, what);
    const v = dv.getUint16(p, true);
    p += 2;
    return v;
  };
  const take = (n: number, what: string) => {
    need(n, what);
    const v = b.subarray(p, p + n);
    p += n;
    return v;
  };
  // First record: TCG_PCR_EVENT with a SHA-1-sized digest and the Spec ID event.
  const mr0 = u32('first event index');
  const type0 = u32('first event type');
  if (type0 !== EV_NO_ACTION) throw bad('first event is not EV_NO_ACTION');
  if (!isZero(take(20, 'first event digest'))) throw bad('first event digest is not zero');
  const spec = take(u32('first event size'), 'Spec ID event');
  if (String.fromCharCode(...spec.subarray(0, 16)) !== 'Spec ID Event03\0') throw bad('first event is not "Spec ID Event03"');
  if (spec.length < 28) throw bad('Spec ID event too short');
  const sdv = new DataView(spec.buffer, spec.byteOffset, spec.byteLength);
  const nAlg = sdv.getUint32(24, true);
  if (nAlg === 0 || spec.length < 28 + 4 * nAlg + 1) throw bad('Spec ID event algorithm list does not fit');
  const algorithms: { algId: number; size: number }[] = [];
  for (let i = 0; i < nAlg; i++) algorithms.push({ algId: sdv.getUint16(28 + 4 * i, true), size: sdv.getUint16(30 + 4 * i, true) });
  const vendorSize = spec[28 + 4 * nAlg]!;
  if (28 + 4 * nAlg + 1 + vendorSize !== spec.length) throw bad('Spec ID event size does not match its contents');
  const sizeOf = new Map(algorithms.map((a) => [a.algId, a.size]));
  if (sizeOf.get(TPM_ALG_SHA384) !== 48) throw bad('the log does not carry SHA-384 digests');
  const events: CcEvent[] = [{ seq: 0, mrIndex: mr0, eventType: type0, eventTypeName: 'EV_NO_ACTION', sha384: undefined, data: spec }];

  while (p < b.length) {
    if (p + 4 <= b.length && dv.getUint32(p, true) === 0xffffffff) break;
    // Scan the rest for zero padding only when the next index is zero: a full scan per record is quadratic.
    if ((p + 4 > b.length || dv.getUint32(p, true) === 0) && isZero(b.subarray(p))) break;
    const mrIndex = u32('MR index');
    const eventType = u32('event type');
    const count = u32('digest count');
    if (count !== algorithms.length) throw bad(`event ${events.length} has ${count} digests, the Spec ID event lists ${algorithms.length}`);
    let digest: Uint8Array | undefined;
    for (let i = 0; i < count; i++) {
      const alg = u16('digest algorithm');
      const size = sizeOf.get(alg);
      if (size === undefined) throw bad(`event ${events.length} uses algorithm 0x${alg.toString(16)} not in the Spec ID event`);
      const d = take(size, 'digest');
      if (alg === TPM_ALG_SHA384) digest = d;
    }
    const data = take(u32('event size'), 'event data');
    events.push({ seq: events.length, mrIndex, eventType, eventTypeName: EVENT_TYPES[eventType] ?? `0x${eventType.toString(16)}`, sha384: digest, data });
  }
  const rest = b.subarray(p);
  if (!rest.every((x) => x === 0xff) && !isZero(rest)) throw bad('bytes after the last event are neither 0xFF nor zero');
  return { algorithms, events };
}

/** RTMR0..3 from the log (MR index i+1 extends RTMR i). */
export async function replayRtmrs(log: EventLog): Promise<Uint8Array[]> {
  const rtmr: Uint8Array[] = [0, 1, 2, 3].map(() => new Uint8Array(48));
  for (const e of log.events) {
    if (e.eventType === EV_NO_ACTION) continue;
    if (e.mrIndex < 1 || e.mrIndex > 4) throw bad(`event ${e.seq} extends MR index ${e.mrIndex}, not an RTMR (1..4)`);
    if (!e.sha384) throw bad(`event ${e.seq} has no SHA-384 digest`);
    rtmr[e.mrIndex - 1] = await sha384(concat(rtmr[e.mrIndex - 1]!, e.sha384));
  }
  return rtmr;
}

export interface ReplayResult {
  readonly table: CcelTable | undefined;
  readonly events: readonly CcEvent[];
  readonly replayed: readonly Uint8Array[];
}

/**
 * Replays the log and checks RTMR0..2 against the quote's (RTMR3 is extended at runtime by the OS and is checked
 * only when `checkRtmr3`). Throws TDX_RTMR_MISMATCH naming the first RTMR that differs.
 */
export async function verifyEventLog(
  quoteRtmrs: readonly Uint8Array[], logBytes: Uint8Array, tableBytes?: Uint8Array, checkRtmr3 = false,
): Promise<ReplayResult> {
  const table = tableBytes ? parseCcelTable(tableBytes) : undefined;
  if (table && table.ccType !== 2) throw bad(`CC type ${table.ccType} is not TDX (2)`);
  if (table && BigInt(logBytes.length) > table.laml) throw bad('log is longer than the table\'s LAML');
  const log = parseEventLog(logBytes);
  const replayed = await replayRtmrs(log);
  for (let i = 0; i < (checkRtmr3 ? 4 : 3); i++) {
    if (!equalBytes(replayed[i]!, quoteRtmrs[i]!))
      throw rejected('TDX_RTMR_MISMATCH', `RTMR${i} replayed from the event log is ${hex(replayed[i]!)}, the quote has ${hex(quoteRtmrs[i]!)}`);
  }
  return { table, events: log.events, replayed };
}
