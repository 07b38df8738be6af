/**
 * Revocation checked from the host shim's collateral cache with the network to the vendor cut: a stand-in AMD KDS
 * serves the (sim) ARK-signed CRL once; after it is stopped, clients and `gm verify bundle` still check revocation
 * from the shim's cache. The shim is trusted for nothing: a CRL it serves that revokes the ASK, or one signed by
 * another root, makes verification fail; no CRL at all fails closed when revocation was asked for.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseReport } from '../attestation/sevsnp/abi.ts';
import { createSimAmd, type SimAmd } from '../attestation/sevsnp/sim.ts';
import { pemEncode } from '../attestation/x509/pem.ts';
import type { Io } from '../cli/io.ts';
import { main } from '../cli/main.ts';
import { createClient, type FetchLike } from '../client/index.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import { startHost, type RunningHost } from '../host/main.ts';
import { listen, type Listening } from '../host/serve.ts';
import { type FakeVendor, startFakeVendor } from '../host/testing/fake-vendor.ts';
import { type MiniEnclave, startMiniEnclave } from '../host/testing/mini-enclave.ts';

let amd: SimAmd;
let mini: MiniEnclave;
let enclave: Listening;
let kds: FakeVendor;
let dir: string;
const hosts: RunningHost[] = [];

const row = (r: { checks: readonly { id: string; status: string }[] }, id: string) => r.checks.find((c) => c.id === id)?.status;

async function shim(cacheDir: string, amdUrl: string): Promise<RunningHost> {
  const h = await startHost({ collateralRetry: { baseDelayMs: 5 }, enclave: enclave.url, policy: parseClientPolicy(simPolicyDoc()), allowSim: true, trust: undefined, cacheDir, checkIntervalMs: 3_600_000, vendors: { amd: amdUrl, intel: amdUrl, intelCerts: amdUrl, nvidiaRim: amdUrl, nvidiaOcsp: amdUrl } });
  hosts.push(h);
  return h;
}

beforeAll(async () => {
  amd = await createSimAmd({ product: 'Genoa' });
  mini = await startMiniEnclave({ amd });
  enclave = await listen(mini.app.fetch);
  dir = await mkdtemp(join(tmpdir(), 'gm-collateral-e2e-'));
  // What AMD KDS serves for this (sim) chip: its VCEK by chip id and reported TCB (query sorted, as the shim
  // forwards it), the ASK/ARK chain as PEM, and the ARK-signed CRL.
  const r = parseReport(await amd.vcek.signReport({}));
  const t = r.reportedTcb;
  const vcekPath = `/vcek/v1/Genoa/${Buffer.from(r.chipId).toString('hex')}?blSPL=${t.bootloader}&snpSPL=${t.snp}&teeSPL=${t.tee}&ucodeSPL=${t.microcode}`;
  kds = await startFakeVendor({
    '/vcek/v1/Genoa/crl': { body: await amd.crl([]), headers: { 'content-type': 'application/pkix-crl' } },
    [vcekPath]: { body: amd.vcek.der, headers: { 'content-type': 'application/x-x509-ca-cert' } },
    '/vcek/v1/Genoa/cert_chain': { body: pemEncode(amd.askDer) + pemEncode(amd.arkDer), headers: { 'content-type': 'application/x-pem-file' } },
  });
});
// The mini enclave is shared by the tests: a test that fails while it leaves the certificates out must not make the
// next tests fail for that reason (one failure should read as one).
afterEach(() => {
  mini.omitCerts = false;
});
afterAll(async () => {
  for (const h of hosts) await h.close();
  await kds.close();
  await enclave.close();
  await rm(dir, { recursive: true, force: true });
});

describe('verification from the shim collateral cache', () => {
  it('checks revocation (and completes a bundle without certificates) through the shim, then again with the vendor unreachable (SDK and gm verify bundle)', async () => {
    const host = await shim(join(dir, 'cache'), kds.url);
    const c1 = await createClient({ url: enclave.url, relay: host.url, collateralFrom: host.url, allowSim: true });
    expect(row(c1.verification, 'client.collateral')).toBe('pass');
    expect(row(c1.verification, 'snp.crl')).toBe('pass');
    expect(kds.log).toEqual(['GET /vcek/v1/Genoa/crl']);

    // A bundle without certificates (no SNP certificate table on the host): VCEK and chain come from the shim too.
    mini.omitCerts = true;
    const c0 = await createClient({ url: enclave.url, relay: host.url, collateralFrom: host.url, allowSim: true });
    expect(row(c0.verification, 'snp.chain')).toBe('pass');
    expect(c0.verification.checks.find((x) => x.id === 'client.collateral')?.detail).toBe('1 CRL(s), 3 certificate(s)');
    const noCerts = await createClient({ url: enclave.url, relay: host.url, allowSim: true }).catch((x) => x);
    expect(noCerts.code).toBe('BUNDLE_MALFORMED');
    expect(kds.log.length).toBe(3);

    await kds.close(); // the network to the vendor is cut from here on
    const c0b = await createClient({ url: enclave.url, relay: host.url, collateralFrom: host.url, allowSim: true });
    expect(row(c0b.verification, 'snp.chain')).toBe('pass');
    mini.omitCerts = false;
    const c2 = await createClient({ url: enclave.url, relay: host.url, collateralFrom: host.url, allowSim: true });
    expect(row(c2.verification, 'snp.crl')).toBe('pass');
    // Without asking for collateral the sim bundle carries no CRL: revocation is visibly skipped, not passed.
    const c3 = await createClient({ url: enclave.url, relay: host.url, allowSim: true });
    expect(row(c3.verification, 'snp.crl')).toBe('skip');

    const file = join(dir, 'bundle.cbor');
    await writeFile(file, c2.bundle);
    let out = '';
    let err = '';
    const io: Io = { out: (s) => void (out += s), err: (s) => void (err += s), readFile: async (p) => new Uint8Array(await readFile(p)), env: { GM_TRUST_DIR: join(dir, 'none') } };
    expect(await main(['verify', 'bundle', file, '--allow-sim', '--collateral', host.url], io)).toBe(0);
    expect(out).toMatch(/PASS\s+snp\.crl/);
    expect(err).not.toContain('REJECTED');
  });

  it('fails closed when revocation was asked for and the shim has no CRL and no vendor', async () => {
    const host = await shim(join(dir, 'empty-cache'), 'http://127.0.0.1:1');
    const posts: string[] = [];
    const f: FetchLike = (i, init) => {
      if ((init?.method ?? 'GET') === 'POST') posts.push(String(i));
      return fetch(i, init);
    };
    const e = await createClient({ url: enclave.url, relay: host.url, collateralFrom: host.url, allowSim: true, fetch: f }).catch((x) => x);
    expect(e.code).toBe('COLLATERAL_UNAVAILABLE');
    expect(e.report.checks.at(-1).id).toBe('client.collateral');
    expect(posts).toEqual([]);
  });

  it('rejects what a hostile shim serves: a CRL revoking the ASK, or a CRL signed by another root', async () => {
    const revoking = await startFakeVendor({ '/vcek/v1/Genoa/crl': { body: await amd.crl([2]) } });
    const other = await createSimAmd({ product: 'Genoa' });
    const forged = await startFakeVendor({ '/vcek/v1/Genoa/crl': { body: await other.crl([]) } });
    try {
      const h1 = await shim(join(dir, 'c1'), revoking.url);
      const e1 = await createClient({ url: enclave.url, relay: h1.url, collateralFrom: h1.url, allowSim: true }).catch((x) => x);
      expect(e1.code).toBe('CERT_REVOKED');
      const h2 = await shim(join(dir, 'c2'), forged.url);
      const e2 = await createClient({ url: enclave.url, relay: h2.url, collateralFrom: h2.url, allowSim: true }).catch((x) => x);
      expect(e2.kind).toBe('rejected');
      expect(row(e2.report, 'snp.crl')).toBe('fail');
    } finally {
      await revoking.close();
      await forged.close();
    }
  });
});
