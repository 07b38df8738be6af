/**
 * The package as a user gets it: `npm pack` (its prepack step builds dist/), the tarball installed into a fresh app
 * in a temporary folder (dependencies from the npm cache that `npm ci` filled, the registry only for what it lacks),
 * and there: `npx gm --version`; a sim stack started by the installed `gm`; the SDK imported by the package's public
 * name, under the real `openai` client, verifying the enclave and getting the dev-model's answer; and the public
 * types compiled by `tsc --strict` in the app, with a misuse that must not compile.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devAnswer } from '../worker/dev-model/server.ts';

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { name: string; version: string; devDependencies: Record<string, string> };
const npm = (args: string[], cwd: string) => run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, env: { ...process.env, npm_config_update_notifier: 'false' }, maxBuffer: 64 << 20 });

let tmp = '';
let app = '';
let tarball = '';
const children: ChildProcess[] = [];

/** `gm ...` from the app's node_modules/.bin; once its output (stdout and stderr) matches `ready`, resolves with the
 * URL it printed: the pattern's first group, else its "listening on" URL. */
function gm(args: string[], ready = /listening on (http:\/\/\S+)/): Promise<string> {
  const p = spawn(join(app, 'node_modules/.bin/gm'), args, { cwd: app, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GM_TRUST_DIR: join(tmp, 'no-trust') } });
  children.push(p);
  return new Promise((resolve, reject) => {
    let out = '';
    const on = (b: Buffer) => {
      out += b.toString();
      const m = ready.exec(out);
      if (m) resolve(m[1] ?? /listening on (http:\/\/\S+)/.exec(out)?.[1] ?? '');
    };
    p.stdout!.on('data', on);
    p.stderr!.on('data', on);
    p.once('exit', (c) => reject(new Error(`gm ${args[0]} exited ${c}: ${out}`)));
  });
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'gm-package-'));
  app = join(tmp, 'app');
  // The prepack step (npm run build) prints to stdout too, so the tarball is found by npm's naming rule.
  await npm(['pack', '--pack-destination', tmp], root);
  tarball = join(tmp, `${pkg.name.replace(/^@/, '').replace('/', '-')}-${pkg.version}.tgz`);
  await run('mkdir', [app]);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'gm-package-test-app', private: true, type: 'module' }));
  // --prefer-offline: the cache `npm ci` filled answers; the registry is asked only for what it lacks.
  await npm(['install', '--prefer-offline', '--ignore-scripts', tarball, `openai@${pkg.devDependencies.openai}`], app);
}, 600_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the packed package', () => {
  it('ships the built JavaScript, its types, the CLI launcher and the trust anchors, and no sources, tests or benches', async () => {
    const files = (await run('tar', ['-tzf', tarball])).stdout.trim().split('\n').map((f) => f.replace(/^package\//, ''));
    expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'bin/gm.js', 'dist/cli/main.js', 'dist/client/index.js', 'dist/client/index.d.ts', 'dist/browser/client.js', 'dist/browser/client.js.map', 'trust/intel/sgx_root_ca.pem']));
    expect(files.filter((f) => /\.test\.|(^|\/)bench\/|(^|\/)test\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')))).toEqual([]);
    const manifest = JSON.parse(await readFile(join(app, 'node_modules', pkg.name, 'package.json'), 'utf8')) as { private?: boolean; exports: Record<string, { types: string; default: string }> };
    expect(manifest.private).toBeUndefined();
    for (const [entry, target] of Object.entries(manifest.exports)) {
      if (typeof target === 'string') continue;
      expect(target.types, entry).toMatch(/^\.\/dist\/.*\.d\.ts$/);
      expect(target.default, entry).toMatch(/^\.\/dist\/.*\.js$/);
    }
  });

  it('npx gm --version prints the version; gm --help works from the built CLI', async () => {
    expect((await run('npx', ['gm', '--version'], { cwd: app })).stdout).toBe(`${pkg.version}\n`);
    expect((await run(join(app, 'node_modules/.bin/gm'), ['verify', 'snp', '--help'], { cwd: app })).stdout).toContain('Usage: gm verify snp');
  });

  it("imports createClient from '<name>/client' and drives the real openai client against a sim stack run by the installed gm", async () => {
    const enclave = await gm(['enclave', '--tee', 'sim', '--listen', '127.0.0.1:0']);
    const model = 'llama-dev';
    const upstream = await gm(['dev-model', '--listen', '127.0.0.1:0', '--name', model, '--token-ms', '0']);
    await gm(['worker', '--tee', 'sim', '--upstream', upstream, '--enclave', enclave, '--listen', '127.0.0.1:0'], /registered with 1 enclave()/);
    const relay = await gm(['host', '--enclave', enclave, '--listen', '127.0.0.1:0', '--allow-sim'], /"event":"listening","url":"(http:[^"]+)"[^\n]*"gate":"open"/);
    await writeFile(
      join(app, 'sdk.mjs'),
      `import OpenAI from 'openai';
import { createClient } from '${pkg.name}/client';
const [url, model] = process.argv.slice(2);
const gm = await createClient({ url, allowSim: true });
const openai = new OpenAI({ baseURL: gm.baseURL, apiKey: 'gm-anonymous', fetch: gm.fetch, maxRetries: 0 });
const r = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello from an installed package' }], max_tokens: 6 });
console.log(JSON.stringify({ verified: gm.verification.verified, sim: gm.claims.sim, answer: r.choices[0].message.content, receipts: gm.receipts.length }));
`,
    );
    const out = JSON.parse((await run(process.execPath, ['sdk.mjs', enclave, model], { cwd: app })).stdout) as Record<string, unknown>;
    expect(out).toEqual({ verified: true, sim: true, answer: devAnswer(model, 6), receipts: 1 });
    // The README's SDK example, as written but for the stack's ephemeral ports.
    const readme = await readFile(join(root, 'README.md'), 'utf8');
    const example = /## Use it from an app \(SDK\)[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toContain(`from '${pkg.name}/client'`);
    await writeFile(join(app, 'app.mjs'), example!.replace('http://127.0.0.1:8443', enclave).replace('http://127.0.0.1:8080', relay));
    const printed = (await run(process.execPath, ['app.mjs'], { cwd: app })).stdout;
    expect(printed.startsWith(devAnswer(model, 1))).toBe(true);
    expect(printed).toMatch(/ true 1\n$/);
  }, 120_000);

  /** tsc --strict over `file` in the app; its output when it fails. */
  async function tsc(file: string, options: Record<string, unknown>): Promise<{ code: number; out: string }> {
    const config = `tsconfig.${file}.json`;
    await writeFile(
      join(app, config),
      JSON.stringify({ compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2023', 'dom', 'dom.iterable'], ...options }, files: [file] }),
    );
    return run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', config], { cwd: app }).then(
      () => ({ code: 0, out: '' }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
  }

  it("every public entry's types compile under tsc --strict with no Node types and every .d.ts checked", async () => {
    const each = async (dir: string) => (await readdir(join(app, 'node_modules', pkg.name, 'dist', dir))).filter((f) => f.endsWith('.d.ts')).map((f) => `${dir}/${f.slice(0, -5)}`);
    const protocol = await each('protocol');
    const entries = ['client', 'client/browser', ...['errors', 'report', 'trust', 'x509', 'sevsnp', 'tdx', 'nvidia'].map((a) => `attestation/${a}`), ...(await each('attestation/measure')), ...protocol];
    expect(protocol).toContain('protocol/ohttp');
    await writeFile(join(app, 'entries.ts'), `${entries.map((e, i) => `import * as m${i} from '${pkg.name}/${e}';`).join('\n')}\nexport const all = [${entries.map((_e, i) => `m${i}`).join(', ')}];\n`);
    expect(await tsc('entries.ts', { types: [], skipLibCheck: false })).toEqual({ code: 0, out: '' });
  }, 120_000);

  it('an app using the SDK with openai compiles under tsc --strict, and a misuse of createClient does not', async () => {
    await writeFile(
      join(app, 'check.ts'),
      `import OpenAI from 'openai';
import { createClient, type GmClient } from '${pkg.name}/client';
import { GmError } from '${pkg.name}/attestation/errors';
import type { VerificationReport } from '${pkg.name}/attestation/report';

export async function ask(url: string): Promise<string | null> {
  const gm: GmClient = await createClient({ url, allowSim: true });
  const report: VerificationReport = gm.verification;
  if (!report.verified) throw new GmError('rejected', 'NOT_VERIFIED', report.subject);
  const openai = new OpenAI({ baseURL: gm.baseURL, apiKey: 'k', fetch: gm.fetch });
  const r = await openai.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
  return r.choices[0]?.message.content ?? null;
}

// @ts-expect-error: url must be a string (fails to compile if the package's types were missing or any)
export const wrong = () => createClient({ url: 42 });
`,
    );
    // openai's own declarations reach undici's, which need Node's types: an app checks its own code, not theirs.
    expect(await tsc('check.ts', { skipLibCheck: true })).toEqual({ code: 0, out: '' });
  }, 120_000);
});
