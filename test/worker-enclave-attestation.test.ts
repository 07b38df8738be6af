/**
 * A worker registers only with enclaves it attested, and serves only under a credential the attested enclave gave
 * it (docs/protocol.md §12.1, docs/threat-model.md):
 * - an enclave whose measurement the worker's --enclave-policy does not list is not registered with (code logged);
 * - a party on the path that swaps the receipt key in the evidence for its own fails the REPORT_DATA binding;
 * - a party on the path that replaces the sealed credential with one of its own (the worker's key configuration is
 *   public, so it can seal one) is refused: the answer is not signed by the attested receipt key;
 * - an answer replayed from an earlier registration is refused (it signs another registration).
 * Its trust anchors, network and clock are the ones its options give:
 * - hardware evidence is verified against the trust store given, and a real worker without one does not start;
 * - every request goes through the fetch given, and the clock given dates the attestation and the registration.
 * Waits are polls on log lines, never sleeps.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBundle, encodeBundle } from '../attestation/bundle.ts';
import { fromBase64, toBase64 } from '../attestation/bytes.ts';
import { createSimAmd, type SimAmd } from '../attestation/sevsnp/sim.ts';
import { ANCHOR_FILES, type AnchorPin, TrustStore } from '../attestation/trust.ts';
import { parseCertificate } from '../attestation/x509/cert.ts';
import type { FetchLike } from '../client/attest.ts';
import { parseClientPolicy, SIM_MEASUREMENT_HEX } from '../client/policy.ts';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { generateEnclaveReceiptKey } from '../enclave/ledger/signer.ts';
import { createLogger } from '../enclave/log.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { chooseKeyConfig, decodeKeyConfigs } from '../protocol/ohttp.ts';
import { newCredential, sealCredential } from '../protocol/worker-auth.ts';
import { startWorker, type WorkerOptions } from '../worker/agent.ts';
import { devModelApp } from '../worker/dev-model/server.ts';
import { simGpuSource } from '../worker/gpu.ts';
import { simVendors, simWorkerPolicy } from './stack/harness.ts';
import { hasTrustAnchors, trustStore } from './vectors.ts';

type Vendors = Awaited<ReturnType<typeof simVendors>>;
let vendors: Vendors;
let enclave: Enclave;
let enclaveServed: Served;
let model: Served;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  vendors = await simVendors();
  enclave = await createEnclave({ tee: simProvider({ amd: vendors.amd }), log: createLogger({ service: 'enclave', sim: true, sink: () => undefined }), workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 } });
  enclaveServed = await serve({ fetch: enclave.app.fetch });
  model = await serve({ fetch: devModelApp({ name: 'attested-only' }).fetch });
}, 60_000);
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await enclave?.close();
  await enclaveServed?.close(100);
  await model?.close(100);
});

/** A worker pointed at `url` (`more` replaces any option); its log lines, parsed. */
async function workerAt(url: string, policy?: Record<string, unknown>, more: Partial<WorkerOptions> = {}) {
  const lines: Record<string, unknown>[] = [];
  const w = await startWorker({
    upstream: model.url, enclaves: [url], tee: simProvider({ amd: vendors.amd }), gpu: simGpuSource({ signer: vendors.nvidia }),
    log: createLogger({ service: 'worker', sim: true, sink: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) }),
    fetch, now: () => new Date(),
    ...(policy ? { enclavePolicy: parseClientPolicy(policy) } : {}),
    ...more,
  });
  w.registered.catch(() => undefined);
  closers.push(() => w.stop());
  const failure = () => lines.find((l) => l.event === 'worker.registration_failed');
  return { w, lines, failure };
}

