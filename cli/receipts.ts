/**
 * Operator commands over a ledger file (docs/market.md "Payments and the ledger"): open accounts, credit them, record payouts to
 * workers, and export statements. Amounts on the command line are decimal currency units converted exactly to
 * integer micro-units (`5.25` USD = 5,250,000 µUSD); output amounts are micro-units.
 *
 *   gm receipts account create --ledger PATH --credit-key-file FILE --currency USD (--prepaid 5.00 | --credit-limit 100)
 *   (a PostgreSQL ledger: --ledger postgres://... --ledger-key-file FILE)
 *   gm receipts account deposit --ledger PATH --credit-key-file FILE --account ID --amount 2.50
 *   gm receipts account pay-worker --ledger PATH --worker ID --currency USD --amount 1.00
 *   gm receipts statement --ledger PATH (--account ID | --worker ID) [--json] [--now ISO]
 *   (each also reaches a PostgreSQL ledger: --ledger postgres://... --ledger-key-file FILE)
 *
 * `create` prints the new API key once; the ledger keeps only its hash. Exit 0 done, 2 usage or configuration.
 */
import { stat } from 'node:fs/promises';
import { fromHex } from '../attestation/bytes.ts';
import { configError } from '../attestation/errors.ts';
import type { ReceiptSigner } from '../protocol/receipt.ts';
import { signerFromSeed } from '../enclave/ledger/signer.ts';
import type { ReceiptsAccountFlags, ReceiptsStatementFlags } from './commands.ts';
import type { Io } from './io.ts';
import { decimalToUnits } from '../enclave/market/constraints.ts';
import { currencyDecimals } from '../protocol/offer-terms.ts';
import { readLedgerKeyFile } from '../enclave/ledger/key-file.ts';
import type { Ledger } from '../enclave/ledger/ledger.ts';
import { isPostgresUrl, openLedger } from '../enclave/ledger/open.ts';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { postgresStatements } from '../enclave/ledger/verify-postgres.ts';
import { accountStatement, accountStatementCsv, sqliteStatements, statementJson, workerStatement, workerStatementCsv } from '../enclave/ledger/statements.ts';

/** The settlement unit printed after an integer amount: rao for TAO, µUSD style otherwise. */
const unitOf = (currency: string): string => (currency === 'TAO' ? 'rao' : `µ${currency}`);

/** A decimal amount of `currency` in its settlement units (micro-units; rao for TAO). */
const amount = (v: string | undefined, what: string, currency: string): bigint => {
  if (v === undefined) throw configError('USAGE', `${what} is required`);
  try {
    return decimalToUnits(v, what, currencyDecimals(currency));
  } catch (e) {
    throw configError('USAGE', `${what} must be a non-negative decimal amount`, { cause: e });
  }
};

/** Both ledgers: a PostgreSQL one needs the ledger key to open (and seal) its columns; a file must not be given one. */
async function ledgerKeyFor(f: { ledger?: string | undefined; 'ledger-key-file'?: string | undefined }, io: Io): Promise<Uint8Array | undefined> {
  if (!f.ledger) throw configError('USAGE', '--ledger PATH is required');
  if (!isPostgresUrl(f.ledger)) {
    if (f['ledger-key-file'] !== undefined) throw configError('USAGE', '--ledger-key-file applies to --ledger postgres://');
    return undefined;
  }
  if (f['ledger-key-file'] === undefined) throw configError('USAGE', '--ledger postgres:// needs --ledger-key-file FILE (the ledger key seals its columns)');
  return readLedgerKeyFile(f['ledger-key-file'], io);
}

async function openForAccounts(f: ReceiptsAccountFlags, creditSigner: ReceiptSigner | undefined, io: Io): Promise<Ledger> {
  const opts = creditSigner ? { creditSigner } : {};
  const ledgerKey = await ledgerKeyFor(f, io);
  return ledgerKey ? openLedger(f.ledger!, { ...opts, ledgerKey }) : SqliteLedger.open(f.ledger!, opts);
}

/**
 * The operator's credit key, which signs every opening and deposit so an audit can tell them from forged rows.
 * Like every secret here it never comes from argv, and its file must be the owner's alone.
 */
