/**
 * `gm demo` as the README runs it: a child process `node bin/gm.js demo` that must print the verification report,
 * the streamed answer and the receipt section, exit 0, and leave nothing running (the process exits by itself).
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { startDemoStack } from '../cli/demo-stack.ts';
import { devAnswer } from '../worker/dev-model/server.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('gm demo', () => {
  it('runs the whole sim stack, verifies through the relay, streams the answer, prints the receipt and exits cleanly', async () => {
    const child = spawn(process.execPath, [join(root, 'bin/gm.js'), 'demo', '--token-ms', '1'], { cwd: root, env: { ...process.env, GM_TRUST_DIR: '/nonexistent' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => void (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => void (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code, err).toBe(0);
    expect(out).toContain('== Verification report (enclave, fetched through the relay) ==');
    expect(out).toMatch(/evidence bundle \(sim-sev-snp\) \[SIM: not backed by hardware\]: VERIFIED/);
    expect(out).not.toMatch(/^\s+FAIL/m);
    // The demo runs on the hybrid post-quantum suite: the client chose the enclave's X-Wing configuration.
    expect(out).toMatch(/client\.key-config[^\n]*\n[^\n]*MLKEM768-X25519 \(X-Wing\)/);
    expect(out).toContain(devAnswer('gm-dev-1', 16));
    expect(out).toContain('== Receipt ==');
    expect(out).toMatch(/receipt \(signature verified with the attested receipt key\)/);
    expect(out).toMatch(/model\s+gm-dev-1/);
    expect(err).toMatch(/gate OPEN/);
    expect(err).toMatch(/verifying the enclave through the relay/);
    expect(err).toMatch(/stopped every service cleanly/);
  }, 60_000);

  it("the demo stack's status page shows the gate, the workers and the live signed offers", async () => {
    const s = await startDemoStack({ tokenMs: 0 });
    try {
      const html = await (await fetch(`${s.relayUrl}/`)).text();
      expect(html).toContain('id="gate" class="state-open">OPEN');
      expect(html).toMatch(/<td data-label="state">verified<\/td><td data-label="workers">2<\/td>/);
      expect(html).toMatch(/<table id="offers">.*gm-dev-1.*gm-dev-2/s);
      expect(html).toContain('per-request');
      // Offer validity (Unix seconds in the offer) shown as a time in the future, its ISO time on hover.
      const offers = html.slice(html.indexOf('<table id="offers">'));
      const until = [...offers.matchAll(/<td data-label="expires"><time datetime="[^"]+" title="(\d{4}-\d\d-\d\dT[^"]+)">in [^<]+<\/time><\/td><\/tr>/g)].map((m) => Date.parse(m[1]!));
      expect(until.length).toBe(2);
      for (const t of until) expect(t).toBeGreaterThan(Date.now());
    } finally {
      await s.stop();
    }
  });
});
