/**
 * `gm receipts verify FILE | --ledger PATH [--key HEX ...] [--json]`: signatures, chain, and each price
 * against its signed offer; for a ledger also the balance audit. Exit 0 verified, 1 rejected, 2 usage.
 * The checks are in enclave/ledger/verify.ts; this file only parses arguments and prints the report.
 */
import { fromHex } from '../../attestation/bytes.ts';
import { GmError } from '../../attestation/errors.ts';
import type { VerificationReport } from '../../attestation/report.ts';
import { formatReport, reportJson } from '../../client/cli/format.ts';
import type { Io } from '../../client/cli/io.ts';
import { verifyLedger, verifyReceiptFile } from './verify.ts';

const USAGE = 'usage: gm receipts verify FILE | --ledger PATH [--key HEX ...] [--json]\n';

export async function run(argv: string[], io: Io): Promise<number> {
  let ledger: string | undefined;
  let file: string | undefined;
  let json = false;
  const keys: Uint8Array[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--ledger' || a === '--key') {
      const v = argv[++i];
      if (v === undefined) return usage(io, `${a} needs a value`);
      if (a === '--ledger') ledger = v;
      else {
        const k = fromHex(v, '--key');
        if (k.length !== 32) return usage(io, '--key must be a 32-byte Ed25519 public key in hex');
        keys.push(k);
      }
    } else if (a === '--json') json = true;
    else if (a === '--help' || a === '-h') return usage(io);
    else if (a.startsWith('--')) return usage(io, `unknown option ${a}`);
    else if (file === undefined) file = a;
    else return usage(io, 'one FILE at most');
  }
  if ((ledger === undefined) === (file === undefined)) return usage(io, 'give a receipts FILE or --ledger PATH');
  let report: VerificationReport;
  try {
    report = ledger !== undefined ? await verifyLedger(ledger, keys.length ? keys : undefined) : await verifyReceiptFile(await io.readFile(file!), file!, keys.length ? keys : undefined);
  } catch (e) {
    if (!(e instanceof GmError) || !e.report) throw e;
    io.out(json ? reportJson(e.report) : formatReport(e.report));
    return e.kind === 'config' ? 2 : 1;
  }
  io.out(json ? reportJson(report) : formatReport(report));
  return report.verified ? 0 : 1;
}

function usage(io: Io, why?: string): number {
  if (why) io.err(`gm receipts verify: ${why}\n`);
  io.err(USAGE);
  return 2;
}
