/**
 * `gm proxy` against the real enclave, workers and dev-models (test/stack/harness.ts), through the host shim's relay:
 * curl (the Python `openai` package is not packaged for this Debian release, so curl speaks for clients in other
 * languages) and the unmodified `openai` npm package pointed at the proxy's plain HTTP endpoint, streaming and not;
 * the relay capture holds no plaintext; receipts come back as headers, trailers and at /v1/gm/receipts/{id}; the
 * proxy refuses to start against an enclave whose evidence was tampered with, and refuses a non-loopback address
 * without --allow-remote and a token; outbound requests take HTTP_PROXY unless NO_PROXY names the host.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import type { ProxyFlags } from '../cli/commands.ts';
import type { Io } from '../cli/io.ts';
import { main } from '../cli/main.ts';
import { run as runProxy } from '../cli/proxy.ts';
import { verifyReceipt } from '../protocol/receipt.ts';
import { startHost, type RunningHost } from '../host/main.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { type Stack, startStack } from './stack/harness.ts';

const exec = promisify(execFile);
const PROMPT = 'confidential: merger terms for PROJ-5521 before announcement';
let stack: Stack;
let host: RunningHost;
let dir: string;
let apiKey: string;
const forwarded: Uint8Array[] = [];

beforeAll(async () => {
  stack = await startStack();
  dir = await mkdtemp(join(tmpdir(), 'gm-proxy-'));
  apiKey = (await stack.ledger!.createAccount({ currency: 'USD', prepaid: 1_000_000_000n }, Date.now())).apiKey;
  host = await startHost({
    enclave: stack.enclaveUrl, policy: parseClientPolicy(simPolicyDoc()), allowSim: true, trust: undefined, cacheDir: join(dir, 'cache'), checkIntervalMs: 3_600_000,
    observe: (_d, _p, b) => void forwarded.push(b.slice()),
  });
}, 60_000);
afterAll(async () => {
  await host?.close();
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

function memIo(env: Record<string, string> = {}): Io & { stderr: () => string } {
  let err = '';
  return {
    out: () => {},
    err: (s) => void (err += s),
    readFile: async (p) => new Uint8Array(await readFile(p)),
    env: { GM_TRUST_DIR: join(dir, 'no-trust'), ...env },
    stderr: () => err,
  };
}

/** Starts `gm proxy` in process; resolves with its URL once it listens, or rejects with its start-up error. */
async function startProxy(f: ProxyFlags, env: Record<string, string> = {}): Promise<{ url: string; io: ReturnType<typeof memIo>; stop: () => Promise<void> }> {
  const io = memIo(env);
  const ctl = new AbortController();
  let listening!: (u: string) => void;
  const url = new Promise<string>((ok) => (listening = ok));
  const done = runProxy({ 'allow-sim': true, listen: '127.0.0.1:0', ...f }, io, { signal: ctl.signal, onListening: (u) => listening(u) });
  const u = await Promise.race([url, done.then(() => Promise.reject(new Error('proxy exited')))]);
  return { url: u, io, stop: async () => (ctl.abort(), void (await done)) };
}

async function curl(args: string[]): Promise<{ head: string; body: string }> {
  const { stdout } = await exec('curl', ['-sS', '-N', '-D', '-', '--raw', ...args], { maxBuffer: 1 << 22 });
  const i = stdout.indexOf('\r\n\r\n');
  return { head: stdout.slice(0, i), body: stdout.slice(i + 4) };
}

