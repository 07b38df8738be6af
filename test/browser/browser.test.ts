/**
 * The SDK in a real browser (Debian's chromium, headless, via playwright-core): the page verifies the enclave
 * through the host relay (cross-origin, CORS) and streams an answer with the openai package; and the host's status
 * page shows the enclave's verification report. Skips visibly without /usr/bin/chromium unless GM_REQUIRE_BROWSER=1.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseClientPolicy, simPolicyDoc } from '../../client/policy.ts';
import { startHost, type RunningHost } from '../../host/main.ts';
import { listen, type Listening } from '../../host/serve.ts';
import { devAnswer } from '../../worker/dev-model/server.ts';
import { type Stack, startStack } from '../stack/harness.ts';
import { CLIENT_BUNDLE_BANNER } from '../../scripts/build-browser.ts';
import { buildBrowserBundle, PAGE_HTML } from './build.ts';

const CHROMIUM = '/usr/bin/chromium';
const REQUIRED = process.env.GM_REQUIRE_BROWSER === '1';
const available = existsSync(CHROMIUM);
if (!available && REQUIRED) throw new Error(`GM_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install chromium)`);
if (!available) console.warn(`[gm tests] SKIPPING browser tests: ${CHROMIUM} is missing (apt-get install chromium; GM_REQUIRE_BROWSER=1 makes this a failure)`);

describe.skipIf(!available)('browser', () => {
  let stack: Stack;
  let host: RunningHost;
  let site: Listening;
  let ctx: BrowserContext;
  let dir: string;
  const relayed: string[] = [];
  /** The KEM id (bytes 1-2 of the header) of every gateway request the relay forwarded, read from its first chunk. */
  const kems: number[] = [];

  beforeAll(async () => {
    const [js] = await Promise.all([buildBrowserBundle(), (async () => void (stack = await startStack()))()]);
    // The page runs the package's browser build of the SDK, not its sources.
    expect(js).toContain(CLIENT_BUNDLE_BANNER);
    dir = await mkdtemp(join(tmpdir(), 'gm-browser-'));
    host = await startHost({ enclave: stack.enclaveUrl, policy: parseClientPolicy(simPolicyDoc()), allowSim: true, trust: undefined, cacheDir: join(dir, 'cache'), checkIntervalMs: 3_600_000, observe: (d, p, b) => {
      if (d === 'request' && p === '/v1/ohttp' && !relayed.includes(`${d} ${p}`) && b.length >= 3) kems.push((b[1]! << 8) | b[2]!);
      relayed.push(`${d} ${p}`);
    } });
    const app = new Hono();
    app.get('/', (c) => c.html(PAGE_HTML));
    app.get('/app.js', (c) => c.body(js, 200, { 'content-type': 'text/javascript' }));
    site = await listen(app.fetch);
    ctx = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 120_000);
  afterAll(async () => {
    await ctx?.close();
    await site?.close();
    await host?.close();
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('verifies through the relay and streams an answer in the page', async () => {
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const model = stack.workers[0]!.modelName;
    await page.goto(`${site.url}/?enclave=${encodeURIComponent(stack.enclaveUrl)}&relay=${encodeURIComponent(host.url)}&model=${model}`);
    await page.waitForFunction(() => /^(done|error)/.test(document.getElementById('status')!.textContent ?? ''), undefined, { timeout: 30_000 });
    expect(await page.textContent('#status')).toBe('done');
    expect(await page.textContent('#verdict')).toMatch(/VERIFIED/);
    expect(await page.textContent('#measurement')).toBe('5a'.repeat(48));
    // The hybrid post-quantum suite by default: the page chose X-Wing and every request it sent names KEM 0x647A.
    expect(await page.textContent('#kem')).toContain('MLKEM768-X25519 (X-Wing)');
    const rows = await page.$$eval('#report tr', (trs) => trs.map((t) => t.textContent ?? ''));
    expect(rows.some((r) => r.includes('bundle.report-data'))).toBe(true);
    expect(rows.some((r) => r.startsWith('FAIL'))).toBe(false);
    expect(await page.textContent('#answer')).toBe(devAnswer(model, 10));
    expect(Number(await page.textContent('#chunks'))).toBeGreaterThan(1);
    expect(errors).toEqual([]);
    // The page went through the relay, not to the enclave directly.
    expect(relayed).toContain('response /v1/attestation');
    expect(relayed).toContain('request /v1/ohttp');
    expect(kems).toEqual([0x647a]);
    await page.close();
  });

  it("shows the host's status page with the enclave's verification report", async () => {
    const page = await ctx.newPage();
    await page.goto(`${host.url}/`);
    expect(await page.textContent('#gate')).toBe('OPEN');
    const rows = await page.$$eval('#report tbody tr', (trs) => trs.map((t) => t.textContent ?? ''));
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.some((r) => r.includes('snp.policy.measurement'))).toBe(true);
    expect(await page.textContent('#summary')).toContain('sim-sev-snp');
    // Verified workers (enclave metrics) and the models they offer (asked over OHTTP from the attested enclave).
    expect(await page.$$eval('#worker-states tr', (trs) => trs.map((t) => t.textContent ?? ''))).toContain('verified2');
    expect((await page.textContent('#models'))?.split(', ').sort()).toEqual(stack.workers.map((w) => w.modelName).sort());
    // A sim stack: the banner says so across the top; the per-check table is folded; nothing scrolls sideways.
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 900 });
      expect(await page.isVisible('#sim-banner')).toBe(true);
      expect(await page.isVisible('#report')).toBe(false);
      expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
    }
    await page.close();
  });
});
