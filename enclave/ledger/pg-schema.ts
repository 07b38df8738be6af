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
 *
 * `gm_append` commits a group of receipts in one statement (so one round trip and one WAL flush): it moves the chain
 * head from the seq the replica expects (SQLSTATE GM001 when another writer moved it), frees the holds (GM002 with
 * the ids of those already reaped), and inserts offers, receipts and debit entries and moves balances and worker
 * credit, each account and worker once per group.
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
CREATE OR REPLACE FUNCTION gm_append(p_chain text, p_from bigint, p_to bigint, p_head bytea, p_holds bigint[],
  p_seqs bigint[], p_bodies bytea[], p_entry_ids bytea[], p_entry_bodies bytea[],
  p_accounts bytea[], p_totals bigint[], p_helds bigint[],
  p_workers bytea[], p_worker_costs bigint[], p_worker_helds bigint[],
  p_offer_ids bytea[], p_offer_bodies bytea[], p_key bytea, p_key_seq bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  missing bigint[];
  w record;
BEGIN
  UPDATE gm_chains SET seq = p_to, head = p_head WHERE id = p_chain AND seq = p_from;
  IF NOT FOUND THEN RAISE EXCEPTION 'chain % moved' , p_chain USING ERRCODE = 'GM001'; END IF;
  WITH d AS (DELETE FROM gm_holds WHERE id = ANY(p_holds) RETURNING id)
    SELECT array_agg(h) INTO missing FROM unnest(p_holds) AS h WHERE h NOT IN (SELECT id FROM d);
  IF missing IS NOT NULL THEN RAISE EXCEPTION '%', array_to_string(missing, ',') USING ERRCODE = 'GM002'; END IF;
  INSERT INTO gm_offers (id, signed) SELECT * FROM unnest(p_offer_ids, p_offer_bodies) ON CONFLICT (id) DO NOTHING;
  IF p_key IS NOT NULL THEN
    INSERT INTO gm_receipt_keys (public_key, chain, first_seq) VALUES (p_key, p_chain, p_key_seq) ON CONFLICT (public_key) DO NOTHING;
  END IF;
  INSERT INTO gm_receipts (chain, seq, body) SELECT p_chain, u.s, u.b FROM unnest(p_seqs, p_bodies) AS u(s, b);
  INSERT INTO gm_entries (id, receipt_chain, receipt_seq, body) SELECT u.i, p_chain, u.s, u.b FROM unnest(p_entry_ids, p_seqs, p_entry_bodies) AS u(i, s, b);
  UPDATE gm_accounts a SET balance = a.balance - u.t, reserved = a.reserved - u.h FROM unnest(p_accounts, p_totals, p_helds) AS u(id, t, h) WHERE a.id = u.id;
  FOR w IN SELECT * FROM unnest(p_workers, p_worker_costs, p_worker_helds) AS u(t, c, h) LOOP
    INSERT INTO gm_worker_credit (token) VALUES (w.t) ON CONFLICT (token) DO NOTHING;
    UPDATE gm_worker_credit SET owed = owed + w.c, reserved = reserved - w.h WHERE token = w.t;
  END LOOP;
END $$;
CREATE OR REPLACE FUNCTION gm_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE OR REPLACE TRIGGER gm_receipts_append_only BEFORE UPDATE OR DELETE ON gm_receipts FOR EACH ROW EXECUTE FUNCTION gm_append_only();
CREATE OR REPLACE TRIGGER gm_entries_append_only BEFORE UPDATE OR DELETE ON gm_entries FOR EACH ROW EXECUTE FUNCTION gm_append_only();
CREATE OR REPLACE TRIGGER gm_offers_append_only BEFORE UPDATE OR DELETE ON gm_offers FOR EACH ROW EXECUTE FUNCTION gm_append_only();
CREATE OR REPLACE TRIGGER gm_payments_append_only BEFORE UPDATE OR DELETE ON gm_worker_payments FOR EACH ROW EXECUTE FUNCTION gm_append_only();
`;
