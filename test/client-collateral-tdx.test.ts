/**
 * TDX collateral from the host shim's cache with the network to Intel cut: a stand-in Intel PCS serves the (sim)
 * TCB info with its TCB-Info-Issuer-Chain, the QE identity, the PCK CRL and the root CA CRL once; after it is
 * stopped, the SDK, `gm verify URL` and `gm verify bundle` verify a sim-tdx bundle that carries no collateral,
 * the verifier asking for it by the FMSPC of the PCK certificate it verified. The shim is trusted for nothing:
 * a TCB info tampered with in its disk cache, or signed by another (sim) Intel root, is rejected by the TDX
 * verifier with its code; a shim that has nothing fails closed.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { type TdxCollateral, pcsResponse } from '../attestation/tdx/collateral.ts';
import { createSimTdx, type SimTdx } from '../attestation/tdx/sim.ts';
import { pemEncode } from '../attestation/x509/pem.ts';
import type { Io } from '../cli/io.ts';
import { main } from '../cli/main.ts';
import { createClient } from '../client/index.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import { startHost, type RunningHost } from '../host/main.ts';
import { listen, type Listening } from '../host/serve.ts';
import { type FakeResponse, type FakeVendor, startFakeVendor } from '../host/testing/fake-vendor.ts';
import { type MiniEnclave, startMiniEnclave } from '../host/testing/mini-enclave.ts';

let tdx: SimTdx;
let mini: MiniEnclave;
let enclave: Listening;
let dir: string;
let policy: { tdx: { mrTd: string[] } };
const hosts: RunningHost[] = [];
const vendors: FakeVendor[] = [];

type Rows = { checks: readonly { id: string; status: string; code?: string }[] };
const row = (r: Rows, id: string) => r.checks.find((c) => c.id === id);

/** What Intel PCS v4 and Intel's CRL host serve for the sim platform (query as the shim forwards it, sorted). */
function pcsRoutes(c: TdxCollateral, fmspc: string): Record<string, FakeResponse> {
  const chain = encodeURIComponent(c.tcbInfo.issuerChain.map((d) => pemEncode(d)).join(''));
  return {
    [`/tdx/certification/v4/tcb?fmspc=${fmspc}`]: { body: pcsResponse(c.tcbInfo, 'tcbInfo'), headers: { 'content-type': 'application/json', 'TCB-Info-Issuer-Chain': chain } },
    '/tdx/certification/v4/qe/identity': { body: pcsResponse(c.qeIdentity!, 'enclaveIdentity'), headers: { 'content-type': 'application/json', 'SGX-Enclave-Identity-Issuer-Chain': chain } },
    '/sgx/certification/v4/pckcrl?ca=platform&encoding=der': { body: c.pckCrl!, headers: { 'content-type': 'application/pkix-crl', 'SGX-PCK-CRL-Issuer-Chain': chain } },
    '/IntelSGXRootCA.der': { body: c.rootCaCrl!, headers: { 'content-type': 'application/pkix-crl' } },
  };
}

async function intel(routes: Record<string, FakeResponse>): Promise<FakeVendor> {
  const v = await startFakeVendor(routes);
  vendors.push(v);
  return v;
}

async function shim(cacheDir: string, vendorUrl: string): Promise<RunningHost> {
  const h = await startHost({ collateralRetry: { baseDelayMs: 5, attempts: 1 }, enclave: enclave.url, policy: parseClientPolicy(simPolicyDoc()), allowSim: true, trust: undefined, cacheDir, checkIntervalMs: 3_600_000, vendors: { amd: vendorUrl, intel: vendorUrl, intelCerts: vendorUrl, nvidiaRim: vendorUrl, nvidiaOcsp: vendorUrl } });
  hosts.push(h);
  return h;
}

const FMSPC = '90c06f000000';

beforeAll(async () => {
  // Collateral issued a minute ago, valid 30 days: fresh for the verifier's clock and cacheable by the shim.
  tdx = await createSimTdx({ now: new Date(Date.now() - 60_000) });
  mini = await startMiniEnclave({ tdx });
  mini.omitCollateral = true;
  enclave = await listen(mini.app.fetch);
  dir = await mkdtemp(join(tmpdir(), 'gm-collateral-tdx-'));
  policy = { tdx: { mrTd: [hex(tdx.defaultBody.mrTd)] } };
});
afterAll(async () => {
  for (const h of hosts) await h.close();
  for (const v of vendors) await v.close();
  await enclave.close();
  await rm(dir, { recursive: true, force: true });
});

