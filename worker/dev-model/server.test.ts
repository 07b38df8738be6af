import { afterAll, describe, expect, it } from 'vitest';
import { serve } from '../../enclave/serve.ts';
import { devAnswer, devModelApp } from './server.ts';

const post = (app: ReturnType<typeof devModelApp>, path: string, body: unknown) =>
  app.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('dev-model', () => {
  const app = devModelApp({ name: 'm1' });
  it('answers chat completions with the deterministic tokens', async () => {
    const r = await post(app, '/v1/chat/completions', { model: 'm1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
    const j = (await r.json()) as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
    expect(j.choices[0]!.message.content).toBe(devAnswer('m1', 5));
    expect(j.usage.completion_tokens).toBe(5);
  });
  it('streams SSE chunks that concatenate to the same answer, then [DONE]', async () => {
    const r = await post(app, '/v1/chat/completions', { model: 'm1', stream: true, messages: [], max_tokens: 7 });
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    const events = (await r.text()).split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const text = events.slice(0, -1).map((e) => (JSON.parse(e) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(devAnswer('m1', 7));
  });
  it('serves models, embeddings and text completions', async () => {
    expect(((await (await app.request('/v1/models')).json()) as { data: { id: string }[] }).data[0]!.id).toBe('m1');
    const e = (await (await post(app, '/v1/embeddings', { model: 'm1', input: ['a', 'b'] })).json()) as { data: { embedding: number[] }[] };
    expect(e.data).toHaveLength(2);
    expect(e.data[0]!.embedding).toHaveLength(8);
    const t = (await (await post(app, '/v1/completions', { model: 'm1', prompt: 'x', max_tokens: 3 })).json()) as { choices: { text: string }[] };
    expect(t.choices[0]!.text).toBe(devAnswer('m1', 3));
  });

  const served: { close(): Promise<void> }[] = [];
  afterAll(async () => {
    await Promise.all(served.map((s) => s.close()));
  });
  it('with failAfter, tears the connection down mid-stream', async () => {
    const s = await serve({ fetch: devModelApp({ name: 'm2', failAfter: 2 }).fetch });
    served.push(s);
    const r = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ stream: true, max_tokens: 10 }) });
    expect(r.status).toBe(200);
    const reader = r.body!.getReader();
    let got = '';
    const err = await (async () => {
      for (;;) {
        const x = await reader.read();
        if (x.done) return undefined;
        got += new TextDecoder().decode(x.value);
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(got).toContain('[m2]'); // tokens before the failure arrived
    expect(got).not.toContain('[DONE]');
  });
});
