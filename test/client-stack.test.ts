/**
 * The SDK and CLI against the real enclave, workers and dev-models (test/stack/harness.ts), through the host shim:
 * the openai package unchanged (streaming and non-streaming), the relay captured and searched for plaintext, and
 * the CLI commands (`gm chat`, `gm verify URL`, `gm verify bundle`) with their exit codes and output.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../client/index.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import type { Io } from '../cli/io.ts';
import { main } from '../cli/main.ts';
import { startHost, type RunningHost } from '../host/main.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { type Stack, startStack } from './stack/harness.ts';

const PROMPT = 'confidential: quarterly numbers for ACME-7731 before release';
const API_KEY = 'sk-stack-secret-4242';
let stack: Stack;
let host: RunningHost;
let dir: string;
const forwarded: Uint8Array[] = [];

beforeAll(async () => {
  stack = await startStack();
  dir = await mkdtemp(join(tmpdir(), 'gm-client-stack-'));
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

function memIo(env: Record<string, string> = {}): Io & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (s) => void (out += s),
    err: (s) => void (err += s),
    readFile: async (p) => new Uint8Array(await readFile(p)),
    env: { GM_TRUST_DIR: join(dir, 'no-trust'), ...env },
    stdout: () => out,
    stderr: () => err,
  };
}

describe('SDK through the relay to the real enclave', () => {
  it('openai non-streaming and streaming chat completions return the dev-model answer; the relay sees only ciphertext', async () => {
    const model = stack.workers[0]!.modelName;
    const c = await createClient({ url: stack.enclaveUrl, relay: host.url, allowSim: true });
    expect(c.verification.verified).toBe(true);
    const openai = new OpenAI({ baseURL: c.baseURL, apiKey: API_KEY, fetch: c.fetch, maxRetries: 0 });
    const r = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 12 });
    expect(r.choices[0]!.message.content).toBe(devAnswer(model, 12));
    const s = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 12, stream: true });
    const parts: string[] = [];
    for await (const ch of s) parts.push(ch.choices[0]?.delta?.content ?? '');
    expect(parts.join('')).toBe(devAnswer(model, 12));
    expect(parts.filter((p) => p).length).toBeGreaterThan(1);
    // One verified receipt per completion, signed by the attested receipt key, for this model, marked sim.
    expect(c.receipts.length).toBe(2);
    for (const r of c.receipts) {
      expect(r.receipt.model).toBe(model);
      expect(r.receipt.sim).toBe(true);
    }
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual(stack.workers.map((w) => w.modelName).sort());

    const seen = Buffer.concat(forwarded);
    for (const secret of [PROMPT, 'ACME-7731', API_KEY, model, 'quick enclave', 'attested workers', 'chat/completions']) expect(seen.includes(Buffer.from(secret)), secret).toBe(false);
    for (const line of stack.logs) for (const secret of [PROMPT, 'ACME-7731', API_KEY]) expect(line.includes(secret)).toBe(false);
  });
});

describe('CLI against the stack', () => {
  it('gm verify URL --allow-sim prints the report (exit 0), --json parses, and --save keeps the bundle for gm verify bundle', async () => {
    const io = memIo();
    const bundleFile = join(dir, 'enclave.cbor');
    expect(await main(['verify', host.url, '--allow-sim', '--save', bundleFile], io)).toBe(0);
    expect(io.stdout()).toMatch(/VERIFIED/);
    expect(io.stdout()).toContain('bundle.report-data');
    expect(io.stderr()).toMatch(/fresh nonce/);
    const j = memIo();
    expect(await main(['verify', stack.enclaveUrl, '--allow-sim', '--json'], j)).toBe(0);
    const doc = JSON.parse(j.stdout()) as { verified: boolean; claims: { platform: string } };
    expect(doc.verified).toBe(true);
    expect(doc.claims.platform).toBe('sim-sev-snp');

    const off = memIo();
    expect(await main(['verify', 'bundle', bundleFile, '--allow-sim'], off)).toBe(0);
    expect(off.stdout()).toMatch(/VERIFIED/);
    // The JSON view of the same bundle verifies the same way.
    const { bundleToJson, decodeBundle } = await import('../attestation/bundle.ts');
    const jsonFile = join(dir, 'enclave.json');
    await (await import('node:fs/promises')).writeFile(jsonFile, JSON.stringify(bundleToJson(decodeBundle(new Uint8Array(await readFile(bundleFile))))));
    const offJson = memIo();
    expect(await main(['verify', 'bundle', jsonFile, '--allow-sim', '--json'], offJson)).toBe(0);
    expect((JSON.parse(offJson.stdout()) as { verified: boolean }).verified).toBe(true);
    // Evidence age is checked when asked: a day later with --max-age 60 it is stale.
    const late = memIo();
    expect(await main(['verify', 'bundle', bundleFile, '--allow-sim', '--max-age', '60', '--now', new Date(Date.now() + 86_400_000).toISOString()], late)).toBe(1);
    expect(late.stderr()).toContain('EVIDENCE_STALE');
    // Audited for another nonce than the one it was made for: rejected with the code, exit 1.
    const wrong = memIo();
    expect(await main(['verify', 'bundle', bundleFile, '--allow-sim', '--nonce', '11'.repeat(32)], wrong)).toBe(1);
    expect(wrong.stderr()).toContain('NONCE_MISMATCH');
    expect(wrong.stdout()).toContain('FAIL');
  });

  it('gm verify URL without --allow-sim rejects sim evidence (exit 1) and without a policy is a usage error', async () => {
    const pol = join(dir, 'policy.json');
    await (await import('node:fs/promises')).writeFile(pol, JSON.stringify(simPolicyDoc()));
    const io = memIo();
    expect(await main(['verify', stack.enclaveUrl, '--policy', pol], io)).toBe(1);
    expect(io.stderr()).toContain('SIM_NOT_ALLOWED');
    const none = memIo();
    expect(await main(['verify', stack.enclaveUrl], none)).toBe(2);
    expect(none.stderr()).toMatch(/^gm verify: POLICY_REQUIRED: .*\n$/);
  });

  it('gm chat streams the answer through the relay and prints the receipt section', async () => {
    const model = stack.workers[1]!.modelName;
    const io = memIo({ GM_API_KEY: API_KEY });
    expect(await main(['chat', '--url', stack.enclaveUrl, '--relay', host.url, '--allow-sim', '--model', model, '--max-tokens', '8', PROMPT], io)).toBe(0);
    expect(io.stdout()).toContain(devAnswer(model, 8));
    expect(io.stdout()).toMatch(/receipt \(signature verified with the attested receipt key\)/);
    expect(io.stdout()).toMatch(new RegExp(`model\\s+${model}`));
    expect(io.stderr()).toContain('VERIFIED sim-sev-snp');
    for (const secret of [PROMPT, API_KEY]) expect(io.stderr().includes(secret)).toBe(false);
    const j = memIo({ GM_API_KEY: API_KEY });
    expect(await main(['chat', '--url', stack.enclaveUrl, '--allow-sim', '--model', model, '--max-tokens', '5', '--no-stream', '--json', PROMPT], j)).toBe(0);
    const doc = JSON.parse(j.stdout()) as { answer: string; verification: { verified: boolean } };
    expect(doc.answer).toBe(devAnswer(model, 5));
    expect(doc.verification.verified).toBe(true);
  });
});
