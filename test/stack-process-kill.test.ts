/**
 * The stack as separate `gm` processes (enclave, worker, dev-model, all sim), and the worker
 * process killed with SIGKILL in the middle of a streamed answer. The client must get the tokens streamed so far,
 * then a clear `event: error` (WORKER_FAILED_MID_STREAM), never a `[DONE]` that would pass the cut answer as whole.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { connect, readSse } from './stack/client.ts';
import { type GmProcess, gmProcess } from './stack/processes.ts';

const running: GmProcess[] = [];
afterAll(async () => {
  for (const p of running.reverse()) await p.stop();
});

describe('worker process killed mid-stream', () => {
  it('ends the client stream with a clear error event after the tokens already sent', async () => {
    const model = await gmProcess(['dev-model', '--listen', '127.0.0.1:0', '--name', 'kill-dev', '--token-ms', '20'], undefined, 'ignore');
    running.push(model);
    const enclave = await gmProcess(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0'], undefined, 'ignore');
    running.push(enclave);
    const worker = await gmProcess(['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0'], /registered with/, 'ignore');
    running.push(worker);

    const client = await connect(enclave.url);
    const r = await client.post('/v1/chat/completions', { model: 'kill-dev', stream: true, messages: [{ role: 'user', content: 'count slowly' }], max_tokens: 500 }, { stream: true });
    expect(r.status).toBe(200);
    const [mine, rest] = r.body.tee();
    const reader = mine.getReader();
    const first = await reader.read(); // at least one token event has arrived
    expect(first.done).toBe(false);
    await worker.stop('SIGKILL');
    void reader.cancel();
    const { text, events } = await readSse(rest);
    expect(text.length).toBeGreaterThan(0);
    const last = events.at(-1)!;
    expect(last.event).toBe('error');
    expect(JSON.parse(last.data).error.code).toBe('WORKER_FAILED_MID_STREAM');
    expect(events.some((e) => e.data === '[DONE]')).toBe(false);
  }, 60_000);
});
