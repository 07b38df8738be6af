/**
 * `gm proxy` benchmark: what the local OpenAI endpoint (cli/proxy/server.ts) costs on top of the SDK's encrypted
 * fetch, both against the same in-process sim stack (enclave, worker, dev-model answering at once) in the same run.
 *
 * - per request: a non-streaming chat completion through the proxy (plain HTTP to loopback, then the SDK path) vs
 *   the same request through client.fetch, timed alternately; the difference is the proxy's added latency;
 * - throughput at 16 concurrent requests (non-streaming and streaming), proxy vs SDK, as requests per second, the
 *   two paths run in alternating rounds so machine load falls on both.
 */
import { createClient, type GmClient } from '../client/index.ts';
import { outboundFetch } from '../cli/proxy/outbound.ts';
import { startProxy } from '../cli/proxy/server.ts';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { startStack } from '../test/stack/harness.ts';
import { atLeast, atMost, type BenchRow, interleavedMedians } from './harness.ts';

export const title = 'gm proxy (added latency, throughput at c=16 vs the SDK path)';

const CONCURRENCY = 16;

export async function run(): Promise<BenchRow[]> {
  setDefaultBackend(nodeBackend);
  const stack = await startStack({ workers: [{ model: { tokenMs: 0 } }], captureLogs: true });
  const out = outboundFetch({});
  try {
    const model = stack.workers[0]!.modelName;
    const sdk: GmClient = await createClient({ url: stack.enclaveUrl, allowSim: true });
    // The proxy as `gm proxy` runs it: its own verified client, outbound through undici's env-proxy agent.
    const proxied = await createClient({ url: stack.enclaveUrl, allowSim: true, fetch: out.fetch });
    const p = await startProxy({ client: proxied, hostname: '127.0.0.1', port: 0 });
    const body = (stream: boolean) => JSON.stringify({ model, messages: [{ role: 'user', content: 'x'.repeat(1024) }], max_tokens: 16, stream });
    const headers = { 'content-type': 'application/json' };
    const viaSdk = (stream: boolean) => async () => {
      const r = await sdk.fetch(`${sdk.baseURL}/chat/completions`, { method: 'POST', headers, body: body(stream) });
      if (r.status !== 200) throw new Error(`SDK path answered ${r.status}`);
      await r.text();
    };
    const viaProxy = (stream: boolean) => async () => {
      const r = await fetch(`${p.url}/v1/chat/completions`, { method: 'POST', headers, body: body(stream) });
      if (r.status !== 200) throw new Error(`proxy answered ${r.status}`);
      await r.text();
    };

    const [proxyUs = 0, sdkUs = 0] = await interleavedMedians([viaProxy(false), viaSdk(false)], 20, 10);

    const rate = async (fn: () => Promise<void>, n: number): Promise<number> => {
      let next = 0;
      const t = performance.now();
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (next++ < n) await fn();
      }));
      return n / ((performance.now() - t) / 1000);
    };
    const rates = async (stream: boolean): Promise<[number, number]> => {
      await rate(viaProxy(stream), 64);
      await rate(viaSdk(stream), 64);
      const a: number[] = [];
      const b: number[] = [];
      for (let i = 0; i < 4; i++) {
        a.push(await rate(viaProxy(stream), 160));
        b.push(await rate(viaSdk(stream), 160));
      }
      const med = (x: number[]) => x.sort((u, v) => u - v)[x.length >> 1]!;
      return [med(a), med(b)];
    };
    const [proxyRps, sdkRps] = await rates(false);
    const [proxyStreamRps, sdkStreamRps] = await rates(true);
    await p.close();
    return [
      atMost('proxy non-streaming chat, 1 KiB prompt, per request', proxyUs, 'µs', 'the same request through client.fetch', sdkUs, 1.5, `added ${(proxyUs - sdkUs).toFixed(0)} µs per request`),
      atLeast(`proxy throughput at c=${CONCURRENCY}, non-streaming`, proxyRps, 'req/s', 'client.fetch at the same concurrency', sdkRps, 0.8),
      atLeast(`proxy throughput at c=${CONCURRENCY}, streaming`, proxyStreamRps, 'req/s', 'client.fetch at the same concurrency', sdkStreamRps, 0.8),
    ];
  } finally {
    await out.close();
    await stack.stop();
  }
}