/** Concatenated delta.content of an SSE body (chunked framing already removed). */
function sseText(body: string): string {
  let t = '';
  for (const block of body.split('\n\n')) {
    const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
    if (!data || data === '[DONE]') continue;
    t += (JSON.parse(data) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '';
  }
  return t;
}

describe('gm proxy to a sim stack through the relay', () => {
  it('curl and the openai package stream the same verified answer; receipts come back; the relay sees no plaintext', async () => {
    const p = await startProxy({ url: stack.enclaveUrl, relay: host.url });
    try {
      const model = stack.workers[0]!.modelName;
      const body = JSON.stringify({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 10, stream: true });
      // curl, streaming: SSE as an OpenAI client reads it, the receipt in the trailers (--raw keeps them visible).
      const { stdout } = await exec('curl', ['-sS', '-N', '-D', join(dir, 'head'), `${p.url}/v1/chat/completions`, '-H', `authorization: Bearer ${apiKey}`, '-H', 'content-type: application/json', '-d', body], { maxBuffer: 1 << 22 });
      const head = await readFile(join(dir, 'head'), 'utf8');
      expect(head).toMatch(/^HTTP\/1\.1 200/);
      expect(head).toMatch(/gm-verified: sim-sev-snp [0-9a-f]{16} sim/i);
      expect(sseText(stdout)).toBe(devAnswer(model, 10));
      expect(stdout).not.toContain('gm.receipt');
      const raw = await curl([`${p.url}/v1/chat/completions`, '-H', `authorization: Bearer ${apiKey}`, '-H', 'content-type: application/json', '-d', body]);
      const trailer = /gm-receipt: (\d+)\/([0-9a-f]{64})\r\ngm-request-id: (\S+)/i.exec(raw.body);
      expect(trailer, 'receipt trailers').not.toBeNull();

      // The signed receipt of that request, in the envelope `gm receipts verify` reads.
      const kept = await (await fetch(`${p.url}/v1/gm/receipts/${trailer![3]}`)).json() as { type: string; receipt: string };
      expect(kept.type).toBe('gm.receipt');
      const verified = await verifyReceipt(Buffer.from(kept.receipt, 'base64url'));
      expect(verified.receipt.seq).toBe(Number(trailer![1]));
      expect(Buffer.from(verified.hash).toString('hex')).toBe(trailer![2]);
      expect(verified.receipt.model).toBe(model);
      expect((await fetch(`${p.url}/v1/gm/receipts/req_nonexistent`)).status).toBe(404);

      // The openai package unchanged, plain HTTP to the proxy: the same answer, streamed in several parts.
      const openai = new OpenAI({ baseURL: `${p.url}/v1`, apiKey, maxRetries: 0 });
      const s = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 10, stream: true });
      const parts: string[] = [];
      for await (const ch of s) parts.push(ch.choices[0]?.delta?.content ?? '');
      expect(parts.join('')).toBe(devAnswer(model, 10));
      expect(parts.filter((x) => x).length).toBeGreaterThan(1);

      // Non-streaming: the receipt is a header of the whole answer.
      const whole = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 10 }).withResponse();
      expect(whole.data.choices[0]!.message.content).toBe(devAnswer(model, 10));
      expect(whole.response.headers.get('gm-receipt')).toMatch(/^\d+\/[0-9a-f]{64}$/);
      expect(whole.response.headers.get('gm-verified')).toMatch(/^sim-sev-snp [0-9a-f]{16} sim$/);

      // Completions, embeddings, models (list and retrieve).
      const c = await openai.completions.create({ model, prompt: PROMPT, max_tokens: 4 });
      expect(c.choices[0]!.text).toBe(devAnswer(model, 4));
      const e = await openai.embeddings.create({ model, input: PROMPT });
      expect(e.data[0]!.embedding.length).toBeGreaterThan(0);
      const list = await openai.models.list();
      expect(list.data.map((m) => m.id).sort()).toEqual(stack.workers.map((w) => w.modelName).sort());

      // Unknown routes are refused locally: nothing else is forwarded.
      expect((await fetch(`${p.url}/v1/files`)).status).toBe(404);
      expect((await fetch(`${p.url}/v1/chat/completions`)).status).toBe(405);

      const seen = Buffer.concat(forwarded);
      expect(seen.length).toBeGreaterThan(0);
      for (const secret of [PROMPT, 'PROJ-5521', apiKey, model, 'chat/completions', devAnswer(model, 4)]) expect(seen.includes(Buffer.from(secret)), secret).toBe(false);
      expect(p.io.stderr()).toContain('proxy.listening');
      for (const secret of [PROMPT, apiKey]) expect(p.io.stderr().includes(secret)).toBe(false);
    } finally {
      await p.stop();
    }
  }, 60_000);

  it('GM_API_KEY replaces the client Authorization; without it a bad key is the enclave\'s refusal, passed on', async () => {
    const p = await startProxy({ url: stack.enclaveUrl, 'api-key': apiKey });
    try {
      const model = stack.workers[1]!.modelName;
      const openai = new OpenAI({ baseURL: `${p.url}/v1`, apiKey: 'anything', maxRetries: 0 });
      const r = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
      expect(r.choices[0]!.message.content).toBe(devAnswer(model, 3));
    } finally {
      await p.stop();
    }
    const q = await startProxy({ url: stack.enclaveUrl });
    try {
      const r = await fetch(`${q.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer gm_not-a-key-of-this-ledger-000000', 'content-type': 'application/json' }, body: JSON.stringify({ model: stack.workers[0]!.modelName, messages: [{ role: 'user', content: 'hi' }] }) });
      expect(r.status).toBe(401);
      expect(r.headers.get('gm-verified')).toMatch(/^sim-sev-snp /);
    } finally {
      await q.stop();
    }
  }, 60_000);

  it('a non-loopback address needs --allow-remote and a bearer token, which every request must then carry', async () => {
    const io = memIo();
    expect(await main(['proxy', '--url', stack.enclaveUrl, '--allow-sim', '--listen', '0.0.0.0:0'], io)).toBe(2);
    expect(io.stderr()).toMatch(/PROXY_REMOTE_REFUSED/);
    const io2 = memIo();
    expect(await main(['proxy', '--url', stack.enclaveUrl, '--allow-sim', '--listen', '0.0.0.0:0', '--allow-remote'], io2)).toBe(2);
    expect(io2.stderr()).toMatch(/PROXY_TOKEN_REQUIRED/);
    const io3 = memIo();
    expect(await main(['proxy', '--url', stack.enclaveUrl, '--proxy-token', 'x'.repeat(20)], io3)).toBe(2);
    expect(io3.stderr()).toMatch(/PROXY_TOKEN_ON_ARGV/);
    expect(io3.stderr()).not.toContain('x'.repeat(20));

    const token = 'proxy-token-7f3a9c1e5b2d';
    await writeFile(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
    const p = await startProxy({ url: stack.enclaveUrl, listen: '0.0.0.0:0', 'allow-remote': true, 'token-file': join(dir, 'token'), 'api-key': apiKey });
    try {
      const port = new URL(p.url).port;
      expect((await fetch(`http://127.0.0.1:${port}/v1/models`)).status).toBe(401);
      expect((await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { authorization: 'Bearer wrong-token-000000000' } })).status).toBe(401);
      const ok = await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { data: unknown[] }).data.length).toBe(2);
    } finally {
      await p.stop();
    }
  }, 60_000);

  it('refuses to start against an enclave whose evidence answers another nonce (one line naming the check)', async () => {
    // A man in the middle replays evidence made for a nonce of its choosing instead of the proxy's fresh one.
    const tamper = await listenOn(async (req, res) => {
      const u = new URL(req.url ?? '/', stack.enclaveUrl);
      if (u.pathname === '/v1/attestation') u.searchParams.set('nonce', '11'.repeat(32));
      const r = await fetch(u, { method: req.method ?? 'GET', headers: { accept: req.headers.accept ?? '*/*' } });
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/octet-stream' });
      res.end(Buffer.from(await r.arrayBuffer()));
    });
    try {
      const io = memIo();
      const code = await main(['proxy', '--url', tamper.url, '--allow-sim', '--listen', '127.0.0.1:0'], io);
      expect(code).toBe(1);
      const lines = io.stderr().trim().split('\n');
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(/^gm proxy: [A-Z_]+: refusing to start: the enclave did not verify at check \S+/);
      expect(lines[0]).not.toContain('proxy.listening');
    } finally {
      await tamper.close();
    }
  }, 60_000);

  it('outbound requests go through HTTP_PROXY, and around it for a NO_PROXY host', async () => {
    const seen: string[] = [];
    const forward = await listenOn(async (req, res) => {
      seen.push(`${req.method} ${new URL(req.url ?? '/').pathname}`);
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !['host', 'connection', 'proxy-connection', 'content-length'].includes(k)) headers[k] = v;
      const r = await fetch(req.url!, { method: req.method ?? 'GET', headers, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) });
      const out: Record<string, string> = {};
      r.headers.forEach((v, k) => {
        if (!['content-length', 'transfer-encoding', 'connection', 'content-encoding'].includes(k)) out[k] = v;
      });
      res.writeHead(r.status, out);
      res.end(Buffer.from(await r.arrayBuffer()));
    });
    try {
      const p = await startProxy({ url: stack.enclaveUrl, 'api-key': apiKey }, { HTTP_PROXY: forward.url, NO_PROXY: '' });
      try {
        const model = stack.workers[0]!.modelName;
        const r = await fetch(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }) });
        expect(((await r.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(devAnswer(model, 3));
        expect(seen.filter((x) => x === 'GET /v1/attestation').length).toBe(1);
        // Two rotations retire the key the proxy attested: it re-attests once (through the same proxy) and retries.
        await stack.enclave.rotateKeys();
        await stack.enclave.rotateKeys();
        const again = await fetch(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }) });
        expect(again.status).toBe(200);
        expect(((await again.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(devAnswer(model, 3));
        expect(seen.filter((x) => x === 'GET /v1/attestation').length).toBe(2);
      } finally {
        await p.stop();
      }
      expect(seen).toContain('POST /v1/ohttp');
      seen.length = 0;
      const q = await startProxy({ url: stack.enclaveUrl }, { HTTP_PROXY: forward.url, NO_PROXY: '127.0.0.1' });
      await q.stop();
      expect(seen).toEqual([]);
    } finally {
      await forward.close();
    }
  }, 60_000);
});

