/** `gm host` argument handling and trust directory, and the SDK's no-Node rule (docs/design.md §2), checked on the sources. */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { Io } from '../cli/io.ts';
import { main } from '../cli/main.ts';
import { parseListen } from '../host/main.ts';
import { hasTrustAnchors, TRUST_DIR } from './vectors.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
function memIo(): Io & { stderr: () => string } {
  let err = '';
  return { out: () => {}, err: (s) => void (err += s), readFile: async () => new Uint8Array(), env: {}, stderr: () => err };
}

/** Runs `gm host ...` in process; returns the exit code and what it printed on stderr. */
async function host(...argv: string[]): Promise<{ code: number; err: string }> {
  const io = memIo();
  return { code: await main(['host', ...argv], io), err: io.stderr() };
}

describe('gm host flags', () => {
  it('parses --listen forms and refuses bad ones', () => {
    expect(parseListen('0.0.0.0:8080')).toEqual({ hostname: '0.0.0.0', port: 8080 });
    expect(parseListen('[::1]:9')).toEqual({ hostname: '::1', port: 9 });
    expect(parseListen('7000')).toEqual({ hostname: '127.0.0.1', port: 7000 });
    expect(() => parseListen('host:99999')).toThrow(expect.objectContaining({ code: 'USAGE' }));
    expect(() => parseListen('nonsense')).toThrow(expect.objectContaining({ code: 'USAGE' }));
  });

  it('needs --enclave, and a policy unless --allow-sim; unknown flags are usage errors', async () => {
    expect(await host()).toEqual({ code: 2, err: 'gm host: needs --enclave URL (see gm host --help)\n' });
    expect(await host('--enclave', 'http://127.0.0.1:1')).toMatchObject({ code: 2, err: expect.stringMatching(/^gm host: POLICY_REQUIRED: /) });
    expect(await host('--enclave', 'http://127.0.0.1:1', '--allow-sim', '--polcy', 'x')).toMatchObject({ code: 2, err: expect.stringMatching(/^gm host: unknown option '--polcy' \(Did you mean --policy\?\)/) });
    expect(await host('--enclave', 'http://127.0.0.1:1', '--allow-sim', '--check-interval', '0')).toMatchObject({ code: 2, err: expect.stringContaining('--check-interval must be at least 1 second') });
  });

  it('takes --enclave once per replica: each must be a URL, none twice', async () => {
    expect(await host('--enclave', 'http://127.0.0.1:1', '--enclave', 'http://127.0.0.1:1', '--allow-sim')).toMatchObject({ code: 2, err: expect.stringContaining('--enclave lists the same replica twice') });
    expect(await host('--enclave', 'http://127.0.0.1:1', '--enclave', 'replica-2', '--allow-sim')).toMatchObject({ code: 2, err: expect.stringContaining('--enclave must be an http(s) URL (got replica-2)') });
  });

  it('gm enclave: --join and --peer-policy need a PostgreSQL ledger', async () => {
    const io = memIo();
    expect(await main(['enclave', '--tee', 'sim', '--join', 'http://127.0.0.1:1'], io)).toBe(2);
    expect(io.stderr()).toContain('--join and --peer-policy need a shared ledger (--ledger postgres://...)');
  });
});

describe('gm host trust directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gm-host-trust-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const policy = new TextEncoder().encode(JSON.stringify({ 'sev-snp': { measurements: ['ab'.repeat(48)], allowDebug: false } }));
  /**
   * `gm host` with GM_TRUST_DIR and these flags, in process, with --check-interval 0: a shim that got past its trust
   * directory stops at that usage error before it listens.
   */
  async function host(trustDir: string, ...flags: string[]): Promise<{ exit: number; code: string | undefined; err: string }> {
    let err = '';
    const io: Io = { out: () => {}, err: (s) => void (err += s), readFile: async () => policy, env: { GM_TRUST_DIR: trustDir } };
    const exit = await main(['host', '--enclave', 'http://127.0.0.1:9', '--check-interval', '0', ...flags], io);
    expect(err).not.toContain('"event":"listening"');
    return { exit, code: /^gm host: ([A-Z_]+): /.exec(err)?.[1], err };
  }
  const pastTrust = { exit: 2, err: 'gm host: --check-interval must be at least 1 second (see gm host --help)\n' };

  it.skipIf(!hasTrustAnchors)('a certificate that fails its pin stops the shim (TRUST_PIN_MISMATCH), with or without --allow-sim; the pinned roots let it past', async () => {
    const bad = join(dir, 'bad');
    cpSync(TRUST_DIR, bad, { recursive: true });
    writeFileSync(join(bad, 'amd/ask_ark_genoa.pem'), readFileSync(join(TRUST_DIR, 'amd/ask_ark_milan.pem')));
    expect(await host(bad, '--policy', '/etc/gm/enclave-policy.json')).toMatchObject({ exit: 2, code: 'TRUST_PIN_MISMATCH', err: expect.stringContaining('amd/ask_ark_genoa.pem') });
    expect(await host(bad, '--policy', '/etc/gm/enclave-policy.json', '--allow-sim')).toMatchObject({ exit: 2, code: 'TRUST_PIN_MISMATCH' });
    expect(await host(TRUST_DIR, '--policy', '/etc/gm/enclave-policy.json')).toMatchObject(pastTrust);
    // On the sim policy (--allow-sim, no --policy) the shim reads no trust directory.
    expect(await host(bad, '--allow-sim')).toMatchObject(pastTrust);
  });

  it('a trust directory that cannot be read stops the shim (TRUST_DIR_UNREADABLE)', async () => {
    const notDir = join(dir, 'a-file');
    writeFileSync(notDir, 'not a directory');
    expect(await host(notDir, '--policy', '/etc/gm/enclave-policy.json', '--allow-sim')).toMatchObject({ exit: 2, code: 'TRUST_DIR_UNREADABLE', err: expect.stringContaining(notDir) });
  });

  it('without --allow-sim, a trust directory holding no anchor stops the shim (TRUST_ANCHOR_MISSING, naming it); with it, the shim starts', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    for (const d of [join(dir, 'absent'), empty]) {
      const r = await host(d, '--policy', '/etc/gm/enclave-policy.json');
      expect(r).toMatchObject({ exit: 2, code: 'TRUST_ANCHOR_MISSING' });
      expect(r.err).toContain(d);
      expect(r.err).toContain('gm trust import');
      expect(await host(d, '--policy', '/etc/gm/enclave-policy.json', '--allow-sim')).toMatchObject(pastTrust);
    }
  });
});

describe('SDK core', () => {
  it('has no node: imports (it runs in browsers)', () => {
    const files = readdirSync(join(root, 'client')).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(readFileSync(join(root, 'client', f), 'utf8'), f).not.toMatch(/from ['"]node:|require\(['"]node:|import\(['"]node:/);
  });
});
