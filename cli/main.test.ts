/**
 * The command line's contract, checked through main() in process and through `node bin/gm.js` as a user runs it:
 * help and --version exit 0; usage errors are one line and exit 2; runtime failures are one line naming the cause
 * and the flag, never a stack trace; --json errors are JSON; a closed stdout ends the command quietly.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from './commands.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';
import { envName } from './program.ts';

const root = new URL('..', import.meta.url).pathname;
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const dir = mkdtempSync(join(tmpdir(), 'gm-cli-'));

async function gm(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = {
    out: (s) => void (out += s),
    err: (s) => void (err += s),
    readFile: async (p) => {
      const { nodeIo } = await import('./io.ts');
      return nodeIo.readFile(p);
    },
    env: { GM_TRUST_DIR: join(dir, 'no-trust'), ...env },
  };
  return { code: await main(argv, io), out, err };
}

/** Exactly one line, no stack frames. */
const ONE_LINE = /^[^\n]+\n$/;
const noStack = (s: string) => expect(s).not.toMatch(/\n\s+at /);

describe('help and version', () => {
  it('gm --help, -h, gm help: usage on stdout listing every command, exit 0', async () => {
    for (const argv of [['--help'], ['-h'], ['help']]) {
      const r = await gm(argv);
      expect(r.code, argv.join(' ')).toBe(0);
      expect(r.err).toBe('');
      expect(r.out).toMatch(/^Usage: gm /);
      for (const c of COMMANDS.filter((c) => !c.name.includes(' '))) expect(r.out).toContain(`  ${c.name} `);
    }
  });

  it('every command answers --help, -h and gm help <command> with exit 0, listing each flag and its GM_* name', async () => {
    for (const c of COMMANDS) {
      const words = c.name.split(' ');
      const forms = [[...words, '--help'], [...words, '-h'], ['help', ...words]];
      const outs = new Set<string>();
      for (const argv of forms) {
        const r = await gm(argv);
        expect(r.code, argv.join(' ')).toBe(0);
        expect(r.out, argv.join(' ')).toContain(`Usage: gm ${c.name}`);
        outs.add(r.out);
      }
      expect(outs.size, c.name).toBe(1);
      const [help] = outs;
      for (const [flag, f] of Object.entries(c.flags ?? {})) {
        if (f.envOnly) {
          expect(help, `${c.name} ${envName(flag)}`).toMatch(new RegExp(`Environment only[^]*\\n  ${envName(flag)} `));
          expect(help, `${c.name} --${flag}`).not.toContain(`--${flag} `);
          continue;
        }
        expect(help, `${c.name} --${flag}`).toContain(`--${flag}${f.value ? ` <${f.value}>` : ''}`);
        const env = (f.env ?? c.env) && flag !== 'json';
        if (env) expect(help, `${c.name} --${flag}`).toContain(envName(flag));
        else expect(help, `${c.name} --${flag}`).not.toContain(`[env ${envName(flag)}]`);
      }
    }
  });

  it('gm chat --help shows the flags it takes, --api-key, --max-tokens, --collateral, --no-stream and --report among them', async () => {
    const r = await gm(['chat', '--help']);
    for (const f of ['--url <URL>', '--relay <URL>', '--api-key <KEY>', '--max-tokens <N>', '--collateral <URL>', '--no-stream', '--report', '--json', '[env GM_API_KEY]']) expect(r.out).toContain(f);
  });

  it('gm --version prints the package version', async () => {
    expect(await gm(['--version'])).toEqual({ code: 0, out: `${version}\n`, err: '' });
  });
});

describe('usage errors: one line, exit 2', () => {
  it('an unknown command says so and suggests the nearest', async () => {
    const r = await gm(['verifyy']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(ONE_LINE);
    expect(r.err).toContain("unknown command 'verifyy'");
    expect(r.err).toContain('Did you mean verify?');
    const sub = await gm(['receipts', 'verfy']);
    expect(sub.code).toBe(2);
    expect(sub.err).toMatch(/^gm receipts: unknown command 'verfy' \(Did you mean verify\?\)/);
  });

  it('an unknown flag on every command is one line naming the command, with a suggestion when one is near', async () => {
    for (const c of COMMANDS.filter((c) => c.run)) {
      const r = await gm([...c.name.split(' '), '--bogus-flag']);
      expect(r.code, c.name).toBe(2);
      expect(r.err, c.name).toMatch(ONE_LINE);
      expect(r.err, c.name).toMatch(new RegExp(`^gm ${c.name}: unknown option '--bogus-flag'`));
    }
    expect((await gm(['host', '--polcy', 'x'])).err).toContain('(Did you mean --policy?)');
  });

  it('missing values, values given twice, bad ports and bad URLs are usage errors', async () => {
    for (const argv of [
      ['verify', 'snp', '--report'],
      ['verify', 'snp', '--report', 'a', '--report', 'b'],
      ['verify', 'snp', '--report', ''],
      ['enclave', '--listen', '999999'],
      ['worker', '--listen', 'nonsense'],
      ['chat', '--url', 'not a url', 'hi'],
      ['verify', 'bundle'],
      ['verify', 'bundle', 'a', 'b'],
      ['chat', '--url', 'http://127.0.0.1:9'],
      ['receipts', 'account', 'explode', '--ledger', join(dir, 'l.sqlite')],
    ]) {
      const r = await gm(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).toMatch(ONE_LINE);
      expect(r.err, argv.join(' ')).toMatch(new RegExp(`^gm ${argv[0]}`));
    }
    expect((await gm(['enclave', '--listen', '999999'])).err).toBe('gm enclave: --listen port must be at most 65535 (got 999999) (see gm enclave --help)\n');
  });

  it('GM_* variables give flags of the services and chat, and are checked like flags', async () => {
    const r = await gm(['enclave'], { GM_LISTEN: '999999' });
    expect(r.code).toBe(2);
    expect(r.err).toContain('--listen port must be at most 65535');
    const b = await gm(['host', '--enclave', 'http://127.0.0.1:9'], { GM_ALLOW_SIM: 'yes' });
    expect(b.code).toBe(2);
    expect(b.err).toContain('GM_ALLOW_SIM must be 1, true, 0 or false');
    // A flag on the command line wins over the environment.
    const c = await gm(['dev-model', '--token-ms', 'x'], { GM_TOKEN_MS: '5' });
    expect(c.err).toContain('--token-ms must be an integer');
  });

  it('under --json a usage error is also a JSON object on stdout', async () => {
    const r = await gm(['verify', 'snp', '--bogus', '--json']);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.out)).toEqual({ error: { code: 'USAGE', kind: 'config', message: expect.stringContaining("unknown option '--bogus'") } });
  });
});

