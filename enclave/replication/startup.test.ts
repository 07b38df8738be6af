import { describe, expect, it } from 'vitest';
import { memoryLogger } from '../log.ts';
import { simProvider } from '../tee/sim.ts';
import type { TeeProvider } from '../tee/provider.ts';
import { sharedLedgerStart } from './startup.ts';

const settings = { allowSimWorkers: true, workerPolicy: new Uint8Array(32), openAccess: false, ledger: 'postgres' as const };
const refuse = () => Promise.reject(new Error('no network in this test'));
const base = (tee: TeeProvider) => ({ tee, trust: undefined, receiptKey: new Uint8Array(32), settings, log: memoryLogger('enclave').log, fetch: refuse, now: () => new Date() });
const hardware: TeeProvider = { kind: 'configfs', sim: false, cpuEvidence: () => Promise.reject(new Error('not used')) };

describe('the ledger key at start', () => {
  it('asks the member through the fetch it is given, never the global one', async () => {
    const asked: string[] = [];
    const global = globalThis.fetch;
    globalThis.fetch = (() => Promise.reject(new Error('the global fetch was called'))) as typeof fetch;
    try {
      const fetchVia = (url: string) => {
        asked.push(url);
        return Promise.resolve(new Response(JSON.stringify({ code: 'NOT_A_MEMBER' }), { status: 403, headers: { 'content-type': 'application/json' } }));
      };
      await expect(sharedLedgerStart({ ...base(simProvider()), fetch: fetchVia, join: 'http://member.test/', peerPolicy: undefined })).rejects.toMatchObject({ code: 'REPLICATION_REFUSED', message: expect.stringContaining('NOT_A_MEMBER') });
    } finally {
      globalThis.fetch = global;
    }
    expect(asked).toEqual(['http://member.test/v1/replication/join']);
  });

  it('a new replica makes a fresh 32-byte key and, under sim, releases it to sim replicas of itself', async () => {
    const a = await sharedLedgerStart({ ...base(simProvider()), join: undefined, peerPolicy: undefined });
    const b = await sharedLedgerStart({ ...base(simProvider()), join: undefined, peerPolicy: undefined });
    expect(a.ledgerKey).toHaveLength(32);
    expect(Buffer.from(a.ledgerKey).equals(Buffer.from(b.ledgerKey))).toBe(false);
    expect(a.replication?.allowSim).toBe(true);
  });

  it('a provisioned key is used as it is; --join beside it is refused', async () => {
    const provided = new Uint8Array(32).fill(7);
    expect((await sharedLedgerStart({ ...base(simProvider()), join: undefined, provided, peerPolicy: undefined })).ledgerKey).toEqual(provided);
    await expect(sharedLedgerStart({ ...base(simProvider()), join: 'http://127.0.0.1:1', provided, peerPolicy: undefined })).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('on hardware: --join needs a peer policy, and without one the key is released to no one', async () => {
    await expect(sharedLedgerStart({ ...base(hardware), join: 'http://127.0.0.1:1', peerPolicy: undefined })).rejects.toMatchObject({ code: 'PEER_POLICY_REQUIRED' });
    const alone = await sharedLedgerStart({ ...base(hardware), join: undefined, peerPolicy: undefined });
    expect(alone.replication).toBeUndefined();
    const withPolicy = await sharedLedgerStart({ ...base(hardware), join: undefined, peerPolicy: { 'sev-snp': { measurements: ['ab'.repeat(48)], allowDebug: false } } });
    expect(withPolicy.replication?.allowSim).toBe(false);
  });
});
