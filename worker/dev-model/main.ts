/** `gm dev-model [--listen ADDR] [--token-ms N] [--fail-after N] [--name M]`: see server.ts. */
import { intFlag } from '../../enclave/flags.ts';
import { onSignal, serve, type ServiceIo } from '../../enclave/serve.ts';
import { devModelApp } from './server.ts';

/** The flags (declared, with their GM_<FLAG> environment names, in cli/commands.ts). */
export interface DevModelFlags {
  readonly listen?: string;
  readonly 'token-ms'?: string;
  readonly 'fail-after'?: string;
  readonly name?: string;
  readonly json?: boolean;
}

export async function run(f: DevModelFlags, io: ServiceIo): Promise<number> {
  const failAfter = f['fail-after'] === undefined ? undefined : intFlag(f['fail-after'], 'fail-after', 0);
  const app = devModelApp({ name: f.name ?? 'gm-dev', tokenMs: intFlag(f['token-ms'], 'token-ms', 20, 0, 60_000), ...(failAfter === undefined ? {} : { failAfter }) });
  const s = await serve({ fetch: app.fetch, listen: f.listen ?? '127.0.0.1:0' });
  io.out(f.json ? `${JSON.stringify({ event: 'listening', model: f.name ?? 'gm-dev', url: s.url })}\n` : `gm dev-model (${f.name ?? 'gm-dev'}) listening on ${s.url}\n`);
  await onSignal(() => s.close());
  return 0;
}
