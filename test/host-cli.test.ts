/** `gm host` argument handling and the SDK's no-Node rule (docs/design.md §2), checked on the sources. */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Io } from '../client/cli/io.ts';
import { parseListen, run } from '../host/main.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const io: Io = { out: () => {}, err: () => {}, readFile: async () => new Uint8Array(), env: {} };

describe('gm host flags', () => {
  it('parses --listen forms and refuses bad ones', () => {
    expect(parseListen('0.0.0.0:8080')).toEqual({ hostname: '0.0.0.0', port: 8080 });
    expect(parseListen('[::1]:9')).toEqual({ hostname: '::1', port: 9 });
    expect(parseListen('7000')).toEqual({ hostname: '127.0.0.1', port: 7000 });
    expect(() => parseListen('host:99999')).toThrow(expect.objectContaining({ code: 'USAGE' }));
    expect(() => parseListen('nonsense')).toThrow(expect.objectContaining({ code: 'USAGE' }));
  });

  it('needs --enclave, and a policy unless --allow-sim; unknown flags are usage errors', async () => {
    await expect(run([], io)).rejects.toMatchObject({ code: 'USAGE' });
    await expect(run(['--enclave', 'http://127.0.0.1:1'], io)).rejects.toMatchObject({ code: 'POLICY_REQUIRED' });
    await expect(run(['--enclave', 'http://127.0.0.1:1', '--allow-sim', '--polcy', 'x'], io)).rejects.toMatchObject({ code: 'USAGE' });
    await expect(run(['--enclave', 'http://127.0.0.1:1', '--allow-sim', '--check-interval', '0'], io)).rejects.toMatchObject({ code: 'USAGE' });
  });
});

describe('SDK core', () => {
  it('has no node: imports (it runs in browsers)', () => {
    const files = readdirSync(join(root, 'client')).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(readFileSync(join(root, 'client', f), 'utf8'), f).not.toMatch(/from ['"]node:|require\(['"]node:|import\(['"]node:/);
  });
});
