import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { hasVectors, vectorPath } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  const x: Io = { out: (s) => void out.push(s), err: (s) => void err.push(s), env: {}, readFile: async (p) => new Uint8Array(await readFile(p)) };
  return { io: x, out: () => out.join(''), err: () => err.join('') };
}

const D = (f: string) => vectorPath(`tdx/go-tdx-guest/${f}`);
const OVMF = vectorPath('measure/debian-ovmf/OVMF.fd');
const COS = () => ['--ccel-log', D('ccel_data.dat'), '--ccel-table', D('ccel_table.dat'), '--quote', D('cos-113-tdx-quote.dat')];

describe.skipIf(!hasVectors)('gm measure tdx', () => {
  it('replays the cos-113 CCEL to the quote\'s RTMRs and attributes each event (exit 0)', async () => {
    const t = io();
    expect(await main(['measure', 'tdx', ...COS()], t.io)).toBe(0);
    const o = t.out();
    expect(o).toMatch(/^RTMR0 {2}3fa2f61f[0-9a-f]{88} {2}\[quote: match\] {2}16 events: 11 from their data, 0 from inputs, 5 from the log alone$/m);
    expect(o).toMatch(/^RTMR1 {2}f62dbc07[0-9a-f]{88} {2}\[quote: match\]/m);
    expect(o).toMatch(/^RTMR2 {2}4969684d[0-9a-f]{88} {2}\[quote: match\]/m);
    expect(o).toContain('boot application \\EFI\\BOOT\\grub-lakitu.efi');
    expect(o).toMatch(/consistent: every comparison holds\n$/);
  });

  it('--json carries every register, event and input', async () => {
    const t = io();
    const cmdline = 'x';
    expect(await main(['measure', 'tdx', ...COS(), '--cmdline', cmdline, '--json'], t.io)).toBe(1);
    const j = JSON.parse(t.out());
    expect(j.rtmr).toHaveLength(4);
    expect(j.rtmr[2].events.at(-1)).toMatchObject({ seq: 41, type: 'EV_IPL', source: 'data' });
    expect(j.inputs).toEqual([{ name: 'cmdline', foundAt: [] }]);
    expect(j.consistent).toBe(false);
  });

  it('--efi-app names an application the TD did not start', async () => {
    const t = io();
    const pe = vectorPath('measure/debian-fwupd/fwupdx64.efi.signed');
    expect(await main(['measure', 'tdx', ...COS(), '--efi-app', pe], t.io)).toBe(1);
    expect(t.out()).toContain('input EFI application fwupdx64.efi.signed: NOT FOUND');
    expect(t.out()).toMatch(/EFI application fwupdx64\.efi\.signed: no event in the log carries its digest \(SHA-384 of the file [0-9a-f]{16}…, Authenticode SHA-384 [0-9a-f]{16}…\)/);
  });

  it('MRTD from a TDVF; a quote from another firmware is a finding naming both values (exit 1)', async () => {
    const t = io();
    expect(await main(['measure', 'tdx', '--tdvf', OVMF, '--page-order', 'two-pass'], t.io)).toBe(0);
    expect(t.out()).toMatch(/^MRTD {3}acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b33db3b32e6924cba830a724eed443f7e1 {2}\(TDVF, two-pass\)$/m);
    const q = io();
    expect(await main(['measure', 'tdx', '--tdvf', OVMF, '--quote', D('cos-113-tdx-quote.dat')], q.io)).toBe(1);
    expect(q.out()).toContain('MRTD: computed from');
    expect(q.out()).toContain('the quote has dae67181');
  });

  it.each([
    [[], 'give --tdvf'],
    [['--tdvf', OVMF, '--page-order', 'three'], 'is not single-pass or two-pass'],
    [['--tdvf', OVMF, '--cmdline', 'x'], 'give --ccel-log'],
    [['--ccel-log', 'x', '--bogus'], "unknown option '--bogus'"],
  ])('usage error (exit 2): %j', async (args, msg) => {
    const t = io();
    expect(await main(['measure', 'tdx', ...args], t.io)).toBe(2);
    expect(t.err()).toContain(msg);
  });

  it('a file that is not a TDVF is an input error', async () => {
    const t = io();
    expect(await main(['measure', 'tdx', '--tdvf', D('ccel_table.dat')], t.io)).toBe(2);
    expect(t.err()).toMatch(/MEASURE_FIRMWARE_(INVALID|NO_TABLE)/);
  });
});
