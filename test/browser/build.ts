/**
 * Builds the browser bundle of test/browser/page.ts (openai + the SDK) with esbuild for `platform: 'browser'`, the
 * SDK taken from the package's ESM browser build (scripts/build-browser.ts, built here into a temporary folder so a
 * concurrent `npm run build` cannot race it): the page runs the file the package ships. esbuild fails on any `node:`
 * import it reaches, so a successful build also shows that the SDK core stays free of Node APIs (docs/design.md §2).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { buildClientBundle } from '../../scripts/build-browser.ts';

export async function buildBrowserBundle(entry = fileURLToPath(new URL('./page.ts', import.meta.url))): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gm-browser-'));
  try {
    const sdk = await buildClientBundle(join(dir, 'client.js'));
    const r = await build({
      entryPoints: [entry],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      logLevel: 'silent',
      minify: false,
      // page.ts imports the SDK's sources for its types; the bundle gets the built SDK instead.
      plugins: [{ name: 'gm-client-bundle', setup: (b) => b.onResolve({ filter: /\/client\/index\.ts$/ }, () => ({ path: sdk })) }],
    });
    return r.outputFiles[0]!.text;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const PAGE_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>gm browser client</title></head><body>
<h1>gm browser client</h1><p>status: <span id="status">loading</span></p>
<p id="verdict"></p><p>measurement: <code id="measurement"></code></p><p>key configuration: <code id="kem"></code></p>
<table><tbody id="report"></tbody></table>
<h2>answer</h2><pre id="answer"></pre><p>chunks: <span id="chunks">0</span>, receipts: <span id="receipts">0</span></p>
<script type="module" src="/app.js"></script></body></html>`;
