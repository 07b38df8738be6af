/**
 * The worker agent registers with one or more enclaves and renews (docs/operator.md §3): one worker started
 * with two enclave URLs is verified by both, serves requests routed by each, and renews its registration with each
 * at the interval the enclave asks for (half the freshness window), which moves that enclave's expiry forward.
 * Waits are polls on the observable outcome (log lines, registry state), never fixed sleeps.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnclave, type Enclave } from '../enclave/app.ts';
import { createLogger } from '../enclave/log.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { startWorker, type RunningWorker } from '../worker/agent.ts';
import { devAnswer, devModelApp } from '../worker/dev-model/server.ts';
import { simGpuSource } from '../worker/gpu.ts';
import { connect } from './stack/client.ts';
import { simVendors, simWorkerPolicy } from './stack/harness.ts';

const FRESHNESS_MS = 6_000; // the enclave asks for renewal after 3 s
const logs: string[] = [];
const enclaves: { enclave: Enclave; served: Served }[] = [];
let model: Served;
let worker: RunningWorker;

beforeAll(async () => {
  const { amd, nvidia } = await simVendors();
  const log = (service: string) => createLogger({ service, sim: true, level: 'debug', sink: (l) => void logs.push(l) });
  for (let i = 0; i < 2; i++) {
    const enclave = await createEnclave({ tee: simProvider({ amd }), log: log(`enclave-${i}`), workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: FRESHNESS_MS } });
    enclaves.push({ enclave, served: await serve({ fetch: enclave.app.fetch }) });
  }
  model = await serve({ fetch: devModelApp({ name: 'two-homes' }).fetch });
  worker = await startWorker({ upstream: model.url, enclaves: enclaves.map((e) => e.served.url), tee: simProvider({ amd }), gpu: simGpuSource({ signer: nvidia }), log: log('worker'), fetch, now: () => new Date() });
  await worker.registered;
}, 60_000);
afterAll(async () => {
  await worker?.stop();
  for (const e of enclaves) {
    await e.enclave.close();
    await e.served.close(100);
  }
  await model?.close(100);
});

const registrations = (url: string) => logs.filter((l) => l.includes('"worker.registered"') && l.includes(`"enclave":"${url}"`)).length;

describe('worker registration with several enclaves', () => {
  it('is verified by each enclave and serves requests routed by each', async () => {
    for (const { enclave, served } of enclaves) {
      expect(enclave.registry.usable(worker.id)).toBeDefined();
      const c = await connect(served.url);
      const r = await c.post('/v1/chat/completions', { model: 'two-homes', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
      expect(r.status).toBe(200);
      expect(((await new Response(r.body).json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(devAnswer('two-homes', 3));
    }
  });

  it('renews with each enclave before the freshness window ends, extending the expiry', async () => {
    const before = enclaves.map(({ enclave }) => enclave.registry.usable(worker.id)!.expiresAt);
    const counts = enclaves.map(({ served }) => registrations(served.url));
    for (const [i, { served }] of enclaves.entries()) await expect.poll(() => registrations(served.url), { timeout: 20_000, interval: 50 }).toBeGreaterThan(counts[i]!);
    for (const [i, { enclave }] of enclaves.entries()) {
      const w = enclave.registry.usable(worker.id);
      expect(w, `enclave ${i} still serves the worker`).toBeDefined();
      expect(w!.expiresAt).toBeGreaterThan(before[i]!);
    }
  });
});
