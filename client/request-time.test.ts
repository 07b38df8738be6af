/**
 * The SDK seals its clock into every request (`gm-sent-at`, docs/protocol.md §13), and a client whose clock is off by
 * more than the gateway's window recovers: the sealed REQUEST_TIME_SKEW answer carries the gateway's time, the client
 * retries once with it and keeps the offset for later requests. Driven against the in-process enclave app.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { memoryLogger } from '../enclave/log.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { decodeKeyConfigs } from '../protocol/ohttp.ts';
import { simVendors, simWorkerPolicy } from '../test/stack/harness.ts';
import type { Attestation } from './attest.ts';
import { encryptedFetch } from './transport.ts';

describe('request time in the SDK', () => {
  let e: Enclave;
  beforeAll(async () => {
    const { amd } = await simVendors();
    e = await createEnclave({ tee: simProvider({ amd }), log: memoryLogger('enclave').log, requireRequestTime: true, workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 } });
  });
  afterAll(async () => {
    await e?.close();
  });

  const client = (skewMs: number) => {
    const a = { keyConfig: decodeKeyConfigs(e.keyConfigs)[0]!, receiptKey: e.keys.receipt.publicKey } as unknown as Attestation;
    const posts: number[] = [];
    const f = encryptedFetch({ current: () => a, reattest: async () => a }, {
      origin: 'https://enclave.test', base: 'https://enclave.test', authority: 'enclave.test', onReceipt: () => undefined,
      now: () => Date.now() + skewMs,
      fetch: async (input, init) => {
        posts.push(1);
        return e.app.request(new URL(String(input)).pathname, init);
      },
    });
    return { f, posts };
  };

  it('a client with a good clock is served in one round trip by a gateway that requires the request time', async () => {
    const c = client(2_000);
    const r = await c.f('https://enclave.test/v1/models');
    expect(r.status).toBe(200);
    expect(c.posts).toHaveLength(1);
  });

  it('a client ten minutes off takes the gateway time from the sealed refusal, retries once, and keeps the offset', async () => {
    const c = client(-10 * 60_000);
    const r = await c.f('https://enclave.test/v1/models');
    expect(r.status).toBe(200);
    expect(c.posts).toHaveLength(2);
    expect((await c.f('https://enclave.test/v1/models')).status).toBe(200);
    expect(c.posts).toHaveLength(3);
  });
});
