/**
 * Operator commands over a ledger file (docs/market.md "Payments and the ledger"): open accounts, credit them, record payouts to
 * workers, and export statements. Amounts on the command line are decimal currency units converted exactly to
 * integer micro-units (`5.25` USD = 5,250,000 µUSD); output amounts are micro-units.
 *
 *   gm receipts account   --ledger PATH create --currency USD (--prepaid 5.00 | --credit-limit 100)
 *   gm receipts account   --ledger PATH deposit --account ID --amount 2.50
 *   gm receipts account   --ledger PATH pay-worker --worker ID --currency USD --amount 1.00
 *   gm receipts statement --ledger PATH (--account ID | --worker ID) [--json] [--now ISO]
 *
 * `create` prints the new API key once; the ledger keeps only its hash. Exit 0 done, 2 usage or configuration.
 */
import { configError } from '../../attestation/errors.ts';
import type { Io } from '../../client/cli/io.ts';
import { decimalToMicros } from '../market/constraints.ts';
import { Ledger } from './ledger.ts';
import { accountStatement, accountStatementCsv, statementJson, workerStatement, workerStatementCsv } from './statements.ts';

function flags(argv: string[], allowed: readonly string[], booleans: readonly string[] = []): { f: Record<string, string>; words: string[] } {
  const f: Record<string, string> = {};
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      words.push(a);
      continue;
    }
    const k = a.slice(2);
    if (booleans.includes(k)) f[k] = 'true';
    else if (allowed.includes(k) && argv[i + 1] !== undefined) f[k] = argv[++i]!;
    else throw configError('USAGE', `unknown option or missing value: ${a}`);
  }
  return { f, words };
}

const amount = (v: string | undefined, what: string): bigint => {
  if (v === undefined) throw configError('USAGE', `${what} is required`);
  try {
    return decimalToMicros(v, what);
  } catch (e) {
    throw configError('USAGE', `${what} must be a non-negative decimal amount`, { cause: e });
  }
};

function open(path: string | undefined): Ledger {
  if (!path) throw configError('USAGE', '--ledger PATH is required');
  return Ledger.open(path, {});
}

/** `gm receipts account ...` */
export async function runAccount(argv: string[], io: Io): Promise<number> {
  const { f, words } = flags(argv, ['ledger', 'currency', 'prepaid', 'credit-limit', 'account', 'amount', 'worker']);
  const ledger = open(f.ledger);
  try {
    const now = Date.now();
    switch (words[0]) {
      case 'create': {
        const currency = f.currency ?? 'USD';
        if ((f.prepaid === undefined) === (f['credit-limit'] === undefined)) throw configError('USAGE', 'give --prepaid AMOUNT or --credit-limit AMOUNT');
        const spec = f.prepaid !== undefined ? { currency, prepaid: amount(f.prepaid, '--prepaid') } : { currency, creditLimit: amount(f['credit-limit'], '--credit-limit') };
        const { account, apiKey } = await ledger.createAccount(spec, now);
        io.out(`account ${account.id} (${account.kind}, ${account.currency}): balance ${account.balance} µ${account.currency}, credit limit ${account.creditLimit} µ${account.currency}\napi key (shown once, only its hash is kept): ${apiKey}\n`);
        return 0;
      }
      case 'deposit': {
        if (!f.account) throw configError('USAGE', '--account ID is required');
        const a = ledger.deposit(f.account, amount(f.amount, '--amount'), now);
        io.out(`account ${a.id}: balance ${a.balance} µ${a.currency}\n`);
        return 0;
      }
      case 'pay-worker': {
        if (!f.worker || !f.currency) throw configError('USAGE', '--worker ID and --currency are required');
        ledger.payWorker(f.worker, f.currency, amount(f.amount, '--amount'), now);
        io.out(`recorded payout to ${f.worker}\n`);
        return 0;
      }
      default:
        throw configError('USAGE', 'gm receipts account --ledger PATH create|deposit|pay-worker ...');
    }
  } finally {
    ledger.close();
  }
}

/** `gm receipts statement ...` */
export async function runStatement(argv: string[], io: Io): Promise<number> {
  const { f, words } = flags(argv, ['ledger', 'account', 'worker', 'now'], ['json']);
  if (words.length > 0 || (f.account === undefined) === (f.worker === undefined)) throw configError('USAGE', 'gm receipts statement --ledger PATH (--account ID | --worker ID) [--json] [--now ISO]');
  const now = f.now ? Date.parse(f.now) : Date.now();
  if (!Number.isFinite(now)) throw configError('USAGE', '--now must be an ISO date');
  const ledger = open(f.ledger);
  try {
    if (f.account) {
      const s = accountStatement(ledger, f.account);
      io.out(f.json ? statementJson(s) : accountStatementCsv(s));
    } else {
      const s = workerStatement(ledger, f.worker!, now);
      io.out(f.json ? statementJson(s) : workerStatementCsv(s));
    }
    return 0;
  } finally {
    ledger.close();
  }
}
