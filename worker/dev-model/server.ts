/**
 * `gm dev-model`: a small OpenAI-compatible server for the demo, the tests and the benchmarks. Answers are
 * deterministic and independent of the prompt (so a test can predict every token and a leak of the prompt cannot
 * come from here): token i of model M is `devToken(M, i)`. Streams SSE `chat.completion.chunk` events at a fixed
 * token interval; `failAfter` kills the connection after that many tokens (a worker dying mid-stream).
 * OpenAI API shapes: POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models.
 */
import { createHash } from 'node:crypto';
import { Hono } from 'hono';

export interface DevModelOptions {
  readonly name?: string;
  /** Milliseconds between streamed tokens (0: as fast as possible). */
  readonly tokenMs?: number;
  /** Abort the connection after this many streamed tokens (failure injection). */
  readonly failAfter?: number;
  /** Default number of tokens when the request sets no max_tokens. */
  readonly defaultTokens?: number;
  /** Report this many times the completion tokens served (a worker inflating its usage; tests). */
  readonly inflateUsage?: number;
}

const WORDS = ['The', ' quick', ' enclave', ' routes', ' sealed', ' tokens', ' to', ' attested', ' workers', ',', ' and', ' nobody', ' else', ' reads', ' them', '.'];

/** The i-th token of `model`'s answer. */
export function devToken(model: string, i: number): string {
  return i === 0 ? `[${model}]` : WORDS[(i - 1) % WORDS.length]!;
}
export function devAnswer(model: string, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += devToken(model, i);
  return s;
}
/** Deterministic embedding: 8 floats from SHA-256 of the input (the server never stores the input). */
export function devEmbedding(input: string): number[] {
  const h = createHash('sha256').update(input).digest();
  return Array.from({ length: 8 }, (_, i) => Math.round((h.readUInt16BE(2 * i) / 65535 - 0.5) * 1e6) / 1e6);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Body {
  model?: unknown;
  stream?: unknown;
  max_tokens?: unknown;
  max_completion_tokens?: unknown;
  stream_options?: { include_usage?: unknown };
  messages?: unknown;
  prompt?: unknown;
  input?: unknown;
}

function countInput(b: Body): number {
  const text = Array.isArray(b.messages) ? b.messages.map((m: { content?: unknown }) => (typeof m?.content === 'string' ? m.content : '')).join(' ') : typeof b.prompt === 'string' ? b.prompt : '';
  return Math.max(1, Math.ceil(text.length / 4));
}

export function devModelApp(o: DevModelOptions = {}): Hono {
  const name = o.name ?? 'gm-dev';
  const tokenMs = o.tokenMs ?? 0;
  const app = new Hono();
  let seq = 0;

  app.get('/v1/models', (c) => c.json({ object: 'list', data: [{ id: name, object: 'model', created: 0, owned_by: 'gm-dev-model' }] }));

  const completion = (kind: 'chat' | 'text') => async (c: import('hono').Context) => {
    let b: Body;
    try {
      b = (await c.req.json()) as Body;
    } catch {
      return c.json({ error: { message: 'body must be JSON', type: 'invalid_request_error', code: 'bad_json' } }, 400);
    }
    const n = Number(b.max_completion_tokens ?? b.max_tokens ?? o.defaultTokens ?? 16);
    if (!Number.isSafeInteger(n) || n < 1 || n > 100_000) return c.json({ error: { message: 'max_tokens out of range', type: 'invalid_request_error', code: 'bad_max_tokens' } }, 400);
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-dev-${++seq}`;
    const created = 1_700_000_000;
    const reported = Math.round(n * (o.inflateUsage ?? 1));
    const usage = { prompt_tokens: countInput(b), completion_tokens: reported, total_tokens: countInput(b) + reported };
    if (b.stream !== true) {
      if (o.failAfter !== undefined) return c.json({ error: { message: 'injected failure', type: 'server_error', code: 'injected' } }, 500);
      if (tokenMs > 0) await sleep(tokenMs * n);
      const text = devAnswer(name, n);
      return kind === 'chat'
        ? c.json({ id, object: 'chat.completion', created, model: name, choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'length' }], usage })
        : c.json({ id, object: 'text_completion', created, model: name, choices: [{ index: 0, text, finish_reason: 'length', logprobs: null }], usage });
    }
    const te = new TextEncoder();
    const chunk = (delta: string | null, finish: string | null) =>
      kind === 'chat'
        ? { id, object: 'chat.completion.chunk', created, model: name, choices: [{ index: 0, delta: delta === null ? {} : { content: delta }, finish_reason: finish }] }
        : { id, object: 'text_completion', created, model: name, choices: [{ index: 0, text: delta ?? '', finish_reason: finish, logprobs: null }] };
    const includeUsage = b.stream_options?.include_usage === true;
    let i = 0;
    let closed = false;
    const stream = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (closed) return;
        if (o.failAfter !== undefined && i >= o.failAfter) {
          closed = true;
          // A crashed server: let the tokens already written reach the wire, then drop the TCP connection.
          await sleep(Math.max(tokenMs, 10));
          const socket = (c.env as { outgoing?: { socket?: { destroy(): void } | null } } | undefined)?.outgoing?.socket;
          if (socket) socket.destroy();
          else ctl.error(new Error('dev-model: injected failure'));
          return;
        }
        if (i < n) {
          if (tokenMs > 0 && i > 0) await sleep(tokenMs);
          ctl.enqueue(te.encode(`data: ${JSON.stringify(chunk(devToken(name, i), null))}\n\n`));
          i++;
          return;
        }
        let tail = `data: ${JSON.stringify(chunk(null, 'length'))}\n\n`;
        if (includeUsage) tail += `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: name, choices: [], usage })}\n\n`;
        ctl.enqueue(te.encode(`${tail}data: [DONE]\n\n`));
        closed = true;
        ctl.close();
      },
      cancel() {
        closed = true;
      },
    });
    return new Response(stream, { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } });
  };

  app.post('/v1/chat/completions', completion('chat'));
  app.post('/v1/completions', completion('text'));
  app.post('/v1/embeddings', async (c) => {
    const b = (await c.req.json().catch(() => ({}))) as Body;
    const inputs = typeof b.input === 'string' ? [b.input] : Array.isArray(b.input) && b.input.every((x) => typeof x === 'string') ? (b.input as string[]) : undefined;
    if (!inputs) return c.json({ error: { message: 'input must be a string or an array of strings', type: 'invalid_request_error', code: 'bad_input' } }, 400);
    const tokens = inputs.reduce((s, x) => s + Math.max(1, Math.ceil(x.length / 4)), 0);
    return c.json({ object: 'list', model: name, data: inputs.map((x, index) => ({ object: 'embedding', index, embedding: devEmbedding(x) })), usage: { prompt_tokens: tokens, total_tokens: tokens } });
  });
  app.get('/healthz', (c) => c.json({ ok: true }));
  return app;
}
