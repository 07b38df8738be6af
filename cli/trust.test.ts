import { existsSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync, cpSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ANCHOR_FILES } from '../attestation/trust.ts';
import { TRUST_DIR, hasTrustAnchors } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';


function io(dir: string) {
  const out: string[] = [];
  const err: string[] = [];
  const x: Io = { out: (s) => void out.push(s), err: (s) => void err.push(s), env: { GM_TRUST_DIR: dir }, readFile: async (p) => new Uint8Array(await readFile(p)) };
  return { io: x, out: () => out.join(''), err: () => err.join('') };
}

/** A stand-in for the vendors: serves each anchor file at its source path; `tamper` alters the named one. */
function vendor(tamper?: string): Promise<{ server: Server; url: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const file = ANCHOR_FILES.find((f) => f.source.path === req.url);
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    let body = readFileSync(join(TRUST_DIR, file.path));
    if (file.path === tamper) {
      // Swap the order of the two certificates: same bytes, wrong positions, so each fails its pin.
      const text = body.toString('utf8');
      const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)!;
      body = Buffer.from(blocks.reverse().join(''));
    }
    res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits })));
}

describe.skipIf(!hasTrustAnchors)('gm trust', () => {
  const servers: Server[] = [];
  afterAll(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

  it('fetch downloads every pinned file from the vendor URLs, checks the pins, and list then shows them all', async () => {
    const v = await vendor();
    servers.push(v.server);
    const dir = mkdtempSync(join(tmpdir(), 'gm-trust-'));
    const t = io(dir);
    expect(await main(['trust', 'fetch', '--base-url', v.url], t.io)).toBe(0);
    expect(v.hits).toContain('/vcek/v1/Milan/cert_chain');
    expect(v.hits).toContain('/vlek/v1/Turin/cert_chain');
    expect(v.hits).toContain('/Intel_SGX_Provisioning_Certification_RootCA.pem');
    for (const f of ANCHOR_FILES) expect(readFileSync(join(dir, f.path))).toEqual(readFileSync(join(TRUST_DIR, f.path)));
    const l = io(dir);
    expect(await main(['trust', 'list'], l.io)).toBe(0);
    expect(l.out().match(/^ok /gm)?.length).toBe(ANCHOR_FILES.length);
  });

  it('fetch refuses a tampered file, writes nothing of it, and exits 1', async () => {
    const v = await vendor('amd/ask_ark_genoa.pem');
    servers.push(v.server);
    const dir = mkdtempSync(join(tmpdir(), 'gm-trust-'));
    const t = io(dir);
    expect(await main(['trust', 'fetch', '--base-url', v.url], t.io)).toBe(1);
    expect(t.err()).toContain('REFUSED amd/ask_ark_genoa.pem');
    expect(t.err()).toContain('TRUST_PIN_MISMATCH');
    expect(existsSync(join(dir, 'amd/ask_ark_genoa.pem'))).toBe(false);
    expect(existsSync(join(dir, 'amd/ask_ark_milan.pem'))).toBe(true);
  });

  it('fetch reports HTTP failures', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gm-trust-'));
    const v = await vendor();
    servers.push(v.server);
    const t = io(dir);
    expect(await main(['trust', 'fetch', '--base-url', `${v.url}/nothing-here`], t.io)).toBe(1);
    expect(t.err()).toContain('HTTP 404');
  });

  it('import copies pinned files and refuses a mismatching one; list flags a bad file', async () => {
    const src = mkdtempSync(join(tmpdir(), 'gm-trust-src-'));
    cpSync(TRUST_DIR, src, { recursive: true });
    const dir = mkdtempSync(join(tmpdir(), 'gm-trust-'));
    let t = io(dir);
    expect(await main(['trust', 'import', src], t.io)).toBe(0);
    expect(t.out()).toContain(`${ANCHOR_FILES.length} file(s) imported`);

    const milan = readFileSync(join(TRUST_DIR, 'amd/ask_ark_milan.pem'));
    const genoa = readFileSync(join(TRUST_DIR, 'amd/ask_ark_genoa.pem'));
    const bad = mkdtempSync(join(tmpdir(), 'gm-trust-bad-'));
    mkdirSync(join(bad, 'amd'));
    writeFileSync(join(bad, 'amd/ask_ark_milan.pem'), genoa); // Genoa's chain under Milan's name
    const dir2 = mkdtempSync(join(tmpdir(), 'gm-trust-'));
    t = io(dir2);
    expect(await main(['trust', 'import', bad], t.io)).toBe(1);
    expect(t.err()).toContain('TRUST_PIN_MISMATCH');
    expect(existsSync(join(dir2, 'amd/ask_ark_milan.pem'))).toBe(false);

    writeFileSync(join(dir, 'amd/ask_ark_milan.pem'), Buffer.concat([milan.subarray(0, milan.length / 2)]));
    t = io(dir);
    expect(await main(['trust', 'list'], t.io)).toBe(1);
    expect(t.out()).toMatch(/BAD +amd\/ask_ark_milan\.pem/);
  });

  it('usage errors exit 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gm-trust-'));
    for (const argv of [['trust', 'import'], ['trust', 'fetch', '--bogus'], ['trust', 'fetch', '--base-url', 'ftp://x'], ['trust', 'list', 'x']]) {
      const t = io(dir);
      expect(await main(argv, t.io), argv.join(' ')).toBe(2);
    }
    const empty = mkdtempSync(join(tmpdir(), 'gm-trust-empty-'));
    expect(await main(['trust', 'import', empty], io(dir).io)).toBe(2);
  });
});
