/**
 * The payments ledger's one interface (docs/design.md §6 "The ledger"; docs/market.md "Payments and the ledger"),
 * implemented on SQLite for one machine (enclave/ledger/sqlite.ts, `--ledger FILE`) and on PostgreSQL for replicas
 * sharing accounts (enclave/ledger/postgres.ts, `--ledger postgres://...`).
 *
 * Every implementation keeps the same guarantees:
 *  - accounts are found by API key (never stored in clear) and hold integer micro-unit balances;
 *  - a hold is a reservation in the database: `reserved` grows in one conditional UPDATE only while the account's
 *    balance + credit limit − reserved covers it, so no account passes its limit however many processes or
 *    replicas spend from it at once; a hold carries an expiry, and the holds of a crashed process are reaped;
 *  - a settle appends the signed receipt to this instance's chain (`chainId`: seq 1, 2, ... each linking to the
 *    last by hash), writes the debit, moves the balance and frees the hold in one transaction; settles arriving while
 *    a commit is in flight are committed together (enclave/ledger/group-commit.ts), and none resolves before its
 *    transaction committed;
 *  - a database that cannot be reached gives LEDGER_UNAVAILABLE (kind `unavailable`, a 503), never a crash.
 * Money: bigint micro-units throughout.
 */
import { hex, sha256, toBase64Url } from '../../attestation/bytes.ts';
import { configError, rejected } from '../../attestation/errors.ts';
import type { PaymentTerms, VerifiedOffer } from '../../protocol/offer.ts';
import type { ReceiptCommitments, ReceiptSigner, ReceiptStatus, SignedReceipt } from '../../protocol/receipt.ts';

export type AccountKind = 'prepaid' | 'postpaid';

export interface Account {
  readonly id: string;
  readonly currency: string;
  readonly kind: AccountKind;
  /** Prepaid: remaining funds. Postpaid: minus what is owed (0 or negative). */
  readonly balance: bigint;
  /** Postpaid credit limit (0 for prepaid). Available = balance + creditLimit - reserved. */
  readonly creditLimit: bigint;
}

/** What a hold needs to know about the chosen offer (a market `Candidate` satisfies it). */
export interface HoldTarget {
  readonly entry: { readonly verified: VerifiedOffer };
  readonly worker: { readonly workerId: string; readonly evidenceDigest: Uint8Array; readonly sim: boolean };
  /** Upper bound of the charge: worker cost + fee at the request's token bounds. */
  readonly maxCost: bigint;
}

export interface Hold {
  readonly id: number;
  readonly account: string;
  readonly amount: bigint;
  readonly target: HoldTarget;
  readonly feeBasisPoints: number;
}

export interface Usage {
  readonly requestId: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Unix ms (the receipt time). */
  readonly now: number;
  /** True when the enclave itself runs on simulated evidence (the receipt's sim flag also covers the worker's). */
  readonly enclaveSim?: boolean;
  /** Set when the answer did not complete (the client cancelled, or the worker failed mid-stream): the receipt says so. */
  readonly status?: ReceiptStatus;
  /** Receipt fields the router commits to (protocol/receipt.ts ReceiptCommitments), signed as given. */
  readonly commitments?: ReceiptCommitments;
}

export type AccountSpec = { currency: string; prepaid: bigint } | { currency: string; creditLimit: bigint };

export interface LedgerOptions {
  /** The enclave's receipt key. Without one the ledger serves accounts and statements but cannot settle. */
  readonly signer?: ReceiptSigner;
  /**
   * Signs account openings and deposits (the operator's credit key; default the receipt key). Without either,
   * credits are written unsigned and `gm receipts verify --ledger` rejects them.
   */
  readonly creditSigner?: ReceiptSigner;
  /**
   * This instance's receipt chain (SQLite default "main"; PostgreSQL default "r-" and 8 bytes of the receipt key in
   * hex). Each process or replica appending to one database needs its own: the database refuses a second writer on a
   * chain whose head moved (LEDGER_CHAIN_CONFLICT).
   */
  readonly chainId?: string;
  /** How long a hold lives before any instance may reap it (default 1 hour: longer than any request may run). */
  readonly holdTtlMs?: number;
  /** Most receipts committed in one transaction (default 64). */
  readonly maxBatch?: number;
  /** The clock for hold expiry (default Date.now). */
  readonly now?: () => number;
  /**
   * The 32-byte ledger key that encrypts and authenticates the columns PostgreSQL must not read (PostgreSQL
   * only). Held in memory only; without it a new database gets a fresh key (one replica) and an existing one is
   * refused (LEDGER_KEY_REQUIRED).
   */
  readonly ledgerKey?: Uint8Array;
}

