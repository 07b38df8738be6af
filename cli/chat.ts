/**
 * `gm chat --url URL [--relay URL] [--model M] [--policy FILE] [--allow-sim] "prompt"`: verifies the enclave, sends
 * one encrypted chat completion (docs/design.md §5), streams the answer to stdout as it arrives, then prints the
 * verified receipt. Progress and the verification summary go to stderr; `--report` prints the full verification
 * table; `--json` prints one JSON object at the end instead. The prompt, answer and API key are never logged.
 */
import { configError, GmError, protocolError } from '../attestation/errors.ts';
import { createClient, type GmClient } from '../client/index.ts';
import type { ChatFlags } from './commands.ts';
import { claimsSummary, loadPolicy, loadTrust, progress } from './common.ts';
import { formatReport, reportJson } from './format.ts';
import type { Io } from './io.ts';

export interface ChatResult {
  readonly answer: string;
  readonly client: GmClient;
}

export async function run(f: ChatFlags, prompt: string, io: Io): Promise<number> {
  const url = f.url;
  if (!url) throw configError('USAGE', 'needs --url URL (the enclave), or GM_URL');
  if (!prompt.trim()) throw configError('USAGE', 'needs a prompt');
  const maxTokens = f['max-tokens'] === undefined ? undefined : Number(f['max-tokens']);
  if (maxTokens !== undefined && !(Number.isSafeInteger(maxTokens) && maxTokens > 0)) throw configError('USAGE', `--max-tokens must be a positive integer (got ${f['max-tokens']})`);
  const provider = f.provider === undefined ? undefined : providerFlag(f.provider);
  const models = f.models === undefined ? undefined : f.models.split(',').map((m) => m.trim()).filter((m) => m);
  if (models && (models.length === 0 || models.length > 20)) throw configError('USAGE', '--models must name 1..20 models, comma-separated');
  const json = f.json === true;
  const say = progress(io, json);
  const allowSim = f['allow-sim'] === true;
  const policy = await loadPolicy(io, f.policy, allowSim);
  const trust = await loadTrust(io);
  say(`gm chat: verifying the enclave at ${url}${f.relay ? ` through the relay ${f.relay}` : ''}...`);
  let client: GmClient;
  try {
    client = await createClient({ url, ...(f.relay ? { relay: f.relay } : {}), ...(f.collateral ? { collateralFrom: f.collateral } : {}), policy, allowSim, trust });
  } catch (e) {
    if (e instanceof GmError && e.report) io.err(formatReport(e.report));
    throw e;
  }
  const c = claimsSummary(client.claims);
  say(`gm chat: VERIFIED ${c.platform} measurement ${(c.measurement ?? "").slice(0, 16)}...${client.claims.sim ? ' [SIM: not backed by hardware]' : ''}`);
  if (f.report && !json) io.err(formatReport(client.verification, c));
  const model = f.model ?? (await firstModel(client));
  say(`gm chat: model ${model}`);
  const answer = await chat(client, {
    model,
    prompt,
    stream: f['no-stream'] !== true,
    apiKey: f['api-key'] ?? 'gm-anonymous',
    ...(maxTokens ? { maxTokens } : {}),
    ...(provider ? { provider } : {}),
    ...(models ? { models } : {}),
    onToken: json ? () => {} : (t) => io.out(t),
  });
  if (json) {
    io.out(`${JSON.stringify({ verification: JSON.parse(reportJson(client.verification, c)), answer, receipts: client.receipts.map((r) => r.view) }, null, 2)}\n`);
    return 0;
  }
  io.out('\n');
  printReceipts(io, client);
  return 0;
}

/** Without --model: the first model the verified workers offer, asked over the encrypted channel. */
async function firstModel(client: GmClient): Promise<string> {
  const r = await client.fetch(`${client.baseURL}/models`);
  const j = (r.ok ? await r.json() : {}) as { data?: { id?: unknown }[] };
  const id = j.data?.find((m) => typeof m.id === 'string')?.id;
  if (typeof id !== 'string') throw new GmError('unavailable', 'NO_MODELS', 'the enclave lists no models (no verified worker offers one); pass --model');
  return id;
}

export function printReceipts(io: Io, client: GmClient): void {
  if (client.receipts.length === 0) {
    io.out('receipt: none received\n');
    return;
  }
  for (const r of client.receipts) {
    io.out('receipt (signature verified with the attested receipt key):\n');
    const v = r.view;
    const w = Math.max(...Object.keys(v).map((k) => k.length));
    for (const [k, x] of Object.entries(v)) io.out(`  ${k.padEnd(w)}  ${typeof x === 'string' ? x : JSON.stringify(x)}\n`);
  }
}

export interface ChatOptions {
  readonly model: string;
  readonly prompt: string;
  readonly stream: boolean;
  readonly apiKey: string;
  readonly maxTokens?: number;
  /** OpenRouter's provider routing object and a fallback model list, sealed into the request with the prompt. */
  readonly provider?: Record<string, unknown>;
  readonly models?: readonly string[];
  readonly onToken: (t: string) => void;
}

function providerFlag(v: string): Record<string, unknown> {
  let p: unknown;
  try {
    p = JSON.parse(v);
  } catch (e) {
    throw configError('USAGE', '--provider must be a JSON object, e.g. \'{"sort":"latency"}\'', { cause: e });
  }
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw configError('USAGE', '--provider must be a JSON object');
  return p as Record<string, unknown>;
}

/** One chat completion over the client's encrypted fetch, parsing the OpenAI SSE stream as it arrives. */
export async function chat(client: GmClient, o: ChatOptions): Promise<string> {
  const res = await client.fetch(`${client.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${o.apiKey}`, accept: o.stream ? 'text/event-stream' : 'application/json' },
    body: JSON.stringify({ model: o.model, messages: [{ role: 'user', content: o.prompt }], stream: o.stream, ...(o.stream ? { stream_options: { include_usage: true } } : {}), ...(o.maxTokens ? { max_tokens: o.maxTokens } : {}), ...(o.provider ? { provider: o.provider } : {}), ...(o.models ? { models: o.models } : {}) }),
  });
  if (!res.ok) {
    let code = `HTTP_${res.status}`;
    try {
      const j = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
      if (typeof j.error?.code === 'string') code = j.error.code;
    } catch { /* not JSON */ }
    throw new GmError('unavailable', code, `the enclave answered HTTP ${res.status} (${code})`);
  }
  if (!o.stream) {
    const j = (await res.json()) as { choices?: { message?: { content?: string } }[] };
    const t = j.choices?.[0]?.message?.content ?? '';
    o.onToken(t);
    return t;
  }
  let answer = '';
  let buf = '';
  const dec = new TextDecoder();
  const reader = res.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    buf += done ? dec.decode() : dec.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
      if (!data || data === '[DONE]') continue;
      let ev: { choices?: { delta?: { content?: string } }[]; error?: { code?: string; message?: string } };
      try {
        ev = JSON.parse(data);
      } catch (e) {
        throw protocolError('SSE_MALFORMED', 'the answer stream carried an event that is not JSON', { cause: e });
      }
      if (ev.error) throw new GmError('unavailable', ev.error.code ?? 'STREAM_ERROR', `the answer stream ended with an error (${ev.error.code ?? 'unknown'})`);
      const t = ev.choices?.[0]?.delta?.content;
      if (t) {
        answer += t;
        o.onToken(t);
      }
    }
    if (done) break;
  }
  return answer;
}
