/**
 * RTMR0..3 explained event by event: replays a TD's CCEL event log and says, for every extend, where its digest
 * comes from, so a register that differs from the expected value can be traced to the event that differs.
 *
 * Sources of a digest:
 * - `data`: the digest is SHA-384 of the event's own data (TCG PC Client Platform Firmware Profile §10.4 and the
 *   edk2 TDX measurement code: EV_SEPARATOR, EV_EFI_ACTION and GRUB's EV_IPL strings hash the data, without a
 *   trailing NUL for strings, and GRUB's without the "grub_cmd: " / "kernel_cmdline: " prefix of its description;
 *   EV_EFI_VARIABLE_DRIVER_CONFIG and _AUTHORITY hash the whole UEFI_VARIABLE_DATA;
 *   EV_EFI_VARIABLE_BOOT hashes only its VariableData; EV_EFI_GPT_EVENT hashes the UEFI_GPT_DATA). Recomputed here.
 * - `input`: the digest equals the digest of a file the caller gave (kernel, initrd, command line, ACPI tables,
 *   EFI applications by their Authenticode hash, the firmware's configuration volume).
 * - `log`: neither: the digest covers content the log does not carry (a boot application, the TD HOB, a MOK
 *   list) and is taken as the log states it.
 * For the types that must hash their data, a digest that matches none of the rules is reported as inconsistent
 * (`dataMismatch`): the log was altered, or written by firmware that measures differently.
 * CC MR index i extends RTMR i−1 (index 0 is MRTD); RTMR := SHA-384(RTMR ‖ digest), starting from zeros.
 */
import { sha384 } from '@noble/hashes/sha2.js';
import { equalBytes, hex } from '../bytes.ts';
import { protocolError } from '../errors.ts';
import { type CcEvent, EV_NO_ACTION, type EventLog } from '../tdx/ccel.ts';
import { authenticodeHash, isPe } from './authenticode.ts';
import { guidString } from './guid-table.ts';

const EV_SEPARATOR = 0x4;
const EV_ACTION = 0x5;
const EV_IPL = 0xd;
const EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001;
const EV_EFI_VARIABLE_BOOT = 0x80000002;
const EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003;
const EV_EFI_ACTION = 0x80000007;
const EV_EFI_GPT_EVENT = 0x80000006;
const EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000a;
const EV_EFI_HANDOFF_TABLES2 = 0x8000000b;
const EV_EFI_VARIABLE_AUTHORITY = 0x800000e0;
const EV_PLATFORM_CONFIG_FLAGS = 0xa;

/** Types whose digest is defined over their own data: a digest that matches no rule is an inconsistency. */
const MUST_HASH_DATA = new Set([EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_VARIABLE_AUTHORITY, EV_EFI_GPT_EVENT]);
const VARIABLE_TYPES = new Set([EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_VARIABLE_AUTHORITY]);
const GRUB_PREFIXES = ['grub_cmd: ', 'kernel_cmdline: ', 'module_cmdline: '];
const TYPE_NAMES: Record<number, string> = { [EV_PLATFORM_CONFIG_FLAGS]: 'EV_PLATFORM_CONFIG_FLAGS', [EV_EFI_GPT_EVENT]: 'EV_EFI_GPT_EVENT' };

/** A named input and the digests it may appear under in the log. */
export interface MeasuredInput {
  readonly name: string;
  /** Reported where found, but its absence is not a finding (e.g. a firmware volume that a separate VARS file replaces). */
  readonly optional?: boolean;
  readonly digests: readonly { readonly label: string; readonly sha384: Uint8Array }[];
}

export interface ExplainedEvent {
  readonly seq: number;
  readonly rtmr: number;
  readonly type: string;
  readonly digest: string;
  readonly description: string;
  readonly source: 'data' | 'input' | 'log';
  /** The rule (for `data`) or input and form (for `input`) that reproduces the digest. */
  readonly by?: string;
  readonly dataMismatch?: true;
}

export interface RegisterExplanation {
  readonly index: number;
  readonly replayed: string;
  /** The value to compare with, when one was given (a quote's RTMR). */
  readonly expected?: string;
  readonly matches?: boolean;
  readonly events: readonly ExplainedEvent[];
  /** Digests taken from the log as stated (source `log`). */
  readonly unexplained: number;
  readonly inconsistent: number;
}

export interface LogExplanation {
  readonly registers: readonly RegisterExplanation[];
  /** Where each input was found (register and event), or nowhere. */
  readonly inputs: readonly { readonly name: string; readonly foundAt: readonly string[] }[];
  readonly findings: readonly string[];
}

interface VariableData { readonly guid: string; readonly name: string; readonly data: Uint8Array }

