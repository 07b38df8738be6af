/**
 * RTMR explanation on the real cos-113 TD (quote + CCEL from go-tdx-guest): the replay reproduces the quote's
 * RTMR0..3, every event is attributed, and altered events or inputs the TD did not boot are named.
 */
import { describe, expect, it } from 'vitest';
import { hex } from '../bytes.ts';
import { parseQuote } from '../tdx/abi.ts';
import { type CcEvent, type EventLog, parseEventLog } from '../tdx/ccel.ts';
import { hasVectors, vector } from '../../test/vectors.ts';
import { cmdlineInput, explainEventLog, fileInput } from './rtmr.ts';

const D = 'tdx/go-tdx-guest/';
const load = () => ({ log: parseEventLog(vector(`${D}ccel_data.dat`)), rtmr: parseQuote(vector(`${D}cos-113-tdx-quote.dat`)).body.rtmr });
const withEvent = (log: EventLog, seq: number, patch: Partial<CcEvent>): EventLog => ({ ...log, events: log.events.map((e) => (e.seq === seq ? { ...e, ...patch } : e)) });
const cosCmdline = (log: EventLog) => new TextDecoder().decode(log.events[41]!.data).replace(/\0$/, '').slice('kernel_cmdline: '.length);

describe.skipIf(!hasVectors)('RTMR replay and explanation: cos-113 TD', () => {
  it('replays to the quote\'s RTMR0..3 and attributes every event', () => {
    const { log, rtmr } = load();
    const x = explainEventLog(log, [], rtmr);
    expect(x.registers.map((r) => r.matches)).toEqual([true, true, true, true]);
    expect(x.registers[0]!.replayed.slice(0, 8)).toBe('3fa2f61f');
    expect(x.registers[1]!.replayed.slice(0, 8)).toBe('f62dbc07');
    expect(x.registers[2]!.replayed.slice(0, 8)).toBe('4969684d');
    expect(x.findings).toEqual([]);
    // What the log alone cannot vouch for: TD HOB, firmware volume and ACPI blobs; shim and GRUB images; MOK lists,
    // grub.cfg and the kernel file.
    expect(x.registers.map((r) => r.unexplained)).toEqual([5, 2, 5, 0]);
    expect(x.registers[1]!.events.filter((e) => e.source === 'log').map((e) => e.description)).toEqual([
      'boot application \\EFI\\BOOT\\BOOTX64.EFI, 924688 bytes in memory', 'boot application \\EFI\\BOOT\\grub-lakitu.efi, 743168 bytes in memory',
    ]);
    const byRule = new Set(x.registers.flatMap((r) => r.events.filter((e) => e.source === 'data').map((e) => e.by)));
    expect(byRule).toEqual(new Set(['SHA-384(event data)', 'SHA-384(VariableData)', 'SHA-384(GRUB string after "grub_cmd: ")', 'SHA-384(GRUB string after "kernel_cmdline: ")']));
  });

  it('finds the kernel command line it was given, and says so when a given input is not in the log', () => {
    const { log, rtmr } = load();
    const x = explainEventLog(log, [cmdlineInput(cosCmdline(log)), fileInput('kernel', new Uint8Array([1, 2, 3]))], rtmr);
    expect(x.inputs).toEqual([{ name: 'cmdline', foundAt: ['RTMR2 event 41'] }, { name: 'kernel', foundAt: [] }]);
    expect(x.registers[2]!.events.find((e) => e.seq === 41)).toMatchObject({ source: 'input', by: 'cmdline (UTF-8 (GRUB))' });
    expect(x.findings).toEqual([expect.stringMatching(/^kernel: no event in the log carries its digest/)]);
    const other = explainEventLog(log, [cmdlineInput(`${cosCmdline(log)} debug`)], rtmr);
    expect(other.findings[0]).toMatch(/^cmdline: no event/);
  });

  it('names the register and the event when a digest was altered', () => {
    const { log, rtmr } = load();
    const bad = Uint8Array.from(log.events[16]!.sha384!);
    bad[0]! ^= 1;
    const x = explainEventLog(withEvent(log, 16, { sha384: bad }), [], rtmr);
    expect(x.registers.map((r) => r.matches)).toEqual([true, false, true, true]);
    expect(x.registers[1]!.events.find((e) => e.seq === 16)).toMatchObject({ dataMismatch: true, source: 'log' });
    expect(x.findings).toHaveLength(1);
    expect(x.findings[0]).toMatch(/^RTMR1: the log replays to [0-9a-f]{96}, expected f62dbc07.*event\(s\) carry a digest that does not match their own data: 16$/);
  });

  it('flags event data that no longer matches its digest even when the register still replays', () => {
    const { log, rtmr } = load();
    const x = explainEventLog(withEvent(log, 15, { data: new TextEncoder().encode('Calling EFI Application from Boot Optiom') }), [], rtmr);
    expect(x.registers[1]!.matches).toBe(true);
    expect(x.registers[1]!.inconsistent).toBe(1);
    expect(x.findings).toEqual(['RTMR1: event(s) 15 carry a digest that does not match their own data']);
  });

  it('locates an EFI application by its Authenticode SHA-384 (a log whose GRUB event is replaced by a Debian-signed PE)', () => {
    const { log } = load();
    const pe = vector('measure/debian-fwupd/fwupdx64.efi.signed');
    const app = fileInput('EFI application fwupdx64.efi', pe);
    expect(app.digests.map((d) => d.label)).toEqual(['SHA-384 of the file', 'Authenticode SHA-384']);
    const x = explainEventLog(withEvent(log, 24, { sha384: app.digests[1]!.sha384 }), [app]);
    expect(x.registers[1]!.events.find((e) => e.seq === 24)).toMatchObject({ source: 'input', by: 'EFI application fwupdx64.efi (Authenticode SHA-384)' });
    expect(x.inputs).toEqual([{ name: 'EFI application fwupdx64.efi', foundAt: ['RTMR1 event 24'] }]);
  });

  it('a quote value that differs in one register fails that register only', () => {
    const { log, rtmr } = load();
    const other = rtmr.map((r) => Uint8Array.from(r));
    other[2]![47]! ^= 0x80;
    const x = explainEventLog(log, [], other);
    expect(x.registers.map((r) => r.matches)).toEqual([true, true, false, true]);
    expect(x.registers[2]!.expected).toBe(hex(other[2]!));
  });
});
