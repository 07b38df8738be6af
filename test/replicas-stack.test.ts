/**
 * Four sim enclave replicas (`gm enclave --tee sim --ledger postgres://... --join URL` processes) on loopback behind
 * one relay, one real PostgreSQL ledger shared under a ledger key each replica obtained by mutual attestation, two
 * workers registered with every replica: requests spread across the replicas by key id; 200 concurrent requests
 * against an account whose balance covers 50 give exactly 50 answers and 150 refusals (402), with debits = receipts =
 * the balance change (the ledger audit); a replica SIGKILLed during a burst loses no receipt a client received; and
 * a dump of the database holds no account id, model name or prompt byte in clear.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { createClient, type GmClient } from '../client/index.ts';
import pg from 'pg';
import { LedgerKey } from '../enclave/ledger/columns.ts';
import { verifyPostgresLedger } from '../enclave/ledger/verify-postgres.ts';
import { type PgServer, postgresBinDir, startPostgres } from './support/postgres.ts';
import { MODEL, type ReplicaStack, startReplicaStack } from './stack/replicas.ts';

const MAX_TOKENS = 8;
/** 1 USD per million output tokens: 8 output tokens cost 8 µUSD, exactly the reserved bound. */
const PRICE = 1_000_000n;
const COST = 8n;
const PROMPT = 'the patient in room 4417 is allergic to penicillin';

let pgServer: PgServer | undefined;
let s: ReplicaStack;
beforeAll(async () => {
  pgServer = await startPostgres();
  if (pgServer) s = await startReplicaStack(pgServer, { n: 4, pricePerMOutput: PRICE });
}, 180_000);
afterAll(async () => {
  await s?.stop();
  await pgServer?.close();
});