describe('runtime failures: one line naming the cause and the flag, no stack trace', () => {
  let busy: Server;
  let busyPort = 0;
  let closedPort = 0;
  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    busyPort = (busy.address() as { port: number }).port;
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    closedPort = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
  });
  afterAll(() => new Promise<void>((r) => busy.close(() => r())));

  it('a port in use names the address and --listen (exit 1)', async () => {
    for (const cmd of [['dev-model'], ['host', '--enclave', 'http://127.0.0.1:9', '--allow-sim']]) {
      const r = await gm([...cmd, '--listen', `127.0.0.1:${busyPort}`]);
      expect(r.code, cmd[0]).toBe(1);
      expect(r.err, cmd[0]).toBe(`gm ${cmd[0]}: EADDRINUSE: 127.0.0.1:${busyPort} is already in use (--listen)\n`);
    }
  });

  it('a missing file names the flag (exit 2); a file of the wrong kind says what it should hold', async () => {
    const missing = await gm(['verify', 'snp', '--report', join(dir, 'nope.bin')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(ONE_LINE);
    expect(missing.err).toMatch(/^gm verify snp: FILE_UNREADABLE: cannot read .*nope\.bin: ENOENT \(--report\)\n$/);
    const text = join(dir, 'policy.txt');
    writeFileSync(text, 'not json');
    const wrong = await gm(['host', '--enclave', 'http://127.0.0.1:9', '--policy', text]);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toBe(`gm host: POLICY_INVALID: --policy ${text} is not valid JSON\n`);
    const ledger = await gm(['receipts', 'statement', '--ledger', text, '--account', 'a']);
    expect(ledger.code).toBe(2);
    expect(ledger.err).toMatch(/^gm receipts statement: LEDGER_UNREADABLE: .* \(--ledger\)\n$/);
  });

  it('an unreachable URL names it and the flag (exit 1), and is JSON under --json', async () => {
    const url = `http://127.0.0.1:${closedPort}`;
    const r = await gm(['chat', '--url', url, '--allow-sim', '--json', 'hi']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(ONE_LINE);
    expect(r.err).toContain(`${url} (fetch failed: ECONNREFUSED 127.0.0.1:${closedPort}) (--url)`);
    expect(JSON.parse(r.out.trim().split('\n').at(-1)!).error.code).toBe('ATTESTATION_UNREACHABLE');
  });
});

/** `node bin/gm.js ...` as a child; `closeStdout` closes the reading end before the child writes anything. */
function child(argv: string[], closeStdout = false): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(root, 'bin/gm.js'), ...argv], { cwd: root, env: { ...process.env, GM_TRUST_DIR: join(dir, 'no-trust') }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    if (closeStdout) p.stdout.destroy();
    else p.stdout.on('data', (b: Buffer) => void (out += b.toString()));
    p.stderr.on('data', (b: Buffer) => void (err += b.toString()));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

describe('gm as a process', () => {
  it('--version and -h exit 0; a usage error exits 2 with one line', async () => {
    expect(await child(['--version'])).toEqual({ code: 0, out: `${version}\n`, err: '' });
    const h = await child(['verify', 'gpu', '-h']);
    expect(h.code).toBe(0);
    expect(h.out).toContain('Usage: gm verify gpu');
    const bad = await child(['enclave', '--listen', '999999']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(ONE_LINE);
  });

  it('a closed stdout (gm ... --json | head) ends quietly, without a stack trace', async () => {
    const r = await child(['trust', 'list', '--json'], true);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const h = await child(['--help'], true);
    noStack(h.err);
    expect(h.err).toBe('');
    expect(h.code).toBe(0);
  });
});

describe('layers', () => {
  it('no library or service module imports the command line (cli/ sits on top of them all)', () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
        const rel = join(dir, e.name);
        if (e.isDirectory()) walk(rel);
        // A runnable example prints its reports the way the CLI does; it is an end point, not a library.
        else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && rel !== 'enclave/market/example.ts' && /from '(\.\.\/)+cli\//.test(readFileSync(join(root, rel), 'utf8'))) offenders.push(rel);
      }
    };
    for (const d of ['attestation', 'protocol', 'client', 'enclave', 'worker', 'host']) walk(d);
    expect(offenders).toEqual([]);
  });
});
