/**
 * Reads a ledger key file (docs/operator.md "A shared ledger on PostgreSQL"): 64 hex digits, in a file only its
 * owner can read. The key opens every sealed column of a PostgreSQL ledger, so like every secret here it never comes
 * from argv.
 */
import { stat } from 'node:fs/promises';
import { configError } from '../../attestation/errors.ts';
import { parseLedgerKey } from './postgres.ts';

export async function readLedgerKeyFile(file: string, io: { readFile(path: string): Promise<Uint8Array> }): Promise<Uint8Array> {
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (e) {
    throw configError('FILE_UNREADABLE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  if ((mode & 0o077) !== 0) throw configError('LEDGER_KEY_FILE_EXPOSED', `${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}): chmod 600 it`);
  return parseLedgerKey(new TextDecoder().decode(await io.readFile(file)));
}
