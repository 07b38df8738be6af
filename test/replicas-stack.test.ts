/**
 * Four sim enclave replicas as processes on loopback behind one relay, one shared ledger (a receipt chain per
 * replica), two workers registered with every replica: requests spread across the replicas by key id; 200 concurrent
 * requests against an account whose balance covers 50 give exactly 50 answers and 150 refusals (402), with debits =
 * receipts = the balance change; and a replica SIGKILLed during a burst loses no receipt a client received.
 */
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { createClient, type GmClient } from '../client/index.ts';
import { MODEL, type ReplicaStack, startReplicaStack } from './stack/replicas.ts';

const MAX_TOKENS = 8;
/** 1 USD per million output tokens: a request of 8 output tokens costs 8 µUSD, exactly its reserved bound. */
const PRICE = 1_000_000n;
const COST = 8n;

let s: ReplicaStack;
beforeAll(async () => {
  s = await startReplicaStack({ n: 4, pricePerMOutput: PRICE });
}, 120_000);
afterAll(async () => {
  await s?.stop();
});

const client = () => createClient({ url: s.replicas[0]!.url, relay: s.host.url, allowSim: true, fetch: s.fetch });
const ask = (c: GmClient, apiKey: string) =>
  c.fetch(`${c.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ model: MODEL, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: 'hello' }] }),
  });

function db() {
  return new DatabaseSync(s.ledgerPath, { readOnly: true });
}

describe('replicas behind one relay, one ledger', () => {
  it('verifies all four replicas and spreads requests across them by key id', async () => {
    expect(s.host.replicas!.replicas.map((r) => r.status.state)).toEqual(['open', 'open', 'open', 'open']);
    const c = await client();
    const offered = s.host.replicas!.offered().length;
    expect(c.replicas).toHaveLength(offered);
    expect(offered).toBeGreaterThanOrEqual(3); // one replica may be shadowed by a key id collision (random ids)
    const acct = await s.account(1_000_000n);
    for (let i = 0; i < 4 * offered; i++) {
      const r = await ask(c, acct.apiKey);
      expect(r.status).toBe(200);
      await r.arrayBuffer();
    }
    const d = db();
    const perChain = d.prepare('SELECT chain, count(*) AS n FROM receipts WHERE account = ? GROUP BY chain ORDER BY chain').all(acct.id) as { chain: string; n: number }[];
    d.close();
    // Round robin over the verified set: each offered replica served exactly four.
    expect(perChain.map((x) => Number(x.n))).toEqual(Array(offered).fill(4));
    const routed = new Set(c.replicas.map((r) => s.host.replicas!.routeFor(r.keyId)));
    expect(routed.size).toBe(offered);
  });

  it('200 concurrent requests against a balance for 50: exactly 50 answered, 150 refused with 402, debits = receipts = balance change', async () => {
    const c = await client();
    const acct = await s.account(50n * COST);
    const results = await Promise.all(Array.from({ length: 200 }, async () => {
      const r = await ask(c, acct.apiKey);
      await r.arrayBuffer();
      return r.status;
    }));
    expect(results.filter((x) => x === 200)).toHaveLength(50);
    expect(results.filter((x) => x === 402)).toHaveLength(150);
    const d = db();
    const receipts = d.prepare('SELECT count(*) AS n, coalesce(sum(total), 0) AS t FROM receipts WHERE account = ?').get(acct.id) as { n: number; t: number };
    const debits = d.prepare("SELECT coalesce(sum(-amount), 0) AS t FROM entries WHERE account = ? AND kind = 'debit'").get(acct.id) as { t: number };
    const balance = d.prepare('SELECT balance, reserved FROM accounts WHERE id = ?').get(acct.id) as { balance: number; reserved: number };
    d.close();
    expect(Number(receipts.n)).toBe(50);
    expect(BigInt(receipts.t)).toBe(50n * COST);
    expect(BigInt(debits.t)).toBe(50n * COST);
    expect(BigInt(balance.balance)).toBe(0n);
    expect(BigInt(balance.reserved)).toBe(0n);
  });

  it('a replica SIGKILLed during a burst loses no receipt a client received', async () => {
    const c = await client();
    const acct = await s.account(1_000_000n);
    const victim = s.replicas[1]!;
    const got: string[] = [];
    // Killed once the burst is under way: after the 20th receipt reached the client, with requests in flight.
    const c2 = { ...c, fetch: c.fetchWith((r) => {
      got.push(hex(r.hash));
      if (got.length === 20) victim.proc.kill('SIGKILL');
    }) };
    let n = 0;
    let failed = 0;
    const burst = Array.from({ length: 160 }, async () => {
      try {
        const r = await ask(c2, acct.apiKey);
        await r.arrayBuffer();
        if (r.status === 200) n++;
      } catch {
        failed++; // in flight to the killed replica, or sent to it afterwards: no receipt reached the client
      }
    });
    await Promise.all(burst);
    await victim.exited;
    expect(n).toBeGreaterThan(20);
    expect(got).toHaveLength(n);
    expect(n + failed).toBe(160);
    const d = db();
    const stored = new Set((d.prepare('SELECT hash FROM receipts WHERE account = ?').all(acct.id) as { hash: Uint8Array }[]).map((x) => hex(new Uint8Array(x.hash))));
    const debits = d.prepare("SELECT count(*) AS n FROM entries WHERE account = ? AND kind = 'debit'").get(acct.id) as { n: number };
    d.close();
    for (const h of got) expect(stored.has(h)).toBe(true);
    expect(Number(debits.n)).toBe(stored.size);
  });
});
