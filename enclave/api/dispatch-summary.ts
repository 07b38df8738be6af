/**
 * Per-worker dispatch counts for the log, aggregated over a window (docs/operator.md §7.1). A log line written when a
 * request is routed, naming its worker, would let whoever reads the logs (the host) link a request it relayed to the
 * worker, hence the model, that served it. So per-request lines name no worker, and this summary says how many
 * dispatches each worker had, at fixed times unrelated to any request, and only once the window holds at least
 * `minDispatches` in total (a quieter window is carried into the next one, so a lone request is never singled out).
 */
import type { Logger } from '../log.ts';
import type { Counter } from 'prom-client';

export interface DispatchSummaryOptions {
  /** The per-worker counter (`gm_dispatch_total{worker,outcome}`). */
  readonly counter: Counter<string>;
  readonly log: Logger;
  /** A window with fewer dispatches than this (all workers together) is not logged but carried over. */
  readonly minDispatches: number;
}

/** Returns `flush`, which logs `dispatch.summary` per worker for the dispatches since the last logged window. */
export function dispatchSummary(o: DispatchSummaryOptions): () => Promise<void> {
  let logged = new Map<string, number>();
  const k = (worker: string, outcome: string) => `${worker}\u0000${outcome}`;
  return async () => {
    const now = new Map<string, number>();
    for (const { labels: l, value: n } of (await o.counter.get()).values) {
      if (typeof l.worker === 'string' && typeof l.outcome === 'string') now.set(k(l.worker, l.outcome), n);
    }
    const byWorker = new Map<string, Record<string, number>>();
    let total = 0;
    for (const [key, n] of now) {
      const d = n - (logged.get(key) ?? 0);
      if (d <= 0) continue;
      const [worker, outcome] = key.split('\u0000') as [string, string];
      const rec = byWorker.get(worker) ?? {};
      rec[outcome] = d;
      byWorker.set(worker, rec);
      total += d;
    }
    if (total === 0 || total < o.minDispatches) return;
    // Sorted by worker id, so the order of lines says nothing about which worker was used last.
    for (const w of [...byWorker.keys()].sort()) o.log.info('dispatch.summary', { worker: w, ...byWorker.get(w)! });
    logged = now;
  };
}
