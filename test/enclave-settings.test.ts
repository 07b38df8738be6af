/**
 * The enclave's trust-relevant settings are attested (docs/protocol.md §12.3): whether it admits sim workers, the
 * digest of its worker policy, open access and where its ledger lives travel in its bundle, bound in REPORT_DATA, so
 * a host that alters them breaks the binding; a client policy can require `allowSimWorkers: false` (hardware
 * evidence requires it by default); `gm verify` shows them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBundle, encodeBundle } from '../attestation/bundle.ts';
import { hex } from '../attestation/bytes.ts';
import { isGmError } from '../attestation/errors.ts';
import { attest, verifyEnclaveBundle } from '../client/attest.ts';
import type { Io } from '../cli/io.ts';
import { run as verifyUrlRun } from '../cli/verify-url.ts';
import { parseClientPolicy, settingsViolations, simPolicyDoc } from '../client/policy.ts';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { memoryLogger } from '../enclave/log.ts';
import { simWorkerPolicyDoc, workerPolicyDigest } from '../enclave/policy.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { simVendors } from './stack/harness.ts';

const running: { enclave: Enclave; served: Served }[] = [];
let simWorkers: string;
let noSimWorkers: string;

async function start(allowSim: boolean): Promise<string> {
  const { amd } = await simVendors();
  const enclave = await createEnclave({
    tee: simProvider({ amd }), log: memoryLogger('enclave').log, workerPolicy: { ...simWorkerPolicyDoc(), allowSim },
    settings: { openAccess: allowSim, ledger: allowSim ? 'memory' : 'file' },
  });
  const served = await serve({ fetch: enclave.app.fetch });
  running.push({ enclave, served });
  return served.url;
}

beforeAll(async () => {
  simWorkers = await start(true);
  noSimWorkers = await start(false);
}, 60_000);
afterAll(async () => {
  for (const r of running) {
    await r.enclave.close();
    await r.served.close(100);
  }
});

const policy = (extra: Record<string, unknown> = {}) => parseClientPolicy({ ...simPolicyDoc(), ...extra });
const attestAt = (base: string, p = policy()) => attest({ base, fetch, policy: p, allowSim: true, trust: undefined, now: () => new Date() });

describe('enclave settings in the evidence', () => {
  it('are carried in the bundle, bound in REPORT_DATA, and returned by attestation', async () => {
    const a = await attestAt(noSimWorkers);
    expect(a.settings).toEqual({ allowSimWorkers: false, workerPolicy: await workerPolicyDigest(simWorkerPolicyDoc()), openAccess: false, ledger: 'file' });
    const b = await attestAt(simWorkers);
    expect(b.settings?.allowSimWorkers).toBe(true);
    expect(b.settings?.openAccess).toBe(true);
    expect(a.report.checks.find((c) => c.id === 'client.settings')?.status).toBe('pass');
  });

  it('altered by whoever relays the bundle, they no longer match the evidence', async () => {
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const bytes = new Uint8Array(await (await fetch(`${simWorkers}/v1/attestation?nonce=${hex(nonce)}`)).arrayBuffer());
    const b = decodeBundle(bytes);
    const opts = { nonce, policy: policy(), allowSim: true, trust: undefined, now: new Date(), maxAgeMs: 60_000 };
    expect((await verifyEnclaveBundle(bytes, opts)).settings?.allowSimWorkers).toBe(true);
    const forged = encodeBundle({ ...b, settings: { ...b.settings!, allowSimWorkers: false } });
    const e = await verifyEnclaveBundle(forged, { ...opts, policy: policy({ allowSimWorkers: false }) }).catch((x: unknown) => x);
    expect(isGmError(e)).toBe(true);
    expect((e as { report?: { checks: { id: string; status: string }[] } }).report?.checks.find((c) => c.status === 'fail')?.id).toMatch(/report-data|reportdata/i);
    const { settings: _dropped, ...stripped } = b;
    expect(isGmError(await verifyEnclaveBundle(encodeBundle(stripped), opts).catch((x: unknown) => x))).toBe(true);
  });

  it('a client policy with allowSimWorkers: false refuses an enclave that admits sim workers, and accepts one that does not', async () => {
    const strict = policy({ allowSimWorkers: false });
    const e = await attestAt(simWorkers, strict).catch((x: unknown) => x);
    expect(isGmError(e, 'ENCLAVE_ALLOWS_SIM_WORKERS')).toBe(true);
    expect((await attestAt(noSimWorkers, strict)).settings?.allowSimWorkers).toBe(false);
    expect(() => parseClientPolicy({ ...simPolicyDoc(), allowSimWorkers: 'no' })).toThrow(/allowSimWorkers/);
  });

  it('against hardware evidence the default policy requires an enclave that admits no sim workers and says so', () => {
    const p = policy();
    const s = { allowSimWorkers: true, workerPolicy: new Uint8Array(32), openAccess: false, ledger: 'file' as const };
    expect(settingsViolations(p, false, s).map((v) => v.code)).toEqual(['ENCLAVE_ALLOWS_SIM_WORKERS']);
    expect(settingsViolations(p, false, undefined).map((v) => v.code)).toEqual(['ENCLAVE_SETTINGS_MISSING']);
    expect(settingsViolations(p, false, { ...s, allowSimWorkers: false })).toEqual([]);
    expect(settingsViolations(p, true, s)).toEqual([]); // a sim stack's workers are sim too
    expect(settingsViolations(policy({ allowSimWorkers: true }), false, s)).toEqual([]);
  });

  it('gm verify shows them', async () => {
    let out = '';
    const io: Io = { out: (s) => void (out += s), err: () => undefined, readFile: async () => new Uint8Array(), env: { GM_TRUST_DIR: '/nonexistent' } };
    expect(await verifyUrlRun({ 'allow-sim': true }, simWorkers, io)).toBe(0);
    expect(out).toMatch(/allowSimWorkers\s+true: workers with SIMULATED evidence are admitted/);
    expect(out).toMatch(/openAccess\s+true/);
    expect(out).toMatch(/ledger\s+memory/);
    expect(out).toMatch(new RegExp(`workerPolicy\\s+${hex(await workerPolicyDigest(simWorkerPolicyDoc()))}`));
  });
});
