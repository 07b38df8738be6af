/**
 * `gm receipts verify FILE | --ledger PATH|postgres://URL [--ledger-key-file FILE] [--key HEX ...] [--credit-key HEX ...]
 *  [--head FILE|URL] [--json]`:
 * signatures, chain, and each price against its signed offer; for a ledger also every row and credit against its
 * signed record, the chain against a signed head, and the balance audit. Exit 0 verified, 1 rejected, 2 usage.
 * The checks are in enclave/ledger/verify.ts (verify-postgres.ts for PostgreSQL); this file only prints the report.
 */
import { fromHex } from '../attestation/bytes.ts';
import { configError, GmError } from '../attestation/errors.ts';
import type { VerificationReport } from '../attestation/report.ts';
import type { ReceiptsVerifyFlags } from './commands.ts';
import { formatReport, reportJson } from './format.ts';
import type { Io } from './io.ts';
import { isPostgresUrl } from '../enclave/ledger/open.ts';
import { verifyLedger, verifyReceiptFile } from '../enclave/ledger/verify.ts';
import { verifyPostgresLedger } from '../enclave/ledger/verify-postgres.ts';
import { readLedgerKeyFile } from '../enclave/ledger/key-file.ts';

/** The signed head from a saved file, or fetched from the enclave (it is signed: the transport need not be trusted). */
async function readHead(src: string, io: Io): Promise<Uint8Array> {
  if (!/^https?:\/\//.test(src)) return io.readFile(src);
  let r: Response;
  try {
    r = await fetch(src, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    throw configError('HEAD_UNREACHABLE', `cannot fetch the chain head from ${src}`, { cause: e });
  }
  if (!r.ok) throw configError('HEAD_UNREACHABLE', `${src} answered ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

export async function run(f: ReceiptsVerifyFlags, file: string | undefined, io: Io): Promise<number> {
  const ledger = f.ledger;
  const json = f.json === true;
  if ((ledger === undefined) === (file === undefined)) throw configError('USAGE', 'give a receipts FILE or --ledger PATH');
  const keys = (f.key ?? []).map((k) => {
    const b = fromHex(k, '--key');
    if (b.length !== 32) throw configError('USAGE', '--key must be a 32-byte Ed25519 public key in hex');
    return b;
  });
  const creditKeys = (f['credit-key'] ?? []).map((k) => {
    const b = fromHex(k, '--credit-key');
    if (b.length !== 32) throw configError('USAGE', '--credit-key must be a 32-byte Ed25519 public key in hex');
    return b;
  });
  if (ledger === undefined && (f.head !== undefined || creditKeys.length)) throw configError('USAGE', '--head and --credit-key apply to --ledger');
  const postgres = ledger !== undefined && isPostgresUrl(ledger);
  if (postgres !== (f['ledger-key-file'] !== undefined)) throw configError('USAGE', postgres ? '--ledger postgres:// needs --ledger-key-file FILE (the ledger key opens its sealed columns)' : '--ledger-key-file applies to --ledger postgres://');
  const ledgerKey = postgres ? await readLedgerKeyFile(f['ledger-key-file']!, io) : undefined;
  const head = f.head === undefined ? undefined : await readHead(f.head, io);
  let report: VerificationReport;
  try {
    const opts = { ...(creditKeys.length ? { creditKeys } : {}), ...(head ? { head } : {}) };
    report = ledger !== undefined
      ? ledgerKey
        ? await verifyPostgresLedger(ledger, ledgerKey, keys.length ? keys : undefined, opts)
        : await verifyLedger(ledger, keys.length ? keys : undefined, opts)
      : await verifyReceiptFile(await io.readFile(file!), file!, keys.length ? keys : undefined);
  } catch (e) {
    if (!(e instanceof GmError) || !e.report) throw e;
    io.out(json ? reportJson(e.report) : formatReport(e.report));
    return e.kind === 'config' ? 2 : 1;
  }
  io.out(json ? reportJson(report) : formatReport(report));
  return report.verified ? 0 : 1;
}