async function listenOn(h: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    h(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((ok) => (server.closeAllConnections(), server.close(() => ok()))),
  };
}

describe('OpenAI semantics through gm proxy, as the openai package sees them', () => {
  /** An openai client whose every HTTP request is counted (the package retries 408, 409, 429 and 5xx by itself). */
  const counted = (base: string, maxRetries: number) => {
    const seen: { status: number; headers: Headers }[] = [];
    const client = new OpenAI({
      baseURL: `${base}/v1`, apiKey, maxRetries,
      fetch: async (u: string | URL | Request, i?: RequestInit) => {
        const r = await fetch(u, i);
        seen.push({ status: r.status, headers: r.headers });
        return r;
      },
    });
    return { client, seen };
  };

  it('an unknown model is a 404 model_not_found the package does not retry; a known model without an eligible offer is a 503 with Retry-After', async () => {
    const p = await startProxy({ url: stack.enclaveUrl });
    try {
      const a = counted(p.url, 2);
      const err = await a.client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.NotFoundError);
      expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
      expect((err as InstanceType<typeof OpenAI.NotFoundError>).param).toBe('model');
      expect(a.seen.length).toBe(1);

      // Every offer is over this price cap: capacity, not a missing model. Retried once here, as asked.
      const b = counted(p.url, 1);
      const model = stack.workers[0]!.modelName;
      const busy = await b.client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], provider: { max_price: { prompt: 0, completion: 0 } } } as never).then(() => undefined, (e: unknown) => e);
      expect(busy).toBeInstanceOf(OpenAI.InternalServerError);
      expect((busy as { status: number }).status).toBe(503);
      expect(b.seen.length).toBe(2);
      expect(b.seen[0]!.headers.get('retry-after')).toBe('1');
      expect((busy as { code: string }).code).toBe('NO_ELIGIBLE_OFFER');
    } finally {
      await p.stop();
    }
  }, 60_000);

  it('errors name the field at fault in param; GET /v1/models/{id} retrieves a model or says model_not_found', async () => {
    const p = await startProxy({ url: stack.enclaveUrl });
    try {
      const a = counted(p.url, 0);
      const model = stack.workers[1]!.modelName;
      const bad = await a.client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], provider: { sort: 'fastest' } } as never).then(() => undefined, (e: unknown) => e);
      expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
      expect((bad as { param: string }).param).toBe('provider.sort');
      const none = await a.client.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }] } as never).then(() => undefined, (e: unknown) => e);
      expect((none as { param: string }).param).toBe('model');

      const m = await a.client.models.retrieve(model);
      expect(m).toMatchObject({ id: model, object: 'model', workers: 1, context_length: null, pricing: [{ currency: 'USD', input_per_1m: { min: '0.1', max: '0.1' }, output_per_1m: { min: '0.2', max: '0.2' } }] });
      const listed = await a.client.models.list();
      expect(listed.data.find((x) => x.id === model)).toEqual(m);
      const gone = await a.client.models.retrieve('no-such-model').then(() => undefined, (e: unknown) => e);
      expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
      expect((gone as { code: string }).code).toBe('model_not_found');
    } finally {
      await p.stop();
    }
  }, 60_000);
});

