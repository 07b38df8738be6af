/**
 * The metrics every service serves, read as a Prometheus scraper reads them (text exposition format 0.0.4): each
 * sample belongs to a family with `# HELP` and `# TYPE`, gm_build_info names the package version, the process_* and
 * nodejs_* metrics are there for the operator (never on the enclave's public /metrics), and every error response is
 * counted in gm_errors_total{code}, inside the encryption too, by code only: no label value names a model, a worker
 * or an account.
 */
import { readFileSync } from 'node:fs';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { fetchTransport, sendPlain } from '../enclave/ohttp/client.ts';
import { hostApp } from '../host/app.ts';
import { EnclaveGate } from '../host/gate.ts';
import { listen, type Listening } from '../host/serve.ts';
import { connect, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const TOKEN = 'op-token-2b7e151628aed2a6abf7';
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const SECRET_MODEL = 'unlisted-model-7f3a9c';

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}
interface Exposition {
  readonly help: Map<string, string>;
  readonly type: Map<string, string>;
  readonly samples: Sample[];
}

/** A strict reader of the text format: a line it does not understand fails the test. */
function parse(text: string): Exposition {
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) {
      expect(help.has(m[1]!), `HELP twice for ${m[1]}`).toBe(false);
      help.set(m[1]!, m[2]!);
      continue;
    }
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      expect(type.has(m[1]!), `TYPE twice for ${m[1]}`).toBe(false);
      type.set(m[1]!, m[2]!);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|[Nn]a[Nn]|[+-]Inf)$/.exec(line); // prom-client writes NaN as "Nan" (Prometheus reads it ignoring case)
    expect(m, `not an exposition line: ${line}`).not.toBeNull();
    const labels: Record<string, string> = {};
    const body = m![2] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
    let at = 0;
    while (at < body.length) {
      re.lastIndex = at;
      const l = re.exec(body);
      expect(l, `bad labels in: ${line}`).not.toBeNull();
      labels[l![1]!] = l![2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      at = re.lastIndex;
    }
    samples.push({ name: m![1]!, labels, value: Number(m![3]) });
  }
  return { help, type, samples };
}

/** The family a sample belongs to (histogram and summary series carry suffixes). */
function family(e: Exposition, name: string): string {
  if (e.type.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) if (name.endsWith(suffix) && e.type.has(name.slice(0, -suffix.length))) return name.slice(0, -suffix.length);
  return name;
}

function expectWellFormed(text: string, o: { process: boolean }): Exposition {
  const e = parse(text);
  expect(e.samples.length).toBeGreaterThan(0);
  for (const s of e.samples) {
    const f = family(e, s.name);
    expect(e.type.has(f), `no TYPE for ${s.name}`).toBe(true);
    expect(e.help.get(f)?.trim(), `no HELP for ${s.name}`).toBeTruthy();
  }
  for (const f of e.type.keys()) expect(e.help.has(f), `TYPE without HELP: ${f}`).toBe(true);
  expect(e.samples.filter((s) => s.name === 'gm_build_info')).toEqual([{ name: 'gm_build_info', labels: { version: VERSION }, value: 1 }]);
  const names = [...e.type.keys()];
  expect(names.some((n) => n.startsWith('process_'))).toBe(o.process);
  expect(names.some((n) => n.startsWith('nodejs_'))).toBe(o.process);
  return e;
}

/** gm_errors_total by code. */
const errorsByCode = (e: Exposition) => new Map(e.samples.filter((s) => s.name === 'gm_errors_total').map((s) => [s.labels.code!, s.value]));
const moved = (before: Map<string, number>, after: Map<string, number>) =>
  Object.fromEntries([...after].filter(([k, v]) => v !== (before.get(k) ?? 0)).map(([k, v]) => [k, v - (before.get(k) ?? 0)]));

