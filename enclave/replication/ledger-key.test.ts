import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64, toBase64 } from '../../attestation/bytes.ts';
import { createSimAmd, type SimAmd } from '../../attestation/sevsnp/sim.ts';
import { parseClientPolicy, simPolicyDoc } from '../../client/policy.ts';
import { KEM_MLKEM768_X25519 } from '../../protocol/hpke.ts';
import { generateKeyConfig } from '../../protocol/ohttp.ts';
import { simWorkerPolicy } from '../../test/stack/harness.ts';
import { createEnclave, type Enclave } from '../app.ts';
import { memoryLogger } from '../log.ts';
import { SIM_MEASUREMENT, simProvider } from '../tee/sim.ts';
import type { TeeProvider } from '../tee/provider.ts';
import { joinLedgerKey } from './join.ts';
import { joinRequest, openLedgerKey, type ReplicaIdentity, releaseLedgerKey, sealLedgerKey, selfClaims } from './ledger-key.ts';

const OTHER = new Uint8Array(48).fill(0x11);
const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');
const simPolicy = parseClientPolicy(simPolicyDoc());
/** Both sim measurements pass this policy: only the replica rule (equal measurements) can tell them apart. */
const bothPolicy = parseClientPolicy({ 'sev-snp': { measurements: [hexOf(SIM_MEASUREMENT), hexOf(OTHER)], allowDebug: false } });
const LEDGER_KEY = crypto.getRandomValues(new Uint8Array(32));

let amd: SimAmd;
const enclaves: Enclave[] = [];
beforeAll(async () => {
  amd = await createSimAmd({ product: 'Genoa' });
});
afterAll(async () => {
  for (const e of enclaves) await e.close();
});

async function enclave(tee: TeeProvider, replication?: { policy: typeof simPolicy; allowSim: boolean }) {
  const { log, lines } = memoryLogger('enclave');
  const e = await createEnclave({ tee, log, workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 }, ...(replication ? { replication: { ledgerKey: LEDGER_KEY, ...replication } } : {}) });
  enclaves.push(e);
  return { e, lines, tee };
}

function identityOf(x: { e: Enclave; tee: TeeProvider }, policy = simPolicy, allowSim = true): ReplicaIdentity {
  return { policy, allowSim, trust: undefined, now: () => new Date(), tee: x.tee, receiptKey: x.e.keys.receipt.publicKey, settings: x.e.bootBundle.settings! };
}

/** The member's app as the joiner's fetch, optionally rewriting the answer (a host in the middle). */
const via = (member: Enclave, rewrite?: (j: { bundle: string; sealed: string }) => { bundle: string; sealed: string }) => async (input: string, init?: RequestInit) => {
  const r = await member.app.request(new URL(input).pathname, init);
  if (!rewrite || !r.ok) return r;
  return Response.json(rewrite((await r.json()) as { bundle: string; sealed: string }));
};