/** UEFI_VARIABLE_DATA (TCG PFP §10.2.6): GUID, u64 name length (chars), u64 data length, UTF-16 name, data. */
function parseVariable(d: Uint8Array): VariableData | undefined {
  if (d.length < 32) return undefined;
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const nameLen = dv.getBigUint64(16, true);
  const dataLen = dv.getBigUint64(24, true);
  if (32n + 2n * nameLen + dataLen !== BigInt(d.length)) return undefined;
  const n = Number(nameLen);
  let name = '';
  for (let i = 0; i < n; i++) name += String.fromCharCode(dv.getUint16(32 + 2 * i, true));
  return { guid: guidString(d.subarray(0, 16)), name, data: d.subarray(32 + 2 * n) };
}

const printable = (d: Uint8Array) => String.fromCharCode(...d.subarray(0, 200)).replace(/\0+$/, '').replace(/[^\x20-\x7e]/g, '.');

/** UTF-16 file-path nodes (type 4, subtype 4) of a UEFI device path. */
function devicePathFiles(p: Uint8Array): string {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const parts: string[] = [];
  for (let o = 0; o + 4 <= p.length;) {
    const len = dv.getUint16(o + 2, true);
    if (len < 4 || o + len > p.length) break;
    if (p[o] === 4 && p[o + 1] === 4) {
      let s = '';
      for (let i = o + 4; i + 1 < o + len; i += 2) s += String.fromCharCode(dv.getUint16(i, true));
      parts.push(s.replace(/\0+$/, ''));
    }
    if (p[o] === 0x7f) break;
    o += len;
  }
  return parts.join('');
}

function describe(e: CcEvent): string {
  const d = e.data;
  if (VARIABLE_TYPES.has(e.eventType)) {
    const v = parseVariable(d);
    return v ? `variable ${v.name} {${v.guid}}, ${v.data.length} bytes` : `unparsed variable event, ${d.length} bytes`;
  }
  if (e.eventType === EV_EFI_BOOT_SERVICES_APPLICATION && d.length >= 32) {
    const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
    const length = dv.getBigUint64(8, true);
    const pathLen = Number(dv.getBigUint64(24, true));
    const path = 32 + pathLen <= d.length ? devicePathFiles(d.subarray(32, 32 + pathLen)) : '';
    return `boot application${path ? ` ${path}` : ''}, ${length} bytes in memory`;
  }
  if ((e.eventType === EV_EFI_PLATFORM_FIRMWARE_BLOB2 || e.eventType === EV_EFI_HANDOFF_TABLES2) && d.length >= 1 && 1 + d[0]! <= d.length)
    return printable(d.subarray(1, 1 + d[0]!));
  if (e.eventType === EV_SEPARATOR) return `separator ${hex(d)}`;
  if (e.eventType === EV_EFI_GPT_EVENT) return `GPT header and partition entries, ${d.length} bytes`;
  return printable(d);
}

/** The rule under which `digest` is SHA-384 of the event's data, if any. */
function dataRule(e: CcEvent, digest: Uint8Array): string | undefined {
  const d = e.data;
  if (equalBytes(sha384(d), digest)) return 'SHA-384(event data)';
  if (d.length > 0 && d[d.length - 1] === 0 && equalBytes(sha384(d.subarray(0, d.length - 1)), digest)) return 'SHA-384(event data without its NUL)';
  if (VARIABLE_TYPES.has(e.eventType)) {
    const v = parseVariable(d);
    if (v && equalBytes(sha384(v.data), digest)) return 'SHA-384(VariableData)';
  }
  if (e.eventType === EV_IPL) {
    // GRUB measures the string without the prefix its event description adds (grub-core/commands/tpm.c).
    const text = new TextDecoder().decode(d[d.length - 1] === 0 ? d.subarray(0, d.length - 1) : d);
    for (const prefix of GRUB_PREFIXES) {
      if (text.startsWith(prefix) && equalBytes(sha384(new TextEncoder().encode(text.slice(prefix.length))), digest)) return `SHA-384(GRUB string after "${prefix}")`;
    }
  }
  return undefined;
}

/**
 * Replays RTMR0..3 from `log`, explaining each extend. `expected` (e.g. the quote's RTMRs) adds a per-register
 * comparison; `inputs` are matched against every digest.
 */
