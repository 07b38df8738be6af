/**
 * The worker's requests to its inference server, against the server vLLM and SGLang put in front of their engines:
 * a real uvicorn (test/support/uvicorn.ts), once with each of its HTTP/1.1 implementations (h11 and httptools), behind
 * `gm worker --tee sim` and `gm enclave --tee sim`, with gm's client. uvicorn closes a connection idle for one second
 * here (its default is five), so the worker's pool must notice a connection the server closed and never send on it.
 * Each answer is a function of its prompt (test/support/openai_asgi.py), so every check is on the exact bytes.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { connect, readSse, type TestClient } from './stack/client.ts';
import { type GmProcess, gmProcess } from './stack/processes.ts';
import { startUvicorn, type Uvicorn, uvicornAvailable } from './support/uvicorn.ts';

setDefaultBackend(nodeBackend);
const MODEL = 'uv-model';
const KEEP_ALIVE_S = 1;

/** What openai_asgi.py answers to `prompt` with `n` tokens. */
function expected(prompt: string, n: number): string {
  const d = createHash('sha256').update(prompt).digest('hex').slice(0, 8);
  return Array.from({ length: n }, (_, i) => `t${i}:${d} `).join('');
}

async function whole(client: TestClient, prompt: string, n: number): Promise<{ status: number; content: string }> {
  const r = await client.post('/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: n });
  const text = await new Response(r.body).text();
  if (r.status !== 200) return { status: r.status, content: text };
  return { status: r.status, content: (JSON.parse(text) as { choices: { message: { content: string } }[] }).choices[0]!.message.content };
}

describe.skipIf(!uvicornAvailable()).each(['h11', 'httptools'] as const)('the worker before uvicorn (%s)', (http) => {
  let upstream: Uvicorn;
  const running: GmProcess[] = [];
  let client: TestClient;
  beforeAll(async () => {
    upstream = await startUvicorn(http, KEEP_ALIVE_S);
    const enclave = await gmProcess(['enclave', '--tee', 'sim', '--router', 'first', '--listen', '127.0.0.1:0'], undefined, 'ignore');
    running.push(enclave);
    running.push(await gmProcess(['worker', '--tee', 'sim', '--upstream', upstream.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0', '--processes', '1'], /registered with/, 'ignore'));
    client = await connect(enclave.url);
  }, 60_000);
  afterAll(async () => {
    for (const p of running.reverse()) await p.stop();
    await upstream?.stop();
  });

  it('answers in turn on one kept-alive connection, each with its own prompt', async () => {
    const before = await upstream.stats();
    for (let i = 0; i < 10; i++) {
      const prompt = `prompt ${i} ${'é'.repeat(i)}`;
      expect(await whole(client, prompt, 5)).toEqual({ status: 200, content: expected(prompt, 5) });
    }
    const after = await upstream.stats();
    expect(after.requests - before.requests).toBe(10);
    expect(after.connections - before.connections).toBeLessThanOrEqual(1);
  });

  it('opens a new connection after uvicorn closed an idle one, and loses no request to the closed one', async () => {
    const before = await upstream.stats();
    for (let i = 0; i < 3; i++) {
      await sleep(KEEP_ALIVE_S * 1000 + 600);
      const prompt = `after idle ${i}`;
      expect(await whole(client, prompt, 3)).toEqual({ status: 200, content: expected(prompt, 3) });
    }
    const after = await upstream.stats();
    expect(after.requests - before.requests).toBe(3);
    // Every request came after uvicorn had closed the connection the one before it used.
    expect(after.connections - before.connections).toBe(3);
  }, 20_000);

  it('streams uvicorn\'s chunked answer event by event, with usage only when asked', async () => {
    const prompt = 'stream me';
    const plain = await client.post('/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: 40, stream: true }, { stream: true });
    expect(plain.status).toBe(200);
    const a = await readSse(plain.body);
    expect(a.text).toBe(expected(prompt, 40));
    expect(a.events.at(-1)!.data).toBe('[DONE]');
    expect(a.events.some((e) => e.data.includes('"usage"'))).toBe(false);

    const withUsage = await client.post('/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: 7, stream: true, stream_options: { include_usage: true } }, { stream: true });
    const b = await readSse(withUsage.body);
    expect(b.text).toBe(expected(prompt, 7));
    const usage = b.events.filter((e) => e.data.includes('"usage"')).map((e) => (JSON.parse(e.data) as { usage: { completion_tokens: number } }).usage);
    expect(usage).toHaveLength(1);
    expect(usage[0]!.completion_tokens).toBe(7);
  });

  it('keeps concurrent requests apart, whole and streamed', async () => {
    const answers = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => {
        const prompt = `concurrent ${i}`;
        if (i % 3 !== 0) return [await whole(client, prompt, 6), { status: 200, content: expected(prompt, 6) }];
        const r = await client.post('/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: 6, stream: true }, { stream: true });
        return [{ status: r.status, content: (await readSse(r.body)).text }, { status: 200, content: expected(prompt, 6) }];
      }),
    );
    for (const [got, want] of answers) expect(got).toEqual(want);
  });

  it('carries a large answer whole', async () => {
    const prompt = 'a long answer';
    const r = await whole(client, prompt, 20_000);
    expect(r.status).toBe(200);
    expect(r.content.length).toBe(expected(prompt, 20_000).length);
    expect(r.content).toBe(expected(prompt, 20_000));
  });

  it('passes uvicorn\'s 4xx answer on as it is, and turns a 5xx into a gm error', async () => {
    const bad = await whole(client, 'status:422', 1);
    expect(bad.status).toBe(422);
    expect(JSON.parse(bad.content)).toEqual({ error: { message: 'asked for', type: 'test' } });
    const failed = await whole(client, 'status:500', 1);
    expect(failed.status).toBeGreaterThanOrEqual(500);
    expect(failed.content).toContain('UPSTREAM_FAILED');
    expect(failed.content).not.toContain('asked for');
  });
});
