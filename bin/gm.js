#!/usr/bin/env node
// Launcher for the `gm` CLI. In a checkout it runs the TypeScript sources with Node's type stripping (default from
// Node 22.18 / 23.6; behind --experimental-strip-types on 22.12..22.17); an installed package has no sources and
// runs the built JavaScript in dist/ (`npm run build`).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
if (major < 22) {
  console.error(`gm needs Node >= 22.12 (this is ${process.version}); run \`source scripts/use-node.sh\` first`);
  process.exit(2);
}
const sources = fileURLToPath(new URL('../cli/main.ts', import.meta.url));
if (existsSync(sources)) {
  if (!process.features.typescript) {
    const r = spawnSync(process.execPath, ['--experimental-strip-types', '--no-warnings', ...process.argv.slice(1)], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
  const { runProcess } = await import(sources);
  await runProcess(process.argv.slice(2));
} else {
  const { runProcess } = await import(fileURLToPath(new URL('../dist/cli/main.js', import.meta.url)));
  await runProcess(process.argv.slice(2));
}
