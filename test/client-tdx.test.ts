/**
 * The SDK detects the platform (SEV-SNP or TDX) from the bundle:
 * against a real enclave app running the sim-tdx provider (a TDX quote v4 signed by a fake Intel PCK chain), a TDX
 * policy verifies (MRTD pinned, REPORT_DATA binding) and the encrypted channel works; an SEV-SNP-only policy
 * refuses the TDX enclave, and a TDX policy with another MRTD refuses it too, each before anything is POSTed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type FetchLike } from '../client/index.ts';
import { SIM_MEASUREMENT_HEX } from '../client/policy.ts';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { memoryLogger } from '../enclave/log.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { SIM_MRTD, simProvider } from '../enclave/tee/sim.ts';
import { simWorkerPolicy } from './stack/harness.ts';

let enclave: Enclave;
let served: Served;
const posts: string[] = [];
const recording: FetchLike = (i, init) => {
  if ((init?.method ?? 'GET') === 'POST') posts.push(String(i));
  return fetch(i, init);
};

beforeAll(async () => {
  enclave = await createEnclave({ tee: simProvider({ platform: 'sim-tdx' }), log: memoryLogger('enclave').log, workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 } });
  served = await serve({ fetch: enclave.app.fetch });
}, 60_000);
afterAll(async () => {
  await enclave?.close();
  await served?.close(100);
});

const mrtd = Buffer.from(SIM_MRTD).toString('hex');

describe('SDK against a TDX (sim) enclave', () => {
  it('verifies under a TDX policy and talks over the attested key', async () => {
    const c = await createClient({ url: served.url, policy: { tdx: { mrTd: [mrtd] } }, allowSim: true, fetch: recording });
    expect(c.verification.verified).toBe(true);
    expect(c.claims.platform).toBe('sim-tdx');
    const ids = c.verification.checks.map((r) => r.id);
    expect(ids).toContain('bundle.report-data');
    expect(ids.some((id) => id.startsWith('tdx.'))).toBe(true);
    const r = await c.fetch(`${c.baseURL}/models`);
    expect(r.status).toBe(200);
    expect(((await r.json()) as { data: unknown[] }).data).toEqual([]);
    expect(posts.length).toBe(1);
  });

  it('refuses it under an SEV-SNP-only policy, or a TDX policy pinning another MRTD, before any POST', async () => {
    posts.length = 0;
    const snpOnly = await createClient({ url: served.url, policy: { 'sev-snp': { measurements: [SIM_MEASUREMENT_HEX], allowDebug: false } }, allowSim: true, fetch: recording }).catch((e) => e);
    expect(snpOnly.code).toBe('PLATFORM_NOT_ALLOWED');
    const other = await createClient({ url: served.url, policy: { tdx: { mrTd: ['00'.repeat(48)] } }, allowSim: true, fetch: recording }).catch((e) => e);
    expect(other.kind).toBe('rejected');
    expect(other.code).toBe('TDX_POLICY_VIOLATION');
    const failed = (other.report.checks as { id: string; status: string }[]).filter((r) => r.status === 'fail').map((r) => r.id);
    expect(failed.some((id) => /mrtd/i.test(id)), failed.join(', ')).toBe(true);
    expect(posts).toEqual([]);
  });
});
