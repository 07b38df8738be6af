/**
 * The ESM browser build of the client SDK: client/index.ts and its dependencies in one file, dist/browser/client.js,
 * for a page or a bundler that wants no Node resolution (`import { createClient } from '@gm-enclave/gm/client/browser'`).
 * esbuild refuses any `node:` import it reaches under `platform: 'browser'`, so the build also shows that the SDK core
 * stays free of Node APIs. Minified, with a linked source map beside it (client.js.map) so what runs in a page can
 * still be read against the sources. Run by `npm run build`; test/browser bundles its page against this file.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const CLIENT_BUNDLE = fileURLToPath(new URL('../dist/browser/client.js', import.meta.url));
/** The first line of the bundle, so a page built on it can be shown to contain it. */
export const CLIENT_BUNDLE_BANNER = '/*! gm client SDK, ESM browser build (dist/browser/client.js) */';

export async function buildClientBundle(outfile = CLIENT_BUNDLE): Promise<string> {
  const r = await build({
    entryPoints: [fileURLToPath(new URL('../client/index.ts', import.meta.url))],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: 'linked',
    outfile,
    banner: { js: CLIENT_BUNDLE_BANNER },
    logLevel: 'silent',
  });
  await mkdir(dirname(outfile), { recursive: true });
  for (const f of r.outputFiles) await writeFile(f.path, f.contents);
  return outfile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(`wrote ${await buildClientBundle()}`);
