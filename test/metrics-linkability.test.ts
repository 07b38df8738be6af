/**
 * What the host can read about a request it relayed: the enclave's public /metrics and its log lines must not move
 * in a way that names the worker (hence the model) that served it. Per-worker counters are on the operator endpoint
 * only (bearer token), and the log names workers only in windowed summaries, never in a per-request line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const TOKEN = 'op-token-5d1c0b7e9a2f4d68b3c1';

/** Series (name and labels) whose value changed between two expositions; histogram buckets left out (timing only). */
function moved(before: string, after: string): string[] {
  const parse = (t: string) => new Map(t.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), l.slice(l.lastIndexOf(' ') + 1)]));
  const a = parse(before);
  const b = parse(after);
  return [...b].filter(([k, v]) => a.get(k) !== v && !k.includes('_bucket{') && !k.includes('_sum')).map(([k]) => k).sort();
}

describe('metadata the host must not learn', () => {
  let s: Stack;
  let client: TestClient;
  beforeAll(async () => {
    s = await startStack({ enclave: { operatorToken: TOKEN, dispatchSummary: { intervalMs: 150, minDispatches: 4 } } });
    client = await connect(s.enclaveUrl);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('public /metrics moves the same way whichever worker and model served a request', async () => {
    const workerIds = s.workers.map((w) => w.worker.id);
    const scrape = async () => (await fetch(`${s.enclaveUrl}/metrics`)).text();
    const diffs: string[][] = [];
    for (const model of ['gm-dev-1', 'gm-dev-2', 'gm-dev-1', 'gm-dev-2']) {
      const before = await scrape();
      const logsBefore = s.logs.length;
      const r = await client.post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
      expect(r.status).toBe(200);
      await new Response(r.body).arrayBuffer();
      const after = await scrape();
      for (const id of workerIds) expect(after).not.toContain(id);
      expect(after).not.toContain('gm-dev');
      diffs.push(moved(before, after));
      // No log line written for this request names its worker (or its model); the windowed summary may fall here.
      for (const l of s.logs.slice(logsBefore).filter((x) => !x.includes('"dispatch.summary"'))) {
        for (const id of workerIds) expect(l).not.toContain(id);
        expect(l).not.toContain(model);
      }
    }
    expect(diffs[0]!.length).toBeGreaterThan(0);
    for (const d of diffs) expect(d).toEqual(diffs[0]);
    const routed = s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'request.routed');
    expect(routed.length).toBeGreaterThanOrEqual(4);
    for (const l of routed) expect(l.worker).toBeUndefined();
  });

  it('per-worker counters are served only to the operator token', async () => {
    const op = (auth?: string) => fetch(`${s.enclaveUrl}/v1/operator/metrics`, auth ? { headers: { authorization: auth } } : {});
    expect((await op()).status).toBe(401);
    expect((await op('Bearer not-the-token-at-all-000')).status).toBe(401);
    expect((await op(`Basic ${TOKEN}`)).status).toBe(401);
    const r = await op(`Bearer ${TOKEN}`);
    expect(r.status).toBe(200);
    const text = await r.text();
    for (const w of s.workers) expect(text).toContain(`gm_dispatch_total{outcome="ok",worker="${w.worker.id}"} 2`);
  });

  it('the log gives per-worker counts only as summaries over a window', async () => {
    await expect.poll(() => s.logs.filter((l) => l.includes('"dispatch.summary"')).length, { timeout: 5_000 }).toBe(2);
    const sums = s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'dispatch.summary');
    expect(sums.map((l) => [l.worker, l.ok])).toEqual(s.workers.map((w) => w.worker.id).sort().map((id) => [id, 2]));
    // One more request is fewer than a window's minimum: it is carried over, not logged on its own.
    const r = await client.post('/v1/chat/completions', { model: 'gm-dev-1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    await new Response(r.body).arrayBuffer();
    await new Promise((x) => setTimeout(x, 600));
    expect(s.logs.filter((l) => l.includes('"dispatch.summary"')).length).toBe(2);
  });
});
