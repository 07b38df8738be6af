/** `gm host` argument handling and the SDK's no-Node rule (docs/design.md §2), checked on the sources. */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Io } from '../cli/io.ts';
import { main } from '../cli/main.ts';
import { parseListen } from '../host/main.ts';

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

describe('SDK core', () => {
  it('has no node: imports (it runs in browsers)', () => {
    const files = readdirSync(join(root, 'client')).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(readFileSync(join(root, 'client', f), 'utf8'), f).not.toMatch(/from ['"]node:|require\(['"]node:|import\(['"]node:/);
  });
});