/** A party on the path to the enclave: forwards everything, rewriting what `edit` changes. */
async function onPath(edit: { attestation?: (b: Uint8Array) => Uint8Array; answer?: (request: Record<string, unknown>, answer: Record<string, unknown>) => Promise<void> }) {
  const served = await serve({
    fetch: async (req: Request) => {
      const u = new URL(req.url);
      const body = req.method === 'POST' ? await req.arrayBuffer() : undefined;
      const r = await fetch(`${enclaveServed.url}${u.pathname}${u.search}`, { method: req.method, headers: req.headers, ...(body ? { body } : {}) });
      if (u.pathname === '/v1/attestation' && edit.attestation && r.ok) return new Response(edit.attestation(new Uint8Array(await r.arrayBuffer())) as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/cbor' } });
      if (u.pathname === '/v1/workers' && req.method === 'POST' && edit.answer && r.ok) {
        const answer = (await r.json()) as Record<string, unknown>;
        await edit.answer(JSON.parse(new TextDecoder().decode(body)) as Record<string, unknown>, answer);
        return Response.json(answer);
      }
      return r;
    },
  });
  closers.push(() => served.close(100));
  return served;
}

describe('a worker attests the enclave before registering', () => {
  it('registers with an enclave its policy allows, over an honest path', async () => {
    const path = await onPath({});
    const { w } = await workerAt(path.url);
    await w.registered;
    expect(enclave.registry.usable(w.id)).toBeDefined();
  });

  it('does not register with an enclave whose measurement the policy does not list, and logs the code', async () => {
    const { w, failure } = await workerAt(enclaveServed.url, { 'sev-snp': { measurements: ['ab'.repeat(48)], allowDebug: false } });
    await expect(w.registered).rejects.toMatchObject({ code: 'SNP_POLICY_MEASUREMENT' });
    expect(failure()).toMatchObject({ event: 'worker.registration_failed', code: 'SNP_POLICY_MEASUREMENT' });
    expect(enclave.registry.usable(w.id)).toBeUndefined();
  });

  it('refuses evidence whose receipt key was swapped on the path (REPORT_DATA binding)', async () => {
    const own = generateEnclaveReceiptKey();
    const path = await onPath({ attestation: (b) => { const d = decodeBundle(b); return encodeBundle({ ...d, keys: { ...d.keys, receipt: own.publicKey } }); } });
    const { w, failure } = await workerAt(path.url);
    await expect(w.registered).rejects.toMatchObject({ code: 'SNP_POLICY_REPORT_DATA' });
    expect(failure()).toMatchObject({ code: 'SNP_POLICY_REPORT_DATA' });
    expect(enclave.registry.usable(w.id)).toBeUndefined();
  });

  it('refuses a credential swapped on the path for one sealed by someone else', async () => {
    const path = await onPath({
      answer: async (request, answer) => {
        const worker = answer.worker as Record<string, unknown>;
        const config = chooseKeyConfig(decodeKeyConfigs(decodeBundle(fromBase64(request.bundle as string)).keys.ohttp));
        worker.credential = toBase64(await sealCredential(config, worker.id as string, newCredential()));
      },
    });
    const { w, failure } = await workerAt(path.url);
    await expect(w.registered).rejects.toMatchObject({ code: 'REGISTRATION_ANSWER_SIGNATURE' });
    expect(failure()).toMatchObject({ code: 'REGISTRATION_ANSWER_SIGNATURE' });
  });

  it('refuses an answer replayed from an earlier registration', async () => {
    let first: Record<string, unknown> | undefined;
    const path = await onPath({
      answer: async (_request, answer) => {
        first ??= structuredClone(answer.worker as Record<string, unknown>);
        Object.assign(answer.worker as Record<string, unknown>, { credential: first.credential, signature: first.signature });
      },
    });
    const { w, lines } = await workerAt(path.url);
    await w.registered;
    await w.rotateKeys(); // re-registers at once; the old answer names the first registration, not this one
    await expect.poll(() => lines.find((l) => l.event === 'worker.registration_failed'), { timeout: 10_000, interval: 20 }).toMatchObject({ code: 'REGISTRATION_ANSWER_SIGNATURE' });
  });

  it('a worker on a real TEE without an enclave policy does not start (sim evidence is never its default)', async () => {
    const tee = { ...simProvider({ amd: vendors.amd }), sim: false };
    await expect(startWorker({ upstream: model.url, enclaves: [enclaveServed.url], tee, gpu: simGpuSource({ signer: vendors.nvidia }), log: createLogger({ service: 'worker', sim: false, sink: () => undefined }), fetch, now: () => new Date() }))
      .rejects.toMatchObject({ code: 'ENCLAVE_POLICY_REQUIRED' });
  });
});

const urlOf = (i: string | URL | Request) => new URL(typeof i === 'string' ? i : i instanceof URL ? i.href : i.url);

/**
 * The sim enclave's evidence presented as hardware: the bundle's platform `sim-sev-snp` rewritten to `sev-snp` (the
 * platform is not bound in REPORT_DATA). Its AMD chain is the sim vendor's, so it verifies only against a trust store
 * holding the sim ARK and ASK for Genoa, never against the pinned AMD roots.
 */
const asHardware: FetchLike = async (i, init) => {
  const r = await fetch(i, init);
  if (urlOf(i).pathname !== '/v1/attestation' || !r.ok) return r;
  const b = decodeBundle(new Uint8Array(await r.arrayBuffer()));
  expect(b.platform).toBe('sim-sev-snp');
  return new Response(encodeBundle({ ...b, platform: 'sev-snp' }) as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/cbor' } });
};

/** A store whose Genoa ARK and ASK are this sim vendor's (built directly: loading checks the pins, which they fail). */
function genoaStore(amd: Pick<SimAmd, 'arkDer' | 'askDer'>): TrustStore {
  const pin = (role: AnchorPin['role']) => ANCHOR_FILES.flatMap((f) => f.pins).find((p) => p.role === role && p.product === 'Genoa')!;
  return new TrustStore([
    { pin: pin('amd-ark'), cert: parseCertificate(amd.arkDer), file: 'sim' },
    { pin: pin('amd-ask'), cert: parseCertificate(amd.askDer), file: 'sim' },
  ]);
}

/** A worker on a "real" TEE (sim evidence, so the sim-admitting enclave takes it) that accepts the enclave as hardware. */
const realTee = () => ({ ...simProvider({ amd: vendors.amd }), sim: false });
const hardwarePolicy = { 'sev-snp': { measurements: [SIM_MEASUREMENT_HEX], allowDebug: false }, allowSimWorkers: true };

describe("a worker's trust anchors, network and clock are its options", () => {
  it('verifies hardware evidence against the trust store given: registered under the roots it chains to, refused under others', async () => {
    const trusted = await workerAt(enclaveServed.url, hardwarePolicy, { tee: realTee(), fetch: asHardware, trust: genoaStore(vendors.amd) });
    await trusted.w.registered;
    expect(enclave.registry.usable(trusted.w.id)).toBeDefined();

    // The same enclave and path, with a store whose Genoa roots are another vendor's keys: the chain does not verify.
    const refused = await workerAt(enclaveServed.url, hardwarePolicy, { tee: realTee(), fetch: asHardware, trust: genoaStore(await createSimAmd({ product: 'Genoa' })) });
    await expect(refused.w.registered).rejects.toMatchObject({ code: 'CERT_SIGNATURE' });
    expect(refused.failure()).toMatchObject({ code: 'CERT_SIGNATURE' });
    expect(enclave.registry.usable(refused.w.id)).toBeUndefined();
  });

  it.skipIf(!hasTrustAnchors)('refuses sim-signed evidence presented as hardware under the pinned AMD roots', async () => {
    const { w, failure } = await workerAt(enclaveServed.url, hardwarePolicy, { tee: realTee(), fetch: asHardware, trust: await trustStore() });
    // The sim ASK's name is not the pinned ASK's: the VCEK's issuer matches no certificate of the pinned chain.
    await expect(w.registered).rejects.toMatchObject({ code: 'CERT_ISSUER_MISMATCH' });
    expect(failure()).toMatchObject({ code: 'CERT_ISSUER_MISMATCH' });
    expect(enclave.registry.usable(w.id)).toBeUndefined();
  });

  it('a worker on a real TEE without a trust store does not start (a sim one needs none, as above)', async () => {
    await expect(startWorker({ upstream: model.url, enclaves: [enclaveServed.url], tee: realTee(), gpu: simGpuSource({ signer: vendors.nvidia }), log: createLogger({ service: 'worker', sim: false, sink: () => undefined }), fetch, now: () => new Date(), enclavePolicy: parseClientPolicy(hardwarePolicy) }))
      .rejects.toMatchObject({ code: 'TRUST_STORE_REQUIRED' });
  });

  it('makes every request through the fetch given, and dates attestation and registration by the clock given', async () => {
    const seen: string[] = [];
    let signedAt: unknown;
    // Host names no resolver knows: only this fetch can reach the enclave and the upstream behind them.
    const routed: FetchLike = async (i, init) => {
      const u = urlOf(i);
      seen.push(`${init?.method ?? 'GET'} ${u.host}${u.pathname}`);
      if (u.host === 'upstream.invalid') return Response.json({ data: [{ id: 'listed-by-the-fetch-given' }] });
      if (u.pathname === '/v1/workers' && typeof init?.body === 'string') signedAt = (JSON.parse(init.body) as { time?: unknown }).time;
      return fetch(`${enclaveServed.url}${u.pathname}${u.search}`, init);
    };
    const t = Date.now() - 5_000;
    const { w } = await workerAt('http://enclave.invalid', undefined, { upstream: 'http://upstream.invalid', fetch: routed, now: () => new Date(t) });
    await w.registered;
    expect(w.models).toEqual(['listed-by-the-fetch-given']);
    expect(seen).toEqual(['GET upstream.invalid/v1/models', 'GET enclave.invalid/v1/attestation', 'POST enclave.invalid/v1/workers']);
    expect(signedAt).toBe(t);
    expect(enclave.registry.usable(w.id)).toBeDefined();

    // An hour ahead, the enclave's fresh evidence is an hour old by this clock: refused as stale before registering.
    const ahead = await workerAt(enclaveServed.url, undefined, { now: () => new Date(Date.now() + 3600_000) });
    await expect(ahead.w.registered).rejects.toMatchObject({ code: 'EVIDENCE_STALE' });
    expect(enclave.registry.usable(ahead.w.id)).toBeUndefined();
  });
});
