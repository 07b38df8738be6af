/**
 * A worker that cannot reach its enclave says why in its log, with the system error and the address, as an operator
 * needs it (`fetch failed: ECONNREFUSED 127.0.0.1:<port>`), not a bare "fetch failed".
 */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../enclave/log.ts';
import { serve } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { startWorker } from '../worker/agent.ts';
import { devModelApp } from '../worker/dev-model/server.ts';
import { simGpuSource } from '../worker/gpu.ts';
import { simVendors } from './stack/harness.ts';

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

describe('worker registration failures', () => {
  it('name the refused connection and the address', async () => {
    const { amd, nvidia } = await simVendors();
    const logs: string[] = [];
    const model = await serve({ fetch: devModelApp({ name: 'cause-model' }).fetch });
    const port = await closedPort();
    const worker = await startWorker({ upstream: model.url, enclaves: [`http://127.0.0.1:${port}`], tee: simProvider({ amd }), gpu: simGpuSource({ signer: nvidia }), log: createLogger({ service: 'worker', sim: true, sink: (l) => void logs.push(l) }), fetch, now: () => new Date() });
    try {
      const failed = () => logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'worker.registration_failed');
      await expect.poll(failed, { timeout: 10_000, interval: 20 }).toBeDefined();
      expect(failed()).toMatchObject({ code: 'UNREACHABLE', reason: `fetch failed: ECONNREFUSED 127.0.0.1:${port}` });
    } finally {
      await worker.stop();
      await model.close(100);
    }
  });
});
