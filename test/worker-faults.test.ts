/**
 * Worker faults an operator must see: a worker in front of a model server that is down is refused at registration
 * with a reason (not counted as a verified worker serving nothing), and says why in its own log; a worker that
 * stops answering (its socket closed, as after a crash) leaves the verified set within one health interval.
 */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startStack } from './stack/harness.ts';

describe('worker faults', () => {
  it('a worker whose upstream is down is refused (WORKER_NO_MODELS) and logs the cause', async () => {
    // A loopback port that was just free: nothing listens there, so the connection is refused.
    const port = await new Promise<number>((ok) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => ok(p));
      });
    });
    const s = await startStack({ workers: [{}, { upstream: `http://127.0.0.1:${port}`, model: { name: 'unreachable' }, expectRefusal: true }] });
    try {
      expect(await s.workers[1]!.refusal).toBe('WORKER_NO_MODELS');
      expect(s.enclave.registry.list().length).toBe(1);
      const lines = s.logs.filter((l) => l.includes("worker-2"));
      expect(lines.some((l) => l.includes('"worker.upstream_unavailable"') && l.includes('"cause":"ECONNREFUSED"'))).toBe(true);
      expect(lines.some((l) => l.includes('"worker.no_models"'))).toBe(true);
    } finally {
      await s.stop();
    }
  }, 60_000);

  it('a worker that stops answering leaves the verified set within one health interval (default 5 s, at most 15 s)', async () => {
    const s = await startStack();
    try {
      expect(s.enclave.registry.list().length).toBe(2);
      const gone = s.workers[1]!.worker;
      // A crash, not a clean stop: the socket goes away, nothing is withdrawn or deregistered.
      gone.served.server.closeAllConnections();
      await new Promise<void>((ok) => gone.served.server.close(() => ok()));
      const t0 = Date.now();
      while (s.enclave.registry.list().length === 2 && Date.now() - t0 < 15_000) await new Promise((ok) => setTimeout(ok, 100));
      const took = Date.now() - t0;
      expect(s.enclave.registry.list().map((w) => w.id)).toEqual([s.workers[0]!.worker.keys.workerId]);
      expect(took).toBeLessThan(15_000);
      expect(s.logs.some((l) => l.includes('"worker.unhealthy"'))).toBe(true);
      expect(s.logs.some((l) => l.includes('"worker.dropped"'))).toBe(true);
    } finally {
      await s.stop();
    }
  }, 60_000);
});