export function explainEventLog(log: EventLog, inputs: readonly MeasuredInput[] = [], expected?: readonly Uint8Array[]): LogExplanation {
  const regs = [0, 1, 2, 3].map(() => ({ value: new Uint8Array(48) as Uint8Array, events: [] as ExplainedEvent[] }));
  const found = new Map(inputs.map((i) => [i.name, [] as string[]]));
  for (const e of log.events) {
    if (e.eventType === EV_NO_ACTION) continue;
    if (e.mrIndex < 1 || e.mrIndex > 4) throw protocolError('TDX_CCEL_INVALID', `CCEL: event ${e.seq} extends MR index ${e.mrIndex}, not an RTMR (1..4)`);
    if (!e.sha384) throw protocolError('TDX_CCEL_INVALID', `CCEL: event ${e.seq} has no SHA-384 digest`);
    const r = e.mrIndex - 1;
    const digest = e.sha384;
    // An input's digest names the piece the caller is checking, so it is preferred over a data rule in the output;
    // consistency with the event's own data is still required of the types that hash their data.
    const dataBy = dataRule(e, digest);
    let inputBy: string | undefined;
    for (const i of inputs) {
      const m = i.digests.find((x) => equalBytes(x.sha384, digest));
      if (!m) continue;
      inputBy ??= `${i.name} (${m.label})`;
      found.get(i.name)!.push(`RTMR${r} event ${e.seq}`);
    }
    const source: ExplainedEvent['source'] = inputBy ? 'input' : dataBy ? 'data' : 'log';
    const by = inputBy ?? dataBy;
    const dataMismatch = !dataBy && MUST_HASH_DATA.has(e.eventType);
    regs[r]!.events.push({
      seq: e.seq, rtmr: r, type: TYPE_NAMES[e.eventType] ?? e.eventTypeName, digest: hex(digest), description: describe(e), source,
      ...(by ? { by } : {}), ...(dataMismatch ? { dataMismatch: true as const } : {}),
    });
    const buf = new Uint8Array(96);
    buf.set(regs[r]!.value, 0);
    buf.set(digest, 48);
    regs[r]!.value = sha384(buf);
  }
  const findings: string[] = [];
  const registers = regs.map((g, index): RegisterExplanation => {
    const exp = expected?.[index];
    const matches = exp ? equalBytes(exp, g.value) : undefined;
    const inconsistent = g.events.filter((e) => e.dataMismatch).length;
    const unexplained = g.events.filter((e) => e.source === 'log').length;
    if (matches === false) {
      findings.push(`RTMR${index}: the log replays to ${hex(g.value)}, expected ${hex(exp!)}: the log does not describe this register's boot (events missing, extra or altered)` +
        (inconsistent ? `; ${inconsistent} event(s) carry a digest that does not match their own data: ${g.events.filter((e) => e.dataMismatch).map((e) => e.seq).join(', ')}` : ''));
    } else if (inconsistent) {
      findings.push(`RTMR${index}: event(s) ${g.events.filter((e) => e.dataMismatch).map((e) => e.seq).join(', ')} carry a digest that does not match their own data`);
    }
    return { index, replayed: hex(g.value), ...(exp ? { expected: hex(exp), matches } : {}), events: g.events, unexplained, inconsistent };
  });
  for (const i of inputs) {
    if (found.get(i.name)!.length === 0 && !i.optional) findings.push(`${i.name}: no event in the log carries its digest (${i.digests.map((d) => `${d.label} ${hex(d.sha384).slice(0, 16)}…`).join(', ')}): the TD did not measure this input as given`);
  }
  return { registers, inputs: inputs.map((i) => ({ name: i.name, foundAt: found.get(i.name)! })), findings };
}

/** Digest forms of a kernel command line as boot loaders measure it. */
export function cmdlineInput(cmdline: string): MeasuredInput {
  const utf8 = new TextEncoder().encode(cmdline);
  const utf16 = new Uint8Array(2 * cmdline.length + 2);
  const dv = new DataView(utf16.buffer);
  for (let i = 0; i < cmdline.length; i++) dv.setUint16(2 * i, cmdline.charCodeAt(i), true);
  const withNul = new Uint8Array(utf8.length + 1);
  withNul.set(utf8);
  return {
    name: 'cmdline',
    digests: [
      { label: 'UTF-8 (GRUB)', sha384: sha384(utf8) },
      { label: 'UTF-8 with NUL', sha384: sha384(withNul) },
      { label: 'UTF-16LE with NUL (EFI stub, systemd-stub)', sha384: sha384(utf16) },
    ],
  };
}

/**
 * A file measured whole (GRUB's EV_IPL of a kernel or initrd, the Linux EFI stub's initrd, an ACPI blob) and, when
 * it is a PE image (an EFI application, a UKI, a kernel with an EFI stub), also by its Authenticode hash as UEFI
 * firmware measures an application it starts.
 */
export function fileInput(name: string, bytes: Uint8Array): MeasuredInput {
  const digests: { label: string; sha384: Uint8Array }[] = [{ label: 'SHA-384 of the file', sha384: sha384(bytes) }];
  if (isPe(bytes)) digests.push({ label: 'Authenticode SHA-384', sha384: authenticodeHash(bytes, 'SHA-384', name) });
  return { name, digests };
}
