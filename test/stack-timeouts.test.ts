/**
 * Limits on the routing path (docs/operator.md §2): the request head size (431 from Node before any handler), the first-byte
 * timeout towards a worker (a clear 504 WORKER_TIMEOUT, after trying the candidates), and the idle timeout between
 * chunks of a stream (a clear `event: error` once tokens were sent).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, readSse, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

describe('stack timeouts and head limits', () => {
  let s: Stack;
  let client: TestClient;
  beforeAll(async () => {
    s = await startStack({ router: 'first', workers: [{ model: { name: 'stall', tokenMs: 5_000 } }], enclave: { timeouts: { firstByteMs: 400, idleMs: 400 } } });
    client = await connect(s.enclaveUrl);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('answers 431 to an oversized request head before any handler runs', async () => {
    const r = await fetch(`${s.enclaveUrl}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req', 'x-pad': 'a'.repeat(20_000) }, body: new Uint8Array(10) });
    expect(r.status).toBe(431);
  });

  it('gives up on a worker that does not answer within the first-byte timeout', async () => {
    const t0 = Date.now();
    const r = await client.post('/v1/chat/completions', { model: 'stall', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    expect(Date.now() - t0).toBeLessThan(4_500); // the whole answer would take >= 5 s: the 400 ms timeout cut it, with room for a loaded machine
    expect(r.status).toBe(504);
    expect(((await new Response(r.body).json()) as { error: { code: string } }).error.code).toBe('WORKER_TIMEOUT');
  });

  it('ends a stream that goes idle longer than the idle timeout with a clear error event', async () => {
    const r = await client.post('/v1/chat/completions', { model: 'stall', stream: true, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 }, { stream: true });
    const { text, events } = await readSse(r.body);
    expect(text).toBe('[stall]');
    expect(events.at(-1)!.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data).error.code).toBe('WORKER_FAILED_MID_STREAM');
    expect(s.logs.some((l) => l.includes('"dispatch.mid_stream_failure"') && l.includes('WORKER_TIMEOUT'))).toBe(true);
  });
});