async function creditSigner(file: string | undefined, io: Io): Promise<ReceiptSigner> {
  if (file === undefined) throw configError('USAGE', 'create and deposit need --credit-key-file FILE (the operator credit key that signs them)');
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (e) {
    throw configError('FILE_UNREADABLE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  if ((mode & 0o077) !== 0) throw configError('CREDIT_KEY_FILE_EXPOSED', `${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}): chmod 600 it`);
  const text = new TextDecoder().decode(await io.readFile(file)).trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw configError('USAGE', `the credit key in ${file} must be 64 hex digits (a 32-byte Ed25519 seed)`);
  return signerFromSeed(fromHex(text));
}

/** `gm receipts account ...` */
export async function runAccount(f: ReceiptsAccountFlags, action: string, io: Io): Promise<number> {
  if (!['create', 'deposit', 'pay-worker'].includes(action)) throw configError('USAGE', `unknown action ${action}: create, deposit or pay-worker`);
  const ledger = await openForAccounts(f, action === 'pay-worker' ? undefined : await creditSigner(f['credit-key-file'], io), io);
  const print = (text: string, obj: Record<string, unknown>) => io.out(f.json ? `${JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n` : text);
  try {
    const now = Date.now();
    switch (action) {
      case 'create': {
        const currency = f.currency ?? 'USD';
        if ((f.prepaid === undefined) === (f['credit-limit'] === undefined)) throw configError('USAGE', 'give --prepaid AMOUNT or --credit-limit AMOUNT');
        const spec = f.prepaid !== undefined ? { currency, prepaid: amount(f.prepaid, '--prepaid', currency) } : { currency, creditLimit: amount(f['credit-limit'], '--credit-limit', currency) };
        const { account, apiKey } = await ledger.createAccount(spec, now);
        print(`account ${account.id} (${account.kind}, ${account.currency}): balance ${account.balance} ${unitOf(account.currency)}, credit limit ${account.creditLimit} ${unitOf(account.currency)}\napi key (shown once, only its hash is kept): ${apiKey}\n`,
          { account: account.id, kind: account.kind, currency: account.currency, balance: account.balance, creditLimit: account.creditLimit, apiKey });
        return 0;
      }
      case 'deposit': {
        if (!f.account) throw configError('USAGE', '--account ID is required');
        const a = await ledger.deposit(f.account, amount(f.amount, '--amount', (await ledger.account(f.account)).currency), now);
        print(`account ${a.id}: balance ${a.balance} ${unitOf(a.currency)}\n`, { account: a.id, currency: a.currency, balance: a.balance });
        return 0;
      }
      case 'pay-worker': {
        if (!f.worker || !f.currency) throw configError('USAGE', '--worker ID and --currency are required');
        const paid = amount(f.amount, '--amount', f.currency);
        await ledger.payWorker(f.worker, f.currency, paid, now);
        print(`recorded payout to ${f.worker}\n`, { worker: f.worker, currency: f.currency, amount: paid });
        return 0;
      }
      default:
        throw configError('USAGE', `unknown action ${action}`);
    }
  } finally {
    await ledger.close();
  }
}

/** `gm receipts statement ...` */
export async function runStatement(f: ReceiptsStatementFlags, io: Io): Promise<number> {
  if ((f.account === undefined) === (f.worker === undefined)) throw configError('USAGE', 'give --account ID or --worker ID (one of them)');
  const now = f.now ? Date.parse(f.now) : Date.now();
  if (!Number.isFinite(now)) throw configError('USAGE', '--now must be an ISO date');
  const ledgerKey = await ledgerKeyFor(f, io);
  const file = ledgerKey ? undefined : SqliteLedger.open(f.ledger!, {});
  try {
    const source = file ? sqliteStatements(file) : await postgresStatements(f.ledger!, ledgerKey!);
    if (f.account) {
      const s = accountStatement(source, f.account);
      io.out(f.json ? statementJson(s) : accountStatementCsv(s));
    } else {
      const s = workerStatement(source, f.worker!, now);
      io.out(f.json ? statementJson(s) : workerStatementCsv(s));
    }
    return 0;
  } finally {
    await file?.close();
  }
}
