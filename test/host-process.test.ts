/**
 * `gm host` as an operator runs it (a child process): with --allow-sim every log line says sim, and a shim started
 * before its enclave answers keeps listening with the gate closed (503, Retry-After short) instead of exiting. With
 * an operator policy it starts on the pinned roots of its trust directory.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hasTrustAnchors, TRUST_DIR } from './vectors.ts';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');

/** Starts `gm host` with these flags and GM_TRUST_DIR, waits for its `listening` line, runs `f`, then stops it. */
async function withHost(flags: readonly string[], trustDir: string, f: (lines: Record<string, unknown>[]) => Promise<void>): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'gm-host-process-'));
  const child = spawn(process.execPath, [join(root, 'bin/gm.js'), 'host', '--enclave', 'http://127.0.0.1:9', ...flags, '--listen', '127.0.0.1:0', '--cache-dir', cache], { cwd: root, env: { ...process.env, GM_TRUST_DIR: trustDir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  try {
    await expect.poll(() => err.includes('"event":"listening"') || child.exitCode !== null, { timeout: 30_000, interval: 20 }).toBe(true);
    expect(child.exitCode, err).toBeNull();
    await f(err.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>));
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(cache, { recursive: true, force: true });
  }
}

describe('gm host process', () => {
  it('under --allow-sim marks every log line sim; with no enclave yet it listens with the gate closed', async () => {
    await withHost(['--allow-sim'], '/nonexistent', async (lines) => {
      expect(lines.map((l) => l.event)).toEqual(['gate', 'listening']);
      expect(lines.every((l) => l.sim === true && l.service === 'host')).toBe(true);
      expect(lines[0]).toMatchObject({ state: 'closed' });
      const url = String(lines[1]!.url);
      const r = await fetch(`${url}/.well-known/ohttp-gateway`);
      expect(r.status).toBe(503);
      expect(Number(r.headers.get('retry-after'))).toBeLessThanOrEqual(4);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('HOST_GATE_CLOSED');
    });
  }, 40_000);

  it.skipIf(!hasTrustAnchors)('with an operator policy and the pinned roots in its trust directory it starts, its log not marked sim', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gm-host-policy-'));
    const policy = join(dir, 'enclave-policy.json');
    writeFileSync(policy, JSON.stringify({ 'sev-snp': { measurements: ['ab'.repeat(48)], allowDebug: false } }));
    try {
      await withHost(['--policy', policy], TRUST_DIR, async (lines) => {
        expect(lines.map((l) => l.event)).toEqual(['gate', 'listening']);
        expect(lines.every((l) => l.sim === false && l.service === 'host')).toBe(true);
        expect(lines[0]).toMatchObject({ state: 'closed' });
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 40_000);
});
