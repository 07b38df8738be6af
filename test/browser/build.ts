/**
 * Builds the browser bundle of test/browser/page.ts (the SDK + openai) with esbuild for `platform: 'browser'`.
 * esbuild fails on any `node:` import it reaches, so a successful build also shows that the SDK core stays free
 * of Node APIs (docs/design.md §2).
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

export async function buildBrowserBundle(entry = fileURLToPath(new URL('./page.ts', import.meta.url))): Promise<string> {
  const r = await build({ entryPoints: [entry], bundle: true, write: false, format: 'esm', platform: 'browser', target: 'es2022', logLevel: 'silent', minify: false });
  return r.outputFiles[0]!.text;
}

export const PAGE_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>gm browser client</title></head><body>
<h1>gm browser client</h1><p>status: <span id="status">loading</span></p>
<p id="verdict"></p><p>measurement: <code id="measurement"></code></p>
<table><tbody id="report"></tbody></table>
<h2>answer</h2><pre id="answer"></pre><p>chunks: <span id="chunks">0</span>, receipts: <span id="receipts">0</span></p>
<script type="module" src="/app.js"></script></body></html>`;
