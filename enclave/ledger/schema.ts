/**
 * The ledger's SQLite schema (docs/design.md §6 "Receipts go to an append-only ledger (node:sqlite by default)").
 *
 * Append-only is enforced by the database itself: triggers abort any UPDATE or DELETE on `receipts`, `entries`,
 * `credits`, `worker_payments` and `offers`. Every entry that is not a receipt's debit (an opening, a deposit, a
 * payment) has its signed credit record in `credits` (enclave/ledger/records.ts). The only mutable row is an account's running `balance`, which always equals the
 * sum of its `entries` (the audit checks it); every receipt has exactly one `debit` entry written in the same
 * transaction. Amounts are INTEGER micro-units of the row's currency (SQLite 64-bit signed; read back as bigint).
 * Account balances: available = balance + credit_limit (prepaid accounts have credit_limit 0; postpaid ones run
 * a negative balance down to -credit_limit, and never further: `accounts_floor` aborts a debit that would).
 *
 * Version 2: holds are rows (`holds`) and `accounts.reserved` their sum per account, so several processes on one
 * file share them; receipts are per chain (`chains` holds each chain's head, `receipts` is keyed by chain and seq).
 */
export const SCHEMA_VERSION = 2;

export const PRAGMAS = ['PRAGMA journal_mode = WAL', 'PRAGMA synchronous = FULL', 'PRAGMA foreign_keys = ON', 'PRAGMA busy_timeout = 5000'];

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS accounts (
  id TEXT PRIMARY KEY,
  key_hash BLOB NOT NULL UNIQUE,
  currency TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('prepaid', 'postpaid')),
  balance INTEGER NOT NULL,
  credit_limit INTEGER NOT NULL CHECK (credit_limit >= 0),
  reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS holds (
  id INTEGER PRIMARY KEY,
  account TEXT NOT NULL REFERENCES accounts(id),
  amount INTEGER NOT NULL CHECK (amount > 0),
  worker_id TEXT,
  owner TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS holds_expiry ON holds (expires_at);
CREATE TABLE IF NOT EXISTS chains (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  hash BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS offers (
  digest BLOB PRIMARY KEY,
  signed BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS receipt_keys (
  public_key BLOB PRIMARY KEY,
  chain TEXT NOT NULL,
  first_seq INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS receipts (
  chain TEXT NOT NULL,
  seq INTEGER NOT NULL,
  hash BLOB NOT NULL UNIQUE,
  prev BLOB NOT NULL,
  signed BLOB NOT NULL,
  offer_digest BLOB NOT NULL REFERENCES offers(digest),
  account TEXT NOT NULL REFERENCES accounts(id),
  worker_id TEXT NOT NULL,
  terms TEXT NOT NULL,
  settlement_period INTEGER NOT NULL,
  currency TEXT NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  worker_cost INTEGER NOT NULL,
  fee INTEGER NOT NULL,
  total INTEGER NOT NULL,
  time INTEGER NOT NULL,
  PRIMARY KEY (chain, seq)
) STRICT;
CREATE INDEX IF NOT EXISTS receipts_account ON receipts (account);
CREATE INDEX IF NOT EXISTS receipts_worker ON receipts (worker_id);
CREATE TABLE IF NOT EXISTS entries (
  id INTEGER PRIMARY KEY,
  account TEXT NOT NULL REFERENCES accounts(id),
  kind TEXT NOT NULL CHECK (kind IN ('open', 'deposit', 'debit', 'payment')),
  amount INTEGER NOT NULL,
  receipt_chain TEXT,
  receipt_seq INTEGER,
  at INTEGER NOT NULL,
  UNIQUE (receipt_chain, receipt_seq),
  FOREIGN KEY (receipt_chain, receipt_seq) REFERENCES receipts(chain, seq)
) STRICT;
CREATE INDEX IF NOT EXISTS entries_account ON entries (account);
CREATE TABLE IF NOT EXISTS worker_payments (
  id INTEGER PRIMARY KEY,
  worker_id TEXT NOT NULL,
  currency TEXT NOT NULL,
  amount INTEGER NOT NULL CHECK (amount > 0),
  at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS credits (
  entry_id INTEGER PRIMARY KEY REFERENCES entries(id),
  signed BLOB NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS credits_append_only_u BEFORE UPDATE ON credits BEGIN SELECT RAISE(ABORT, 'credits are append-only'); END;
CREATE TRIGGER IF NOT EXISTS credits_append_only_d BEFORE DELETE ON credits BEGIN SELECT RAISE(ABORT, 'credits are append-only'); END;
CREATE TRIGGER IF NOT EXISTS accounts_floor BEFORE UPDATE OF balance ON accounts WHEN NEW.balance < OLD.balance AND NEW.balance + NEW.credit_limit < 0 BEGIN SELECT RAISE(ABORT, 'a debit may not take an account below zero or beyond its credit limit'); END;
CREATE TRIGGER IF NOT EXISTS receipts_append_only_u BEFORE UPDATE ON receipts BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;
CREATE TRIGGER IF NOT EXISTS receipts_append_only_d BEFORE DELETE ON receipts BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_append_only_u BEFORE UPDATE ON entries BEGIN SELECT RAISE(ABORT, 'entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_append_only_d BEFORE DELETE ON entries BEGIN SELECT RAISE(ABORT, 'entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS offers_append_only_u BEFORE UPDATE ON offers BEGIN SELECT RAISE(ABORT, 'offers are append-only'); END;
CREATE TRIGGER IF NOT EXISTS offers_append_only_d BEFORE DELETE ON offers BEGIN SELECT RAISE(ABORT, 'offers are append-only'); END;
CREATE TRIGGER IF NOT EXISTS payments_append_only_u BEFORE UPDATE ON worker_payments BEGIN SELECT RAISE(ABORT, 'payments are append-only'); END;
CREATE TRIGGER IF NOT EXISTS payments_append_only_d BEFORE DELETE ON worker_payments BEGIN SELECT RAISE(ABORT, 'payments are append-only'); END;
`;