const client = () => createClient({ url: s.replicas[0]!.url, relay: s.host.url, allowSim: true, fetch: s.fetch });
const ask = (c: { fetch: GmClient['fetch']; baseURL: string }, apiKey: string) =>
  c.fetch(`${c.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ model: MODEL, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: PROMPT }] }),
  });
const delta = (before: Map<string, number>, after: Map<string, number>) =>
  [...after].map(([chain, n]) => [chain, n - (before.get(chain) ?? 0)] as const).filter(([, n]) => n > 0);

describe.skipIf(!process.env.GM_PG_URL && process.env.GM_REQUIRE_POSTGRES !== '1' && !postgresBinDir())('replicas behind one relay, one PostgreSQL ledger', () => {
  it('verifies all four replicas and spreads requests across them by key id, each replica on its own chain', async () => {
    expect(s.host.replicas!.replicas.map((r) => r.status.state)).toEqual(['open', 'open', 'open', 'open']);
    const c = await client();
    const offered = s.host.replicas!.offered().length;
    expect(offered).toBeGreaterThanOrEqual(3); // one replica may be shadowed by a key id collision (random ids)
    expect(c.replicas).toHaveLength(offered);
    expect(new Set(c.replicas.map((r) => s.host.replicas!.routeFor(r.keyId))).size).toBe(offered);
    const acct = await s.account(1_000_000n);
    const before = await s.receiptCounts();
    for (let i = 0; i < 4 * offered; i++) {
      const r = await ask(c, acct.apiKey);
      expect(r.status).toBe(200);
      await r.arrayBuffer();
    }
    // Round robin over the verified set: each offered replica appended exactly four receipts to its own chain.
    expect(delta(before, await s.receiptCounts()).map(([, n]) => n)).toEqual(Array(offered).fill(4));
    expect(c.receipts).toHaveLength(4 * offered);
    expect(await s.balance(acct.id)).toEqual({ balance: 1_000_000n - BigInt(4 * offered) * COST, reserved: 0n });
  });

  it('200 concurrent requests against a balance for 50: exactly 50 answered, 150 refused with 402, debits = receipts = balance change', async () => {
    const c = await client();
    const acct = await s.account(50n * COST);
    const before = await s.receiptCounts();
    const results = await Promise.all(Array.from({ length: 200 }, async () => {
      const r = await ask(c, acct.apiKey);
      await r.arrayBuffer();
      return r.status;
    }));
    expect(results.filter((x) => x === 200)).toHaveLength(50);
    expect(results.filter((x) => x === 402)).toHaveLength(150);
    expect(c.receipts).toHaveLength(50);
    expect(c.receipts.reduce((t, r) => t + r.receipt.total, 0n)).toBe(50n * COST);
    expect(delta(before, await s.receiptCounts()).reduce((t, [, n]) => t + n, 0)).toBe(50);
    expect(await s.balance(acct.id)).toEqual({ balance: 0n, reserved: 0n });
    // The audit with the ledger key: one debit per receipt of its total, every balance equal to its entries.
    const report = await verifyPostgresLedger(s.ledgerUrl, s.ledgerKey, undefined, { creditKeys: [s.creditKey, ...s.replicas.map((r) => r.receiptKey)] });
    expect(report.checks.filter((x) => x.status === 'fail')).toEqual([]);
    expect(report.verified).toBe(true);
  });

  it('a replica SIGKILLed during a burst loses no receipt a client received', async () => {
    const c = await client();
    const acct = await s.account(1_000_000n);
    const victim = s.replicas[1]!;
    const got: string[] = [];
    // Killed once the burst is under way: after the 20th receipt reached the client, with requests in flight.
    const c2 = { baseURL: c.baseURL, fetch: c.fetchWith((r) => {
      got.push(hex(r.signed));
      if (got.length === 20) victim.proc.kill('SIGKILL');
    }) };
    let ok = 0;
    let failed = 0;
    await Promise.all(Array.from({ length: 160 }, async () => {
      try {
        const r = await ask(c2, acct.apiKey);
        await r.arrayBuffer();
        if (r.status === 200) ok++;
      } catch {
        failed++; // in flight to the killed replica, or sent to it afterwards: no receipt reached the client
      }
    }));
    await victim.exited;
    expect(ok).toBeGreaterThan(20);
    expect(got).toHaveLength(ok);
    expect(ok + failed).toBe(160);
    // Every receipt a client holds is in the ledger, and the audit still balances (what the killed replica committed
    // is whole; what it had not committed was never sent).
    const report = await verifyPostgresLedger(s.ledgerUrl, s.ledgerKey, undefined, { creditKeys: [s.creditKey, ...s.replicas.map((r) => r.receiptKey)] });
    expect(report.verified).toBe(true);
    const stored = await storedSigned(s);
    for (const h of got) expect(stored.has(h)).toBe(true);
  });

  it('a dump of the database holds no account id, model name or prompt byte in clear', async () => {
    const acct = await s.account(1000n);
    const c = await client();
    expect((await ask(c, acct.apiKey)).status).toBe(200);
    const dump = pgServer!.dump(s.ledgerUrl);
    expect(dump.length).toBeGreaterThan(1000);
    for (const secret of [acct.id, acct.apiKey, MODEL, PROMPT, 'penicillin']) expect(dump).not.toContain(secret);
  });
});

/** Every stored receipt's signed bytes, opened with the ledger key (each sealed to its table, row and column). */
async function storedSigned(st: ReplicaStack): Promise<Set<string>> {
  const key = new LedgerKey(st.ledgerKey);
  const c = new pg.Client({ connectionString: st.ledgerUrl });
  await c.connect();
  try {
    const rows = (await c.query<{ chain: string; seq: string; body: Buffer }>('SELECT chain, seq::text AS seq, body FROM gm_receipts')).rows;
    return new Set(rows.map((r) => hex(key.open('gm_receipts', `${r.chain}/${r.seq}`, 'body', new Uint8Array(r.body)))));
  } finally {
    await c.end();
  }
}
