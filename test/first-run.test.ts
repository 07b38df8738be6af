/**
 * The first run as the README walks it, with `node bin/gm.js` as child processes: `gm demo --keep` prints an API
 * key that `gm chat` can then use against the kept stack; `gm enclave --tee sim` prints a sim account's API key; the
 * README's own `gm chat` and live `gm verify` lines run as written (only the fixed ports are swapped for the ephemeral
 * ones this test listens on), and a key that names no account is refused.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devAnswer } from '../worker/dev-model/server.ts';

const root = new URL('..', import.meta.url).pathname;
const bin = join(root, 'bin/gm.js');
const execFileP = promisify(execFile);
const children: ChildProcess[] = [];
let dir = '';

/** A long-running `gm ...`; resolves with everything it printed (stdout + stderr) once that matches `ready`. */
function start(args: string[], ready: RegExp): Promise<{ child: ChildProcess; text: () => string; match: RegExpExecArray }> {
  const child = spawn(process.execPath, [bin, ...args], { cwd: dir, env: { ...process.env, GM_TRUST_DIR: join(dir, 'no-trust') }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let text = '';
  return new Promise((resolve, reject) => {
    const on = (b: Buffer) => {
      text += b.toString();
      const m = ready.exec(text);
      if (m) resolve({ child, text: () => text, match: m });
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', (c) => reject(new Error(`gm ${args[0]} exited ${c}: ${text}`)));
  });
}

/** One `gm ...` to completion: exit code, stdout, stderr. */
async function gm(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  return execFileP(process.execPath, [bin, ...args], { cwd: dir, env: { ...process.env, GM_TRUST_DIR: join(dir, 'no-trust'), ...env } }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );
}

const stopped = (c: ChildProcess, signal: NodeJS.Signals = 'SIGTERM') =>
  new Promise<number | null>((resolve) => {
    if (c.exitCode !== null) return resolve(c.exitCode);
    c.once('exit', (code) => resolve(code));
    c.kill(signal);
  });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gm-first-run-'));
});
afterAll(async () => {
  await Promise.all(children.map((c) => stopped(c)));
  await rm(dir, { recursive: true, force: true });
});

describe('gm demo --keep', () => {
  it('prints an API key that gm chat uses against the kept stack; a key naming no account is refused; Ctrl-C stops it', async () => {
    const demo = await start(['demo', '--keep', '--token-ms', '1'], /try: GM_API_KEY=(gm_\S+) node bin\/gm\.js chat --url (\S+) --relay (\S+) --allow-sim/);
    const [, key, url, relay] = demo.match;
    expect(demo.text()).toContain(`API key of the sim account charged (in this stack's ledger, gone when it stops): ${key}`);
    const ok = await gm(['chat', '--url', url!, '--relay', relay!, '--allow-sim', '--json', 'hello'], { GM_API_KEY: key! });
    expect(ok.code, ok.err).toBe(0);
    const doc = JSON.parse(ok.out) as { receipts: { sim: boolean }[] };
    expect(doc.receipts).toHaveLength(1);
    const wrong = await gm(['chat', '--url', url!, '--relay', relay!, '--allow-sim', 'hello'], { GM_API_KEY: `gm_${'A'.repeat(43)}` });
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/gm chat: ACCOUNT_UNKNOWN: /);
    expect(await stopped(demo.child, 'SIGINT')).toBe(0);
  }, 120_000);
});

describe('the README stack, started by hand', () => {
  let enclave = '';
  let relay = '';
  let account = '';
  let key = '';
  beforeAll(async () => {
    const e = await start(['enclave', '--tee', 'sim', '--listen', '127.0.0.1:0'], /listening on (http:\S+)\n[\s\S]*account (\S+) holds 100 USD of sim credit; its API key \(shown once\): (gm_\S+)\n/);
    [, enclave, account, key] = e.match as unknown as [string, string, string, string];
    const model = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', 'llama-dev', '--token-ms', '0'], /listening on (http:\S+)/);
    await start(['worker', '--tee', 'sim', '--upstream', model.match[1]!, '--enclave', enclave, '--listen', '127.0.0.1:0'], /registered with 1 enclave/);
    const h = await start(['host', '--enclave', enclave, '--listen', '127.0.0.1:0', '--allow-sim'], /"event":"listening","url":"(http:[^"]+)","enclave":"[^"]+","gate":"open"/);
    relay = h.match[1]!;
  }, 120_000);

  /** A README line with its fixed ports swapped for this stack's. */
  async function readmeLine(prefix: string): Promise<string[]> {
    const line = (await readFile(join(root, 'README.md'), 'utf8')).split('\n').find((l) => l.startsWith(prefix));
    expect(line, prefix).toBeDefined();
    const words = line!.replace(/\s+#.*$/, '').match(/"[^"]*"|\S+/g)!.map((w) => w.replace(/^"|"$/g, ''));
    expect(words.slice(0, 2)).toEqual(['node', 'bin/gm.js']);
    return words.slice(2).map((w) => w.replace('http://127.0.0.1:8443', enclave).replace('http://127.0.0.1:8080', relay));
  }

  it("gm enclave --tee sim printed an account's API key that gm chat is charged to", async () => {
    const r = await gm(['chat', '--url', enclave, '--relay', relay, '--allow-sim', '--model', 'llama-dev', '--max-tokens', '4', '--json', 'hello'], { GM_API_KEY: key });
    expect(r.code, r.err).toBe(0);
    const doc = JSON.parse(r.out) as { answer: string; receipts: { account?: string }[] };
    expect(doc.answer).toBe(devAnswer('llama-dev', 4));
    expect(doc.receipts[0]!.account).toBe(account);
  }, 60_000);

  it("the README's gm chat line runs as written (anonymous under sim), and so do its live verify and saved-bundle lines", async () => {
    const chat = await gm(await readmeLine('node bin/gm.js chat --url http://127.0.0.1:8443'));
    expect(chat.code, chat.err).toBe(0);
    expect(chat.out).toContain('receipt (signature verified with the attested receipt key)');
    const verify = await gm(await readmeLine('node bin/gm.js verify http://127.0.0.1:8080'));
    expect(verify.code, verify.err).toBe(0);
    expect(verify.out).toMatch(/: VERIFIED\n/);
    const bundle = await gm(await readmeLine('node bin/gm.js verify bundle enclave.cbor'));
    expect(bundle.code, bundle.err + bundle.out).toBe(0);
    expect(bundle.out).toMatch(/: VERIFIED\n/);
  }, 60_000);
});

describe('the services under --json', () => {
  it('print what they would print as text as JSON lines: the URL, and under sim the account and its API key', async () => {
    const e = await start(['enclave', '--tee', 'sim', '--listen', '127.0.0.1:0', '--json'], /\{"event":"sim-account"[^\n]*\}\n/);
    const lines = e.text().split('\n').filter((l) => l.startsWith('{"event"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      { event: 'listening', url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), sim: true },
      { event: 'sim-account', account: expect.any(String), currency: 'USD', prepaid: '100000000', apiKey: expect.stringMatching(/^gm_/) },
    ]);
    const d = await start(['dev-model', '--listen', '127.0.0.1:0', '--name', 'json-dev', '--json'], /\{"event":"listening"[^\n]*\}\n/);
    const line = JSON.parse(/\{"event":"listening"[^\n]*\}/.exec(d.text())![0]) as { url: string; model: string };
    expect(line.model).toBe('json-dev');
    const models = (await (await fetch(`${line.url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toContain('json-dev');
    await Promise.all([stopped(e.child), stopped(d.child)]);
  }, 60_000);
});