describe('gm chat routing flags', () => {
  it('--models falls back down the list; --provider is sealed with the request and refused by name when gm cannot honour it', async () => {
    const io = memIo();
    let out = '';
    io.out = (s) => void (out += s);
    const second = stack.workers[1]!.modelName;
    expect(await main(['chat', '--url', stack.enclaveUrl, '--allow-sim', '--api-key', apiKey, '--model', 'no-such-model', '--models', second, '--max-tokens', '4', '--json', 'hi'], io)).toBe(0);
    const j = JSON.parse(out) as { answer: string; receipts: { model: string }[] };
    expect(j.answer).toBe(devAnswer(second, 4));
    expect(j.receipts[0]!.model).toBe(second);

    const bad = memIo();
    expect(await main(['chat', '--url', stack.enclaveUrl, '--allow-sim', '--model', second, '--provider', '{"zdr":true}', 'hi'], bad)).toBe(1);
    expect(bad.stderr()).toMatch(/ROUTE_CONSTRAINT_INVALID/);
    const notJson = memIo();
    expect(await main(['chat', '--url', stack.enclaveUrl, '--allow-sim', '--provider', '{sort', 'hi'], notJson)).toBe(2);
  }, 60_000);

  it('gm enclave --pools refuses an invalid pools file, and pools without the market router', async () => {
    await writeFile(join(dir, 'pools.json'), JSON.stringify({ fast: [], 'a:b': ['m'] }));
    const io = memIo();
    expect(await main(['enclave', '--tee', 'sim', '--listen', '127.0.0.1:0', '--pools', join(dir, 'pools.json')], io)).toBe(2);
    expect(io.stderr()).toMatch(/POOLS_INVALID: .*pool "fast" must list 1\.\.20 model ids/);
    expect(io.stderr()).toMatch(/POOLS_INVALID: .*pool name "a:b" must be/);
    const first = memIo();
    expect(await main(['enclave', '--tee', 'sim', '--listen', '127.0.0.1:0', '--router', 'first', '--pools', join(dir, 'pools.json')], first)).toBe(2);
    expect(first.stderr()).toMatch(/--pools needs the market router/);
  }, 60_000);
});

describe('network failures say their cause', () => {
  it('gm proxy pointed at a closed port names the refused connection and the address', async () => {
    const closed = await listenOn(async () => {});
    const port = new URL(closed.url).port;
    await closed.close();
    const io = memIo();
    expect(await main(['proxy', '--url', `http://127.0.0.1:${port}`, '--allow-sim', '--listen', '127.0.0.1:0'], io)).toBe(1);
    expect(io.stderr()).toMatch(new RegExp(`^gm proxy: ATTESTATION_UNREACHABLE: refusing to start: could not fetch .*\\(fetch failed: ECONNREFUSED 127\\.0\\.0\\.1:${port}\\)( \\(--url\\))?\\n$`));
  }, 30_000);
});
