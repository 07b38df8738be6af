/**
 * `gm measure tdx [--tdvf FILE [--page-order single-pass|two-pass]] [--ccel-log FILE [--ccel-table FILE]]
 *  [--quote FILE] [--kernel FILE] [--initrd FILE] [--cmdline TEXT] [--acpi FILE ...] [--efi-app FILE ...] [--json]`
 *
 * MRTD from the TDVF image (attestation/measure/tdvf.ts) and RTMR0..3 replayed from the TD's CCEL event log with
 * every extend attributed (attestation/measure/rtmr.ts): to its own event data, to one of the given inputs, or
 * to the log alone. With --quote, each register is compared with the quote's and a difference is explained.
 * Exit 0 when every comparison holds and every given input was found, 1 otherwise, 2 usage or input error.
 */
import { basename } from 'node:path';
import { sha384 } from '@noble/hashes/sha2.js';
import { hex } from '../attestation/bytes.ts';
import { configError } from '../attestation/errors.ts';
import { decodeEvidence } from '../attestation/encoding.ts';
import { type LogExplanation, type MeasuredInput, cmdlineInput, explainEventLog, fileInput } from '../attestation/measure/rtmr.ts';
import { type PageOrder, computeMrtd, sectionsJson } from '../attestation/measure/tdvf.ts';
import { parseQuote } from '../attestation/tdx/abi.ts';
import { parseCcelTable, parseEventLog } from '../attestation/tdx/ccel.ts';
import type { MeasureTdxFlags } from './commands.ts';
import type { Io } from './io.ts';

interface MrtdOut { value: string; pageOrder: PageOrder; quote?: string; matches?: boolean; sections: Record<string, unknown>[] }

export async function run(v: MeasureTdxFlags, io: Io): Promise<number> {
  const acpi = v.acpi ?? [];
  const efiApps = v['efi-app'] ?? [];
  if (!v.tdvf && !v['ccel-log']) throw configError('USAGE', 'give --tdvf (MRTD) and/or --ccel-log (RTMRs)');
  const order = (v['page-order'] ?? 'single-pass') as PageOrder;
  if (order !== 'single-pass' && order !== 'two-pass') throw configError('USAGE', `--page-order ${JSON.stringify(order)} is not single-pass or two-pass`);
  if (v['ccel-table'] && !v['ccel-log']) throw configError('USAGE', '--ccel-table needs --ccel-log');
  if (!v['ccel-log'] && (v.kernel || v.initrd || v.cmdline !== undefined || acpi.length || efiApps.length)) throw configError('USAGE', 'kernel, initrd, command line and ACPI inputs are located in an event log: give --ccel-log');

  const quote = v.quote ? parseQuote(decodeEvidence(await io.readFile(v.quote), 'tdx-quote', v.quote).bytes).body : undefined;
  const findings: string[] = [];
  const inputs: MeasuredInput[] = [];

  let mrtd: MrtdOut | undefined;
  if (v.tdvf) {
    const image = await io.readFile(v.tdvf);
    const r = computeMrtd(image, order, v.tdvf);
    mrtd = { value: hex(r.mrtd), pageOrder: order, sections: sectionsJson(r) };
    if (quote) {
      mrtd.quote = hex(quote.mrTd);
      mrtd.matches = mrtd.quote === mrtd.value;
      if (!mrtd.matches) {
        const other: PageOrder = order === 'single-pass' ? 'two-pass' : 'single-pass';
        const hint = hex(computeMrtd(image, other, v.tdvf).mrtd) === mrtd.quote
          ? `; it matches with --page-order ${other} (the VMM adds pages in that order)`
          : '; this TD was not launched from this firmware image (or with another VMM layout)';
        findings.push(`MRTD: computed from ${v.tdvf} (${order}) ${mrtd.value}, the quote has ${mrtd.quote}${hint}`);
      }
    }
    const cfv = r.sections.find((s) => s.typeName === 'CFV');
    if (cfv && cfv.rawDataSize > 0) inputs.push({ name: 'TDVF configuration volume (CFV)', optional: true, digests: [{ label: 'SHA-384 of the CFV', sha384: sha384(image.subarray(cfv.dataOffset, cfv.dataOffset + cfv.rawDataSize)) }] });
  }

  let log: LogExplanation | undefined;
  if (v['ccel-log']) {
    const logBytes = await io.readFile(v['ccel-log']);
    if (v['ccel-table']) {
      const t = parseCcelTable(await io.readFile(v['ccel-table']));
      if (t.ccType !== 2) throw configError('MEASURE_INPUT_INVALID', `${v['ccel-table']}: CC type ${t.ccType} is not TDX (2)`);
      if (BigInt(logBytes.length) > t.laml) throw configError('MEASURE_INPUT_INVALID', `${v['ccel-log']} is longer than the table's log area (LAML ${t.laml})`);
    }
    if (v.kernel) inputs.push(fileInput('kernel', await io.readFile(v.kernel)));
    if (v.initrd) inputs.push(fileInput('initrd', await io.readFile(v.initrd)));
    if (v.cmdline !== undefined) inputs.push(cmdlineInput(v.cmdline));
    for (const f of acpi) inputs.push(fileInput(`ACPI ${basename(f)}`, await io.readFile(f)));
    for (const f of efiApps) inputs.push(fileInput(`EFI application ${basename(f)}`, await io.readFile(f)));
    log = explainEventLog(parseEventLog(logBytes), inputs, quote?.rtmr);
    findings.push(...log.findings);
  }

  if (v.json) io.out(`${JSON.stringify({ ...(mrtd ? { mrtd } : {}), ...(log ? { rtmr: log.registers, inputs: log.inputs } : {}), findings, consistent: findings.length === 0 }, null, 2)}\n`);
  else io.out(text(mrtd, log, findings));
  return findings.length === 0 ? 0 : 1;
}

function text(mrtd: MrtdOut | undefined, log: LogExplanation | undefined, findings: readonly string[]): string {
  const l: string[] = [];
  const cmp = (matches: boolean | undefined) => (matches === undefined ? '' : matches ? '  [quote: match]' : '  [quote: DIFFERS]');
  if (mrtd) l.push(`MRTD   ${mrtd.value}${cmp(mrtd.matches)}  (TDVF, ${mrtd.pageOrder})`);
  for (const r of log?.registers ?? []) {
    const n = (s: string) => r.events.filter((e) => e.source === s).length;
    l.push(`RTMR${r.index}  ${r.replayed}${cmp(r.matches)}  ${r.events.length} events: ${n('data')} from their data, ${n('input')} from inputs, ${r.unexplained} from the log alone`);
    for (const e of r.events) {
      const src = e.source === 'log' ? 'log' : `${e.source}: ${e.by}`;
      l.push(`  #${String(e.seq).padEnd(3)} ${e.type.padEnd(33)} ${e.dataMismatch ? 'INCONSISTENT ' : ''}${src.padEnd(44)} ${e.description.slice(0, 70)}`);
    }
  }
  for (const i of log?.inputs ?? []) l.push(`input ${i.name}: ${i.foundAt.length ? `found at ${i.foundAt.join(', ')}` : 'NOT FOUND'}`);
  l.push(findings.length ? `findings:\n${findings.map((f) => `  ${f}`).join('\n')}` : 'consistent: every comparison holds');
  return `${l.join('\n')}\n`;
}
