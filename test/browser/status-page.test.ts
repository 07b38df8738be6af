/**
 * The host status page's layout in a real browser (Debian's chromium, headless, via playwright-core): rendered from
 * realistic data at 1280 and 390 px wide, screenshotted, and checked for sideways overflow, the sim banner, the folded
 * check table and distinct PASS/FAIL/SKIP colours. Skips visibly without /usr/bin/chromium unless GM_REQUIRE_BROWSER=1.
 * GM_SCREENSHOT_DIR keeps the screenshots.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enclaveListings } from '../../host/enclave-check.ts';
import { renderStatus } from '../../host/status-page.ts';
import { startStack } from '../stack/harness.ts';
import { listings, NOW, simStatus } from './status-page-fixture.ts';

const CHROMIUM = '/usr/bin/chromium';
const REQUIRED = process.env.GM_REQUIRE_BROWSER === '1';
const available = existsSync(CHROMIUM);
if (!available && REQUIRED) throw new Error(`GM_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install chromium)`);
if (!available) console.warn(`[gm tests] SKIPPING status page layout tests: ${CHROMIUM} is missing (apt-get install chromium; GM_REQUIRE_BROWSER=1 makes this a failure)`);

describe.skipIf(!available)('host status page layout', () => {
  let browser: Browser;
  let dir: string;
  beforeAll(async () => {
    dir = process.env.GM_SCREENSHOT_DIR ?? (await mkdtemp(join(tmpdir(), 'gm-status-')));
    await mkdir(dir, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    if (dir && !process.env.GM_SCREENSHOT_DIR) await rm(dir, { recursive: true, force: true });
  });

  for (const width of [1280, 390]) {
    it(`fits ${width} px without sideways scroll, sim banner shown, checks folded, statuses coloured`, async () => {
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      await page.setContent(renderStatus(simStatus(), listings(), 'https://enclave.example.net:8443', NOW));
      const shot = join(dir, `status-${width}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      expect((await stat(shot)).size).toBeGreaterThan(5_000);
      const m = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth, body: document.body.scrollWidth }));
      expect(m.inner).toBe(width);
      expect(m.scroll).toBeLessThanOrEqual(m.inner);
      expect(m.body).toBeLessThanOrEqual(m.inner);
      // The banner spans the viewport and sits at the top.
      const banner = await page.locator('#sim-banner').boundingBox();
      expect(await page.isVisible('#sim-banner')).toBe(true);
      expect(banner!.y).toBe(0);
      expect(Math.round(banner!.width)).toBe(width);
      // Workers and offers come before the folded per-check table; its rows are hidden until opened.
      expect(await page.isVisible('#workers')).toBe(true);
      expect(await page.isVisible('#offers')).toBe(true);
      expect(await page.$eval('#checks', (d) => (d as HTMLDetailsElement).open)).toBe(false);
      expect(await page.isVisible('#report')).toBe(false);
      const order = await page.evaluate(() => ['workers', 'offers', 'checks'].map((id) => document.getElementById(id)!.getBoundingClientRect().top));
      expect(order[0]).toBeLessThan(order[1]!);
      expect(order[1]).toBeLessThan(order[2]!);
      await page.click('#checks summary');
      expect(await page.isVisible('#report')).toBe(true);
      const m2 = await page.evaluate(() => document.documentElement.scrollWidth);
      expect(m2).toBeLessThanOrEqual(width);
      await page.screenshot({ path: join(dir, `status-${width}-open.png`), fullPage: true });
      const colours = await page.evaluate(() => ['pass', 'fail', 'skip'].map((s) => getComputedStyle(document.querySelector(`#report .st-${s}`)!).backgroundColor));
      expect(new Set(colours).size).toBe(3);
      // Relative time shown, the ISO time on hover.
      const t = page.locator('#workers time').first();
      expect(await t.textContent()).toBe('3 min ago');
      expect(await t.getAttribute('title')).toBe('2026-12-03T11:57:00.000Z');
      await page.close();
    });
  }

  it("fills the GPU column from a live enclave's worker listing (verified GPU claims, not \"not listed\")", async () => {
    const stack = await startStack();
    try {
      const l = await enclaveListings(stack.enclaveUrl)();
      expect(l.workers).toHaveLength(2);
      const page = await browser.newPage({ viewport: { width: 390, height: 900 } });
      await page.setContent(renderStatus(simStatus(), l, stack.enclaveUrl, NOW));
      await page.screenshot({ path: join(dir, 'status-390-live-gpus.png'), fullPage: true });
      const cells = await page.locator('#workers td[data-label="GPUs"]').allTextContents();
      // Each sim worker attests one Hopper GPU; its device chain names the model, its report the driver.
      expect(cells).toEqual(['1 × SIM GH100 A01 GSP BROM · driver 550.90.07 · CC on', '1 × SIM GH100 A01 GSP BROM · driver 550.90.07 · CC on']);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
      await page.close();
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it('says "enclave unreachable" across the top when the gate could not reach it', async () => {
    const page = await browser.newPage({ viewport: { width: 390, height: 800 } });
    const st = simStatus({ state: 'closed', report: undefined, summary: undefined, error: { code: 'ATTESTATION_UNREACHABLE', message: "could not fetch the enclave's evidence from https://enclave.example.net:8443 (fetch failed: ECONNREFUSED 10.0.0.4:8443)" } });
    await page.setContent(renderStatus(st, { workers: undefined, offers: undefined }, 'https://enclave.example.net:8443', NOW));
    await page.screenshot({ path: join(dir, 'status-390-unreachable.png'), fullPage: true });
    expect(await page.isVisible('#unreachable')).toBe(true);
    expect(await page.textContent('#unreachable')).toMatch(/^enclave unreachable: .*ECONNREFUSED/);
    expect(await page.isVisible('#sim-banner')).toBe(false);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await page.close();
  });
});
