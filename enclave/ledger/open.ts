/**
 * Opens the ledger a location names (docs/operator.md "The ledger"): a PostgreSQL URL (`postgres://` or
 * `postgresql://`) for replicas sharing one database, anything else a SQLite file (":memory:" for tests).
 */
import type { Ledger, LedgerOptions } from './ledger.ts';
import { PostgresLedger } from './postgres.ts';
import { SqliteLedger } from './sqlite.ts';

export const isPostgresUrl = (location: string): boolean => /^postgres(ql)?:\/\//i.test(location);

export async function openLedger(location: string, opts: LedgerOptions): Promise<Ledger> {
  return isPostgresUrl(location) ? PostgresLedger.open(location, opts) : SqliteLedger.open(location, opts);
}