/** The ledger as the router, the CLI and the audit use it (SQLite or PostgreSQL). */
export interface Ledger {
  readonly backend: 'sqlite' | 'postgres';
  readonly chainId: string;
  /** This instance's chain head: the last committed receipt's seq and hash. */
  readonly head: { readonly seq: number; readonly hash: Uint8Array };
  /** Receipts and commits since open (receipts per commit shows how well settles group). */
  readonly commitStats: { readonly receipts: number; readonly commits: number };
  createAccount(spec: AccountSpec, now: number): Promise<{ account: Account; apiKey: string }>;
  /** Registers an externally issued API key (must be high-entropy: only a keyed or plain hash of it is stored). */
  addAccount(apiKey: string, spec: AccountSpec, now: number): Promise<Account>;
  account(id: string): Promise<Account>;
  /** The account an API key (from inside the encrypted request) belongs to; ACCOUNT_MISSING / ACCOUNT_UNKNOWN (401). */
  accountForKey(apiKey: string | undefined): Promise<Account>;
  /** Adds funds to a prepaid account, or records a payment that reduces a postpaid account's debt. */
  deposit(accountId: string, amount: bigint, now: number): Promise<Account>;
  /** Funds the account can still commit now: balance + credit limit − reserved. */
  available(accountId: string): Promise<bigint>;
  /**
   * Reserves the candidate's `maxCost` before dispatch. Codes (402-class, kind `rejected`):
   * PAYMENT_CURRENCY_MISMATCH, PAYMENT_INSUFFICIENT_FUNDS (prepaid), PAYMENT_CREDIT_LIMIT (postpaid).
   * WORKER_CREDIT_LIMIT (kind `unavailable`, try the next candidate) when a postpaid offer's credit is used up.
   */
  authorize(account: Account, target: HoldTarget, feeBasisPoints: number): Promise<Hold>;
  /** Drops a hold without charging (the request failed before the worker produced anything billable). */
  release(hold: Hold): Promise<void>;
  /**
   * Charges the actual usage by the served offer's prices plus the fee, signs the receipt and commits receipt +
   * debit + balance + hold release in one transaction. Resolves only once that transaction committed.
   */
  settle(hold: Hold, usage: Usage, served?: HoldTarget): Promise<SignedReceipt>;
  /** Frees every hold whose expiry passed (a crashed instance's); returns how many. */
  reapExpired(now: number): Promise<number>;
  /** The chain head signed by the receipt key (enclave/ledger/records.ts). */
  signedHead(now: number): Promise<{ seq: number; signed: Uint8Array }>;
  /** Records a payout to a worker (settling what it is owed, or prepaying it under `prepaid` terms). */
  payWorker(workerId: string, currency: string, amount: bigint, now: number): Promise<void>;
  /** Worker cost of postpaid receipts minus payouts recorded for the worker in that currency. */
  workerOutstanding(workerId: string, currency: string): Promise<bigint>;
  /** The receipt public keys seen in this ledger (one per enclave boot). */
  receiptKeys(): Promise<Uint8Array[]>;
  close(): Promise<void>;
}

const KEY_CONTEXT = new TextEncoder().encode('gm-api-key-v1\0');
export const MAX_AMOUNT = (1n << 62n) - 1n;
export const DEFAULT_CHAIN = 'main';
export const DEFAULT_HOLD_TTL_MS = 3_600_000;

/** SHA-256 of the domain-separated API key: the only form in which keys are compared. */
export async function apiKeyHash(apiKey: string): Promise<Uint8Array> {
  const k = new TextEncoder().encode(apiKey);
  const b = new Uint8Array(KEY_CONTEXT.length + k.length);
  b.set(KEY_CONTEXT);
  b.set(k, KEY_CONTEXT.length);
  return sha256(b);
}

/** A fresh 256-bit API key, base64url. */
export function newApiKey(): string {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  return `gm_${toBase64Url(raw)}`;
}

/** The checked fields of a new account: its id is derived from the key hash (the audit recomputes it). */
export async function newAccountFields(apiKey: string, spec: AccountSpec): Promise<{ id: string; keyHash: Uint8Array; kind: AccountKind; currency: string; amount: bigint; limit: bigint }> {
  if (apiKey.length < 24) throw configError('ACCOUNT_KEY_WEAK', 'API keys must be at least 24 characters of random');
  if (!/^[A-Z0-9]{1,12}$/.test(spec.currency)) throw configError('ACCOUNT_INVALID', 'currency must be 1..12 of [A-Z0-9]');
  const keyHash = await apiKeyHash(apiKey);
  const prepaid = 'prepaid' in spec;
  const amount = prepaid ? spec.prepaid : 0n;
  const limit = prepaid ? 0n : spec.creditLimit;
  if (amount < 0n || limit < 0n || amount > MAX_AMOUNT || limit > MAX_AMOUNT) throw configError('ACCOUNT_INVALID', 'amounts must be non-negative micro-units below 2^62');
  return { id: `acct_${hex(keyHash.subarray(0, 8))}`, keyHash, kind: prepaid ? 'prepaid' : 'postpaid', currency: spec.currency, amount, limit };
}

export function checkChainId(id: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw configError('LEDGER_CHAIN_INVALID', 'a chain id is 1..64 of [A-Za-z0-9._-]');
  return id;
}

export function checkPositive(amount: bigint, what: string): void {
  if (amount <= 0n || amount > MAX_AMOUNT) throw configError('ACCOUNT_INVALID', `${what} must be positive micro-units`);
}

/** The 402 an account gives when a hold does not fit. */
export function notCovered(a: Account, need: bigint, available: bigint): Error {
  const left = available > 0n ? available : 0n;
  return a.kind === 'prepaid'
    ? rejected('PAYMENT_INSUFFICIENT_FUNDS', `prepaid balance cannot cover this request (up to ${need} micro-${a.currency} needed, ${left} available)`)
    : rejected('PAYMENT_CREDIT_LIMIT', `postpaid credit limit reached (up to ${need} micro-${a.currency} needed, ${left} available)`);
}

export const termsText = (t: PaymentTerms): string => t.kind;
export const periodOf = (t: PaymentTerms): number => (t.kind === 'postpaid' ? t.settlementPeriodSeconds : 0);
