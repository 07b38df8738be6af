/**
 * `--tee auto` at the command line (`auto` picks configfs when present and refuses to start otherwise,
 * never falling back to sim silently): `gm enclave` and `gm worker` exit 2 with TEE_UNAVAILABLE when there is no
 * configfs-tsm tree, and nothing is listening afterwards. With a configfs tree present, auto picks configfs (a real
 * TEE), so the enclave then insists on a worker policy instead of quietly running on sim defaults.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Io } from '../cli/io.ts';
import { main } from '../cli/main.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gm-tee-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function memIo(): Io & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return { out: (s) => void (out += s), err: (s) => void (err += s), readFile: async () => new Uint8Array(), env: {}, stdout: () => out, stderr: () => err };
}

describe('gm enclave / gm worker --tee auto', () => {
  it('gm enclave refuses to start without configfs-tsm (default and explicit auto), and --tee configfs likewise', async () => {
    const absent = join(dir, 'no-tsm');
    for (const argv of [['enclave', '--configfs-root', absent, '--listen', '127.0.0.1:0'], ['enclave', '--tee', 'auto', '--configfs-root', absent, '--listen', '127.0.0.1:0'], ['enclave', '--tee', 'configfs', '--configfs-root', absent]]) {
      const io = memIo();
      expect(await main(argv, io), argv.join(' ')).toBe(2);
      expect(io.stderr()).toContain('TEE_UNAVAILABLE');
      expect(io.stdout()).not.toContain('listening');
      expect(io.stderr()).not.toMatch(/SIMULATED|"sim":true/);
    }
  });

  it('gm worker refuses to start without configfs-tsm under auto', async () => {
    const io = memIo();
    expect(await main(['worker', '--tee', 'auto', '--configfs-root', join(dir, 'no-tsm'), '--upstream', 'http://127.0.0.1:1', '--enclave', 'http://127.0.0.1:2'], io)).toBe(2);
    expect(io.stderr()).toContain('TEE_UNAVAILABLE');
    expect(io.stdout()).not.toContain('listening');
  });

  it('with a configfs-tsm tree present, auto takes the real provider (a worker policy is then required, no sim defaults)', async () => {
    const io = memIo();
    expect(await main(['enclave', '--tee', 'auto', '--configfs-root', dir, '--listen', '127.0.0.1:0'], io)).toBe(2);
    expect(io.stderr()).toContain('WORKER_POLICY_REQUIRED');
    expect(io.stderr()).not.toContain('SIMULATED');
  });

  it('a real enclave with a worker policy and no trust anchors does not start (TRUST_ANCHOR_MISSING, naming the directory)', async () => {
    const empty = join(dir, 'empty-trust');
    await mkdir(empty, { recursive: true });
    const policy = new TextEncoder().encode(JSON.stringify({ snp: { measurements: ['ab'.repeat(48)], allowDebug: false } }));
    const io = { ...memIo(), env: { GM_TRUST_DIR: empty }, readFile: async () => policy };
    const err: string[] = [];
    const out: string[] = [];
    io.err = (s) => void err.push(s);
    io.out = (s) => void out.push(s);
    expect(await main(['enclave', '--tee', 'auto', '--configfs-root', dir, '--worker-policy', 'policy.json', '--listen', '127.0.0.1:0'], io)).toBe(2);
    expect(err.join('')).toContain('TRUST_ANCHOR_MISSING');
    expect(err.join('')).toContain(empty);
    expect(out.join('')).not.toContain('listening');
  });
});