function io(env: Record<string, string>): Io & { text: () => { out: string; err: string } } {
  let out = '';
  let err = '';
  return {
    out: (s) => void (out += s),
    err: (s) => void (err += s),
    readFile: async (p) => new Uint8Array(await readFile(p)),
    env,
    text: () => ({ out, err }),
  };
}

describe('TDX verification from the shim collateral cache', () => {
  it('verifies a sim-tdx bundle without collateral through the shim, then again with Intel unreachable (SDK, gm verify URL, gm verify bundle)', async () => {
    const pcs = await intel(pcsRoutes(await tdx.collateral(), FMSPC));
    const host = await shim(join(dir, 'cache'), pcs.url);

    // Without a collateral source the bundle cannot be verified: nothing is skipped.
    const bare = await createClient({ url: enclave.url, policy, allowSim: true }).catch((x) => x);
    expect(bare.code).toBe('TDX_COLLATERAL_MISSING');

    const c1 = await createClient({ url: enclave.url, collateralFrom: host.url, policy, allowSim: true });
    expect(c1.verification.verified).toBe(true);
    expect(c1.claims.platform).toBe('sim-tdx');
    expect(row(c1.verification, 'client.collateral')?.status).toBe('pass');
    for (const id of ['tdx.collateral.get', 'tdx.revocation.root', 'tdx.revocation.pck', 'tdx.collateral.tcbInfo', 'tdx.tcb.platform', 'tdx.collateral.qeIdentity'])
      expect(row(c1.verification, id)?.status, id).toBe('pass');
    expect([...pcs.log].sort()).toEqual([
      'GET /IntelSGXRootCA.der', 'GET /sgx/certification/v4/pckcrl?ca=platform&encoding=der', 'GET /tdx/certification/v4/qe/identity', `GET /tdx/certification/v4/tcb?fmspc=${FMSPC}`,
    ]);

    await pcs.close(); // the network to Intel is cut from here on
    const c2 = await createClient({ url: enclave.url, collateralFrom: host.url, policy, allowSim: true });
    expect(c2.verification.verified).toBe(true);
    expect(row(c2.verification, 'tdx.collateral.tcbInfo')?.status).toBe('pass');
    expect(pcs.log.length).toBe(4);

    const policyFile = join(dir, 'policy.json');
    await writeFile(policyFile, JSON.stringify(policy));
    const env = { GM_TRUST_DIR: join(dir, 'none') };
    const u = io(env);
    expect(await main(['verify', enclave.url, '--allow-sim', '--policy', policyFile, '--collateral', host.url], u)).toBe(0);
    expect(u.text().out).toMatch(/PASS\s+tdx\.collateral\.tcbInfo/);

    const file = join(dir, 'bundle.cbor');
    await writeFile(file, c2.bundle);
    const b = io(env);
    expect(await main(['verify', 'bundle', file, '--allow-sim', '--policy', policyFile, '--collateral', host.url], b)).toBe(0);
    expect(b.text().err).not.toContain('REJECTED');
    const b0 = io(env);
    expect(await main(['verify', 'bundle', file, '--allow-sim', '--policy', policyFile], b0)).toBe(1);
    expect(b0.text().err).toContain('TDX_COLLATERAL_MISSING');
    expect(pcs.log.length).toBe(4);
  });

  it("the shim's own gate verifies a TDX enclave that ships no collateral from its cache, also with Intel cut", async () => {
    const pcs = await intel(pcsRoutes(await tdx.collateral(), FMSPC));
    const h = await startHost({ collateralRetry: { baseDelayMs: 5, attempts: 1 }, enclave: enclave.url, policy: parseClientPolicy(policy), allowSim: true, trust: undefined, cacheDir: join(dir, 'gate'), checkIntervalMs: 3_600_000, vendors: { amd: pcs.url, intel: pcs.url, intelCerts: pcs.url, nvidiaRim: pcs.url, nvidiaOcsp: pcs.url } });
    hosts.push(h);
    expect(h.gate.status.state).toBe('open');
    expect(h.gate.status.report?.checks.find((c) => c.id === 'tdx.collateral.tcbInfo')?.status).toBe('pass');
    await pcs.close();
    expect((await h.gate.check()).state).toBe('open'); // from the disk cache alone
    expect(pcs.log.length).toBe(4);
  });

  it('rejects a TCB info tampered with in the shim cache with the TDX verifier code', async () => {
    const pcs = await intel(pcsRoutes(await tdx.collateral(), FMSPC));
    const cache = join(dir, 'tampered');
    const host = await shim(cache, pcs.url);
    expect((await createClient({ url: enclave.url, collateralFrom: host.url, policy, allowSim: true })).verification.verified).toBe(true);
    await pcs.close();

    // Rewrite the cached TCB info body on disk: one signed field changed, signature and issuer chain kept.
    let tampered = 0;
    for (const f of await readdir(cache)) {
      if (!f.endsWith('.json')) continue;
      const meta = JSON.parse(await readFile(join(cache, f), 'utf8')) as { url: string };
      if (!meta.url.includes('/tdx/certification/v4/tcb?')) continue;
      const bodyFile = join(cache, f.replace(/\.json$/, '.body'));
      const text = await readFile(bodyFile, 'utf8');
      const changed = text.replace('"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18');
      expect(changed).not.toBe(text);
      await writeFile(bodyFile, changed);
      tampered++;
    }
    expect(tampered).toBe(1);
    const e = await createClient({ url: enclave.url, collateralFrom: host.url, policy, allowSim: true }).catch((x) => x);
    expect(e.code).toBe('TDX_COLLATERAL_SIGNATURE');
    expect(row(e.report, 'tdx.collateral.tcbInfo')).toMatchObject({ status: 'fail', code: 'TDX_COLLATERAL_SIGNATURE' });
  });

  it('rejects collateral a hostile shim got signed by another Intel root, and fails closed when it has none', async () => {
    const other = await createSimTdx({ now: new Date(Date.now() - 60_000) });
    const forged = await intel(pcsRoutes(await other.collateral(), FMSPC));
    const h1 = await shim(join(dir, 'forged'), forged.url);
    const e1 = await createClient({ url: enclave.url, collateralFrom: h1.url, policy, allowSim: true }).catch((x) => x);
    // The root CA CRL is checked first: it is not signed by the root the quote's PCK chain ends in.
    expect(e1.code).toBe('CRL_SIGNATURE');
    expect(row(e1.report, 'tdx.revocation.root')).toMatchObject({ status: 'fail', code: 'CRL_SIGNATURE' });

    // Genuine CRLs, forged TCB info: the TCB info row fails on its signing chain.
    const mine = await tdx.collateral();
    const mixed = await intel({ ...pcsRoutes(mine, FMSPC), [`/tdx/certification/v4/tcb?fmspc=${FMSPC}`]: pcsRoutes(await other.collateral(), FMSPC)[`/tdx/certification/v4/tcb?fmspc=${FMSPC}`]! });
    const h2 = await shim(join(dir, 'mixed'), mixed.url);
    const e2 = await createClient({ url: enclave.url, collateralFrom: h2.url, policy, allowSim: true }).catch((x) => x);
    expect(e2.code).toBe('CERT_SIGNATURE');
    expect(row(e2.report, 'tdx.collateral.tcbInfo')).toMatchObject({ status: 'fail', code: 'CERT_SIGNATURE' });
    expect(row(e2.report, 'tdx.revocation.root')?.status).toBe('pass');

    const h3 = await shim(join(dir, 'empty'), 'http://127.0.0.1:1');
    const e3 = await createClient({ url: enclave.url, collateralFrom: h3.url, policy, allowSim: true }).catch((x) => x);
    expect(e3.code).toBe('COLLATERAL_UNAVAILABLE');
    expect(row(e3.report, 'tdx.collateral.get')).toMatchObject({ status: 'fail', code: 'COLLATERAL_UNAVAILABLE' });
  });
});