describe('ledger key release by mutual attestation', () => {
  it('a joiner of the same measurement and settings gets the same 32-byte key; the member logs the release, never the key', async () => {
    const member = await enclave(simProvider({ amd }), { policy: simPolicy, allowSim: true });
    const joiner = await enclave(simProvider({ amd }));
    const key = await joinLedgerKey({ member: 'http://member.test', identity: identityOf(joiner), fetch: via(member.e) });
    expect(hexOf(key)).toBe(hexOf(LEDGER_KEY));
    expect(member.lines.some((l) => l.includes('replication.key_released'))).toBe(true);
    expect(member.lines.join('\n')).not.toContain(hexOf(LEDGER_KEY));
    expect(member.lines.join('\n')).not.toContain(toBase64(LEDGER_KEY));
  });

  it('refuses a joiner with another measurement: by the policy, and by the replica rule where the policy allows both', async () => {
    const member = await enclave(simProvider({ amd }), { policy: simPolicy, allowSim: true });
    const strangerTee = simProvider({ amd, report: { measurement: OTHER } });
    const stranger = await enclave(strangerTee);
    await expect(joinLedgerKey({ member: 'http://m', identity: identityOf(stranger, bothPolicy), fetch: via(member.e) })).rejects.toMatchObject({ code: 'REPLICATION_REFUSED', message: expect.stringContaining('SNP_POLICY_MEASUREMENT') });
    const lenient = await enclave(simProvider({ amd }), { policy: bothPolicy, allowSim: true });
    const r = await lenient.e.app.request('/v1/replication/join', { method: 'POST', body: (await joinRequest(identityOf(stranger, bothPolicy))).body as Uint8Array<ArrayBuffer> });
    expect(r.status).toBe(403);
    expect(((await r.json()) as { code: string }).code).toBe('REPLICA_MEASUREMENT_MISMATCH');
    expect(JSON.stringify(await (await lenient.e.app.request('/v1/replication/join', { method: 'POST', body: (await joinRequest(identityOf(stranger, bothPolicy))).body as Uint8Array<ArrayBuffer> })).json())).not.toContain('sealed');
  });

  it('refuses sim evidence unless the member allows sim', async () => {
    const strict = await enclave(simProvider({ amd }), { policy: simPolicy, allowSim: false });
    const joiner = await enclave(simProvider({ amd }));
    await expect(joinLedgerKey({ member: 'http://m', identity: identityOf(joiner), fetch: via(strict.e) })).rejects.toMatchObject({ code: 'REPLICATION_REFUSED', message: expect.stringContaining('SIM_NOT_ALLOWED') });
  });

  it('the joiner refuses a tampered sealed key, a replayed answer, and a member of another measurement', async () => {
    const member = await enclave(simProvider({ amd }), { policy: simPolicy, allowSim: true });
    const joiner = await enclave(simProvider({ amd }));
    const flip = (b64: string) => {
      const b = fromBase64(b64);
      b[b.length - 1]! ^= 1;
      return toBase64(b);
    };
    await expect(joinLedgerKey({ member: 'http://m', identity: identityOf(joiner), fetch: via(member.e, (j) => ({ ...j, sealed: flip(j.sealed) })) })).rejects.toMatchObject({ code: 'LEDGER_KEY_NOT_BOUND' });
    // An honest answer to one join, replayed to another (the host keeps old answers): bound to the other nonce.
    let saved: { bundle: string; sealed: string } | undefined;
    await joinLedgerKey({ member: 'http://m', identity: identityOf(joiner), fetch: via(member.e, (j) => (saved = j)) });
    await expect(joinLedgerKey({ member: 'http://m', identity: identityOf(joiner), fetch: via(member.e, () => saved!) })).rejects.toMatchObject({ code: 'LEDGER_KEY_NOT_BOUND' });
    // A member that skips its own check and runs another image: the joiner's check of the member refuses it.
    const rogueTee = simProvider({ amd, report: { measurement: OTHER } });
    const rogue = await enclave(rogueTee);
    const req = await joinRequest(identityOf(joiner, bothPolicy));
    const rogueId = identityOf(rogue, bothPolicy);
    const answer = await releaseLedgerKey(req.body, { identity: rogueId, self: await selfClaims(identityOf(joiner, bothPolicy), joiner.e.keyConfigs), ledgerKey: LEDGER_KEY, keyConfigs: rogue.e.keyConfigs });
    await expect(req.accept(answer)).rejects.toMatchObject({ code: 'REPLICA_MEASUREMENT_MISMATCH' });
  });

  it('the sealed key opens only with the joiner key and nonce it was sealed for (HPKE, AES-256-GCM tag)', async () => {
    const k = await generateKeyConfig(0, [{ kdfId: 1, aeadId: 2 }], { kemId: KEM_MLKEM768_X25519 });
    const nJ = crypto.getRandomValues(new Uint8Array(32));
    const sealed = await sealLedgerKey(k.config.publicKey, nJ, LEDGER_KEY);
    expect(hexOf(await openLedgerKey(sealed, nJ, k.privateKey))).toBe(hexOf(LEDGER_KEY));
    expect(sealed).toHaveLength(1120 + 32 + 16); // X-Wing enc, the key, the GCM tag
    for (const at of [5, 1119, 1130, sealed.length - 1]) {
      const bad = sealed.slice();
      bad[at]! ^= 1;
      await expect(openLedgerKey(bad, nJ, k.privateKey)).rejects.toMatchObject({ code: 'LEDGER_KEY_UNSEAL_FAILED' });
    }
    await expect(openLedgerKey(sealed, new Uint8Array(32), k.privateKey)).rejects.toMatchObject({ code: 'LEDGER_KEY_UNSEAL_FAILED' });
    await expect(openLedgerKey(sealed.subarray(1), nJ, k.privateKey)).rejects.toMatchObject({ code: 'LEDGER_KEY_UNSEAL_FAILED' });
    const other = await generateKeyConfig(0, [{ kdfId: 1, aeadId: 2 }], { kemId: KEM_MLKEM768_X25519 });
    await expect(openLedgerKey(sealed, nJ, other.privateKey)).rejects.toMatchObject({ code: 'LEDGER_KEY_UNSEAL_FAILED' });
  });
});
