/**
 * `gm receipts verify`, run in process through the real command table (cli/main.ts): a good ledger and a
 * good receipts file verify (exit 0); a tampered receipt, a broken chain, a price that differs from the signed
 * offer, or a receipt from an unpinned key are rejected (exit 1) with the exact code in the report.
 */
import { DatabaseSync } from 'node:sqlite';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { main } from '../cli/main.ts';
import { nodeIo } from '../cli/io.ts';
import { decodeDeterministic, encodeDeterministic } from '../protocol/market-cbor.ts';
import { signOffer } from '../protocol/offer.ts';
import { computeCharge, decodeReceipt, encodeReceipt, receiptEnvelope } from '../protocol/receipt.ts';
import { buildLedger } from './market-ledger.ts';
import { makeWorker, offerFor } from './market-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-receipts-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function gm(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { ...nodeIo, out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

/** Rewrites one column of one receipt row as an attacker with write access to the file would (triggers dropped). */
function tamper(path: string, sql: string, ...args: (Uint8Array | number)[]): void {
  const db = new DatabaseSync(path);
  db.exec('DROP TRIGGER IF EXISTS receipts_append_only_u; DROP TRIGGER IF EXISTS receipts_append_only_d; DROP TRIGGER IF EXISTS entries_append_only_d');
  db.prepare(sql).run(...args);
  db.close();
}

async function fresh(count = 5) {
  const path = join(dir, `ledger-${n++}.sqlite`);
  const built = await buildLedger(path, count);
  built.ledger.close();
  return { path, ...built };
}

describe('gm receipts verify --ledger', () => {
  it('verifies a good ledger (exit 0) and prints every check', async () => {
    const { path, receiptKey } = await fresh();
    const r = await gm('receipts', 'verify', '--ledger', path, '--key', hex(receiptKey));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/VERIFIED/);
    for (const id of ['receipts.decode+signature', 'receipts.key', 'receipts.chain', 'receipts.offer', 'ledger.audit']) expect(r.out).toContain(`PASS  ${id}`);
  });

  it('without --key says the key was not pinned (a skip, not a pass)', async () => {
    const { path } = await fresh(2);
    const r = await gm('receipts', 'verify', '--ledger', path, '--json');
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out) as { checks: { id: string; status: string }[] };
    expect(rep.checks.find((c) => c.id === 'receipts.key')!.status).toBe('skip');
  });

  it('a tampered receipt (fewer output tokens, charge recomputed to match) → exit 1, RECEIPT_SIGNATURE', async () => {
    const { path, receipts } = await fresh();
    const env = decodeDeterministic(receipts[2]!.signed) as { receipt: Uint8Array; sig: Uint8Array };
    const orig = decodeReceipt(env.receipt);
    const body = encodeReceipt({ ...orig, outputTokens: 1, ...computeCharge(orig, orig.feeBasisPoints, orig.inputTokens, 1) });
    tamper(path, 'UPDATE receipts SET signed = ? WHERE seq = 3', encodeDeterministic({ receipt: body, sig: env.sig }));
    const r = await gm('receipts', 'verify', '--ledger', path, '--json');
    expect(r.code).toBe(1);
    const rep = JSON.parse(r.out) as { verified: boolean; checks: { id: string; status: string; code?: string }[] };
    expect(rep.verified).toBe(false);
    expect(rep.checks.find((c) => c.status === 'fail')).toMatchObject({ id: 'receipts.decode+signature', code: 'RECEIPT_SIGNATURE' });
  });

  it('a deleted receipt (broken chain) → exit 1, RECEIPT_CHAIN_BROKEN', async () => {
    const { path } = await fresh();
    tamper(path, 'DELETE FROM entries WHERE receipt_seq = 3');
    tamper(path, 'DELETE FROM receipts WHERE seq = 3');
    const r = await gm('receipts', 'verify', '--ledger', path);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAIL {2}receipts\.chain/);
    expect(r.out).toContain('RECEIPT_CHAIN_BROKEN');
  });

  it('another enclave key than the pinned one → exit 1, RECEIPT_KEY_MISMATCH', async () => {
    const { path } = await fresh(1);
    const r = await gm('receipts', 'verify', '--ledger', path, '--key', '11'.repeat(32));
    expect(r.code).toBe(1);
    expect(r.out).toContain('RECEIPT_KEY_MISMATCH');
  });

  it('a balance moved behind the ledger’s back → exit 1, LEDGER_AUDIT', async () => {
    const { path } = await fresh(2);
    const db = new DatabaseSync(path);
    db.exec("UPDATE accounts SET balance = balance + 1");
    db.close();
    const r = await gm('receipts', 'verify', '--ledger', path);
    expect(r.code).toBe(1);
    expect(r.out).toContain('LEDGER_AUDIT');
  });
});

describe('gm receipts verify FILE', () => {
  it('verifies a client’s receipts file with gaps in seq', async () => {
    const { jsonl, receiptKey } = await fresh(6);
    const lines = jsonl.trim().split('\n');
    const file = join(dir, `mine-${n++}.jsonl`);
    writeFileSync(file, [lines[0], lines[1], lines[4]].join('\n'));
    const r = await gm('receipts', 'verify', file, '--key', hex(receiptKey));
    expect(r.code).toBe(0);
    expect(r.out).toContain('1 link(s) checked; 1 gap(s)');
  });

  it('a receipt whose cited offer was swapped for a cheaper signed offer → exit 1, RECEIPT_OFFER_MISMATCH', async () => {
    const { receipts } = await fresh(1);
    const w = await makeWorker('worker-1');
    const cheaper = await signOffer(offerFor(w, { pricePerMOutput: 1n }), w.privateKey, w.hotkey.secretKey);
    const file = join(dir, `swap-${n++}.json`);
    writeFileSync(file, JSON.stringify(receiptEnvelope(receipts[0]!, cheaper)));
    const r = await gm('receipts', 'verify', file);
    expect(r.code).toBe(1);
    expect(r.out).toContain('RECEIPT_OFFER_MISMATCH');
  });

  it('a receipt without its offer → exit 1, RECEIPT_OFFER_MISSING; usage errors → exit 2', async () => {
    const { receipts } = await fresh(1);
    const file = join(dir, `bare-${n++}.json`);
    writeFileSync(file, JSON.stringify([receiptEnvelope(receipts[0]!)]));
    const r = await gm('receipts', 'verify', file);
    expect(r.code).toBe(1);
    expect(r.out).toContain('RECEIPT_OFFER_MISSING');
    expect((await gm('receipts', 'verify')).code).toBe(2);
    expect((await gm('receipts', 'verify', file, '--key', 'abcd')).code).toBe(2);
  });
});
