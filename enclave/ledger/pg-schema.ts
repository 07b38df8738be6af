/**
 * The ledger's PostgreSQL schema (docs/design.md §6 "The ledger", "What the database host sees").
 *
 * Every column that would tell the database host who used what is sealed under the ledger key
 * (enclave/ledger/columns.ts) or replaced by a keyed token. In clear, because PostgreSQL must compare or order them:
 *   gm_accounts.balance, credit_limit, reserved  the atomic debit and reservation are conditional UPDATEs on them;
 *   gm_holds.amount, expires_at, owner           a reservation is freed by amount, reaped by expiry, owned by a chain;
 *   gm_worker_credit.owed, reserved              a postpaid worker's credit limit is enforced the same way;
 *   gm_chains.id/seq, gm_receipts.chain/seq      appends are serialised on the chain head and read back in order;
 *   gm_receipt_keys.public_key                   receipt keys are public (attested) anyway.
 * Account rows are keyed by a token of the account id, worker credit rows by a token of worker id and currency.
 * Append-only tables refuse UPDATE and DELETE by trigger, as on SQLite.
 */
export const PG_SCHEMA_VERSION = '1';

export const PG_SCHEMA = `
CREATE TABLE IF NOT EXISTS gm_meta (key text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS gm_accounts (
  id bytea PRIMARY KEY,
  key_token bytea NOT NULL UNIQUE,
  sealed bytea NOT NULL,
  balance bigint NOT NULL,
  credit_limit bigint NOT NULL CHECK (credit_limit >= 0),
  reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  CONSTRAINT gm_accounts_floor CHECK (balance + credit_limit >= 0)
);
CREATE TABLE IF NOT EXISTS gm_holds (
  id bigserial PRIMARY KEY,
  account bytea NOT NULL REFERENCES gm_accounts(id),
  amount bigint NOT NULL CHECK (amount > 0),
  worker bytea,
  owner text NOT NULL,
  expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS gm_holds_expiry ON gm_holds (expires_at);
CREATE TABLE IF NOT EXISTS gm_worker_credit (
  token bytea PRIMARY KEY,
  owed bigint NOT NULL DEFAULT 0,
  reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);
CREATE TABLE IF NOT EXISTS gm_chains (id text PRIMARY KEY, seq bigint NOT NULL, head bytea NOT NULL);
CREATE TABLE IF NOT EXISTS gm_receipt_keys (public_key bytea PRIMARY KEY, chain text NOT NULL, first_seq bigint NOT NULL);
CREATE TABLE IF NOT EXISTS gm_offers (id bytea PRIMARY KEY, signed bytea NOT NULL);
CREATE TABLE IF NOT EXISTS gm_receipts (chain text NOT NULL, seq bigint NOT NULL, body bytea NOT NULL, PRIMARY KEY (chain, seq));
CREATE TABLE IF NOT EXISTS gm_entries (
  id bytea PRIMARY KEY,
  receipt_chain text,
  receipt_seq bigint,
  body bytea NOT NULL,
  UNIQUE (receipt_chain, receipt_seq)
);
CREATE TABLE IF NOT EXISTS gm_worker_payments (id bytea PRIMARY KEY, body bytea NOT NULL);
CREATE OR REPLACE FUNCTION gm_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE OR REPLACE TRIGGER gm_receipts_append_only BEFORE UPDATE OR DELETE ON gm_receipts FOR EACH ROW EXECUTE FUNCTION gm_append_only();
CREATE OR REPLACE TRIGGER gm_entries_append_only BEFORE UPDATE OR DELETE ON gm_entries FOR EACH ROW EXECUTE FUNCTION gm_append_only();
CREATE OR REPLACE TRIGGER gm_offers_append_only BEFORE UPDATE OR DELETE ON gm_offers FOR EACH ROW EXECUTE FUNCTION gm_append_only();
CREATE OR REPLACE TRIGGER gm_payments_append_only BEFORE UPDATE OR DELETE ON gm_worker_payments FOR EACH ROW EXECUTE FUNCTION gm_append_only();
`;
