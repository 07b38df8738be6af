/** `gm dev-model [--listen ADDR] [--token-ms N] [--fail-after N] [--name M]`: see server.ts. */
import type { Io } from '../../client/cli/io.ts';
import { intFlag, parseFlags } from '../../enclave/flags.ts';
import { onSignal, serve } from '../../enclave/serve.ts';
import { devModelApp } from './server.ts';

export async function run(argv: string[], io: Io): Promise<number> {
  const f = parseFlags(argv, { listen: 'string', 'token-ms': 'string', 'fail-after': 'string', name: 'string' }, io.env);
  const failAfter = f['fail-after'] === undefined ? undefined : intFlag(f['fail-after'], 'fail-after', 0);
  const app = devModelApp({ name: f.name ?? 'gm-dev', tokenMs: intFlag(f['token-ms'], 'token-ms', 20, 0, 60_000), ...(failAfter === undefined ? {} : { failAfter }) });
  const s = await serve({ fetch: app.fetch, listen: f.listen ?? '127.0.0.1:0' });
  io.out(`gm dev-model (${f.name ?? 'gm-dev'}) listening on ${s.url}\n`);
  await onSignal(() => s.close());
  return 0;
}