describe('the enclave and worker expositions', () => {
  let s: Stack;
  let client: TestClient;
  const publicMetrics = async () => parse(await (await fetch(`${s.enclaveUrl}/metrics`)).text());
  const operatorMetrics = async () => parse(await (await fetch(`${s.enclaveUrl}/v1/operator/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text());
  beforeAll(async () => {
    s = await startStack({ enclave: { operatorToken: TOKEN } });
    client = await connect(s.enclaveUrl);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('every metric has HELP and TYPE; gm_build_info names the version; process metrics only for the operator', async () => {
    const r = await client.post('/v1/chat/completions', { model: 'gm-dev-1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    expect(r.status).toBe(200);
    await new Response(r.body).arrayBuffer();
    expectWellFormed(await (await fetch(`${s.enclaveUrl}/metrics`)).text(), { process: false });
    const op = expectWellFormed(await (await fetch(`${s.enclaveUrl}/v1/operator/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text(), { process: true });
    expect(op.type.get('gm_dispatch_total')).toBe('counter');
    expect(op.type.get('gm_time_to_first_token_seconds')).toBe('histogram');
    for (const w of s.workers) {
      const text = await (await fetch(`${w.worker.url}/metrics`)).text();
      expect(expectWellFormed(text, { process: true }).type.get('gm_worker_requests_total')).toBe('counter');
    }
  });

  it('counts inner 404, 402 and 400 answers by code for the operator, and nothing of them publicly', async () => {
    const [pub0, op0] = [errorsByCode(await publicMetrics()), errorsByCode(await operatorMetrics())];
    const unknown = await client.post('/v1/chat/completions', { model: SECRET_MODEL, messages: [{ role: 'user', content: 'hi' }] });
    expect(unknown.status).toBe(404);
    const noModel = await client.post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] });
    expect(noModel.status).toBe(400);
    const broke = await s.ledger!.createAccount({ currency: 'USD', prepaid: 0n }, Date.now());
    const req = bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json'], ['authorization', `Bearer ${broke.apiKey}`]], new TextEncoder().encode(JSON.stringify({ model: 'gm-dev-1', messages: [{ role: 'user', content: 'hi' }] })));
    const unpaid = await sendPlain(fetchTransport(`${s.enclaveUrl}/v1/ohttp`), client.config, req);
    expect(unpaid.status).toBe(402);
    const paymentCode = ((await new Response(unpaid.body).json()) as { error: { code: string } }).error.code;
    expect(moved(op0, errorsByCode(await operatorMetrics()))).toEqual({ model_not_found: 1, MODEL_REQUIRED: 1, [paymentCode]: 1 });
    // Sealed answers: the relay saw three 200s, and the public view must not tell it otherwise.
    expect(moved(pub0, errorsByCode(await publicMetrics()))).toEqual({});

    const text = (await (await fetch(`${s.enclaveUrl}/metrics`)).text()) + (await (await fetch(`${s.enclaveUrl}/v1/operator/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text());
    for (const needle of [SECRET_MODEL, broke.apiKey, broke.account.id]) expect(text).not.toContain(needle);
  });

  it('counts errors sent in clear (404, 400, 401) in both views', async () => {
    const [pub0, op0] = [errorsByCode(await publicMetrics()), errorsByCode(await operatorMetrics())];
    expect((await fetch(`${s.enclaveUrl}/v1/no-such-endpoint`)).status).toBe(404);
    expect((await fetch(`${s.enclaveUrl}/v1/attestation?nonce=zz`)).status).toBe(400);
    expect((await fetch(`${s.enclaveUrl}/v1/operator/metrics`)).status).toBe(401);
    const want = { NOT_FOUND: 1, BAD_NONCE: 1, OPERATOR_UNAUTHORIZED: 1 };
    expect(moved(pub0, errorsByCode(await publicMetrics()))).toEqual(want);
    expect(moved(op0, errorsByCode(await operatorMetrics()))).toEqual(want);
  });

  it('no label value names a model, a worker or an account; gm_errors_total carries the code alone', async () => {
    const models = s.workers.map((w) => w.modelName);
    const workers = s.workers.map((w) => w.worker.id);
    // One error in clear and one sealed, so that both views hold gm_errors_total samples.
    expect((await fetch(`${s.enclaveUrl}/v1/no-such-endpoint`)).status).toBe(404);
    expect((await client.post('/v1/chat/completions', { model: SECRET_MODEL, messages: [] })).status).toBe(404);
    const { account, apiKey } = await s.ledger!.createAccount({ currency: 'USD', prepaid: 1_000_000n }, Date.now());
    const req = bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json'], ['authorization', `Bearer ${apiKey}`]], new TextEncoder().encode(JSON.stringify({ model: 'gm-dev-2', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })));
    const r = await sendPlain(fetchTransport(`${s.enclaveUrl}/v1/ohttp`), client.config, req);
    expect(r.status).toBe(200);
    const pub = await publicMetrics();
    const op = await operatorMetrics();
    const values = (e: Exposition, keep: (x: Sample) => boolean) => e.samples.filter(keep).flatMap((x) => Object.values(x.labels));
    const forbidden = [...models, ...workers, account.id, apiKey];
    for (const v of values(pub, () => true)) for (const f of forbidden) expect(v).not.toContain(f);
    // Operator view: per-worker dispatch counts are its purpose (gm_dispatch_total{worker}); models and accounts never.
    for (const v of values(op, () => true)) for (const f of [...models, account.id, apiKey]) expect(v).not.toContain(f);
    for (const e of [pub, op]) {
      const errs = e.samples.filter((x) => x.name === 'gm_errors_total');
      expect(errs.length).toBeGreaterThan(0);
      for (const x of errs) {
        expect(Object.keys(x.labels)).toEqual(['code']);
        expect(x.labels.code).toMatch(/^[A-Za-z0-9_]+$/);
        for (const f of forbidden) expect(x.labels.code).not.toContain(f);
      }
    }
  });

  it('a worker counts the errors it answers', async () => {
    const w = s.workers[0]!.worker;
    const before = errorsByCode(parse(await (await fetch(`${w.url}/metrics`)).text()));
    expect((await fetch(`${w.url}/v1/no-such-endpoint`)).status).toBe(404);
    expect((await fetch(`${w.url}/v1/attestation?nonce=zz`)).status).toBe(400);
    expect(moved(before, errorsByCode(parse(await (await fetch(`${w.url}/metrics`)).text())))).toEqual({ NOT_FOUND: 1, BAD_NONCE: 1 });
  });
});

describe('the host exposition', () => {
  let upstream: Listening | undefined;
  let gate: EnclaveGate | undefined;
  afterAll(async () => {
    gate?.stop();
    await upstream?.close();
  });

  it('is well formed and counts the host\'s own errors and the enclave\'s it relays, by code', async () => {
    const enclave = new Hono();
    enclave.get('/v1/attestation', (c) => c.json({ type: 'about:blank', status: 400, code: 'BAD_NONCE', error: { code: 'BAD_NONCE' } }, 400, { 'content-type': 'application/problem+json' }));
    upstream = await listen(enclave.fetch);
    const report = { subject: 'evidence bundle (sim-sev-snp)', verified: true, checks: [{ id: 'bundle.cpu', status: 'pass' as const, what: 'cpu evidence' }] };
    gate = new EnclaveGate({ check: async () => ({ report, summary: { platform: 'sim-sev-snp' } }), intervalMs: 60_000 });
    await gate.start();
    const app = hostApp({ relay: { enclave: upstream.url }, gate, listings: async () => ({ workers: [], offers: [] }) });
    const scrape = async () => (await app.request('/metrics')).text();
    const before = errorsByCode(parse(await scrape()));
    expect((await app.request('/no-such-path')).status).toBe(404);
    expect((await app.request('/v1/attestation?nonce=zz')).status).toBe(400); // the relay's own check
    expect((await app.request(`/v1/attestation?nonce=${'ab'.repeat(32)}`)).status).toBe(400); // the enclave's answer
    const text = await scrape();
    expect(moved(before, errorsByCode(parse(text)))).toEqual({ HOST_NOT_FOUND: 1, RELAY_BAD_REQUEST: 1, BAD_NONCE: 1 });
    const e = expectWellFormed(text, { process: true });
    expect(e.type.get('gm_host_relay_requests_total')).toBe('counter');
    expect(e.samples.find((x) => x.name === 'gm_host_gate_open')?.value).toBe(1);
  });
});
