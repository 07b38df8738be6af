/** CCEL replay: the go-tdx-guest cos-113 sample's event log reproduces its quote's RTMR0..2; tampering is caught. */
import { describe, expect, it } from 'vitest';
import { hex } from '../bytes.ts';
import { hasVectors, vector } from '../../test/vectors.ts';
import { parseQuote } from './abi.ts';
import { parseCcelTable, parseEventLog, verifyEventLog } from './ccel.ts';
import { verifyTdx } from './index.ts';
import { createSimTdx } from './sim.ts';

const dir = 'tdx/go-tdx-guest';

describe.skipIf(!hasVectors)('CCEL replay (cos-113)', () => {
  const quote = () => parseQuote(vector(`${dir}/cos-113-tdx-quote.dat`));

  it('parses the ACPI CCEL table', () => {
    const t = parseCcelTable(vector(`${dir}/ccel_table.dat`));
    expect(t).toMatchObject({ ccType: 2, ccSubtype: 0, oemId: 'INTEL ', laml: 262144n });
  });

  it('replays RTMR0..2 equal to the quote and lists the events', async () => {
    const q = quote();
    const r = await verifyEventLog(q.body.rtmr, vector(`${dir}/ccel_data.dat`), vector(`${dir}/ccel_table.dat`));
    expect(r.replayed.slice(0, 3).map(hex)).toEqual(q.body.rtmr.slice(0, 3).map(hex));
    expect(hex(r.replayed[0]!).startsWith('3fa2f61f')).toBe(true);
    expect(r.events.length).toBe(44);
    expect(r.events[0]!.eventTypeName).toBe('EV_NO_ACTION');
    expect(r.events.some((e) => e.eventTypeName === 'EV_EFI_BOOT_SERVICES_APPLICATION')).toBe(true);
    expect(new Set(r.events.map((e) => e.mrIndex))).toEqual(new Set([1, 2, 3]));
  });

  it('a changed digest in the log → TDX_RTMR_MISMATCH naming the RTMR', async () => {
    const log = new Uint8Array(vector(`${dir}/ccel_data.dat`));
    const second = parseEventLog(log).events[1]!;
    // Flip a byte of the second event's SHA-384 digest (MR index 1 → RTMR0).
    const at = second.sha384!.byteOffset - log.byteOffset;
    log[at]! ^= 1;
    await expect(verifyEventLog(quote().body.rtmr, log)).rejects.toMatchObject({ code: 'TDX_RTMR_MISMATCH', message: expect.stringContaining('RTMR0') });
  });

  it('a log for another TD (quote RTMRs differ) → TDX_RTMR_MISMATCH', async () => {
    const rtmr = quote().body.rtmr.map((r) => new Uint8Array(r));
    rtmr[2]![0]! ^= 1;
    await expect(verifyEventLog(rtmr, vector(`${dir}/ccel_data.dat`))).rejects.toMatchObject({ code: 'TDX_RTMR_MISMATCH' });
  });

  it('strict table and log parsing', () => {
    const t = new Uint8Array(vector(`${dir}/ccel_table.dat`));
    t[45]! ^= 1; // breaks the checksum
    expect(() => parseCcelTable(t)).toThrow(expect.objectContaining({ code: 'TDX_CCEL_INVALID' }));
    expect(() => parseCcelTable(t.subarray(0, 55))).toThrow(expect.objectContaining({ code: 'TDX_CCEL_INVALID' }));
    const log = vector(`${dir}/ccel_data.dat`);
    expect(() => parseEventLog(log.subarray(0, 200))).toThrow(expect.objectContaining({ code: 'TDX_CCEL_INVALID' }));
    const junk = new Uint8Array(log);
    junk[log.length - 5] = 0x12; // garbage in the erased area
    expect(() => parseEventLog(junk)).toThrow(expect.objectContaining({ code: 'TDX_CCEL_INVALID' }));
  });

  it('verifyTdx lists every replayed event as a report row (sim quote carrying cos-113\'s RTMRs)', async () => {
    const sim = await createSimTdx();
    const q = await sim.quote({ rtmr: quote().body.rtmr });
    const { claims, report } = await verifyTdx(q, {
      now: sim.now, roots: sim.roots(), collateral: await sim.collateral(), eventLog: { log: vector(`${dir}/ccel_data.dat`), table: vector(`${dir}/ccel_table.dat`) },
    });
    expect(report.checks.find((c) => c.id === 'tdx.ccel.replay')?.status).toBe('pass');
    const rows = report.checks.filter((c) => c.id.startsWith('tdx.ccel.event.'));
    expect(rows.length).toBe(claims.eventLog!.length);
    expect(rows.length).toBeGreaterThan(30);
    expect(rows[0]!.what).toBe('EV_EFI_HANDOFF_TABLES2 extends RTMR0');
    const bad = await sim.quote();
    await expect(verifyTdx(bad, { now: sim.now, roots: sim.roots(), collateral: await sim.collateral(), eventLog: { log: vector(`${dir}/ccel_data.dat`) } }))
      .rejects.toMatchObject({ code: 'TDX_RTMR_MISMATCH' });
  });
});
