/**
 * `gm proxy --url ENCLAVE [--relay URL] [--policy FILE] [--listen 127.0.0.1:8787]`: verifies the enclave exactly as
 * the SDK does (client/index.ts createClient: a fresh nonce, the policy, the key binding in REPORT_DATA), then serves
 * a plain OpenAI-compatible HTTP API on loopback (cli/proxy/server.ts) so that any OpenAI client, in any language,
 * talks to the enclave through the SDK's encrypted fetch. A key rotation re-attests as the SDK does.
 *
 * It refuses to start when verification fails, with one line naming the failing check. A non-loopback --listen is
 * refused unless --allow-remote is given together with a bearer token (GM_PROXY_TOKEN or --token-file).
 */
import { isIP } from 'node:net';
import { configError, GmError } from '../attestation/errors.ts';
import type { VerificationReport } from '../attestation/report.ts';
import { createClient, type GmClient } from '../client/index.ts';
import { createLogger } from '../enclave/log.ts';
import type { ProxyFlags } from './commands.ts';
import { loadPolicy, loadTrust } from './common.ts';
import type { Io } from './io.ts';
import { outboundFetch } from './proxy/outbound.ts';
import { startProxy } from './proxy/server.ts';

export async function run(f: ProxyFlags, io: Io, o: { signal?: AbortSignal; onListening?: (url: string) => void } = {}): Promise<number> {
  const url = f.url;
  if (!url) throw configError('USAGE', 'needs --url URL (the enclave), or GM_URL');
  const { hostname, port } = splitListen(f.listen ?? '127.0.0.1:8787');
  const token = await proxyToken(f, io);
  if (!isLoopback(hostname)) {
    if (f['allow-remote'] !== true) throw configError('PROXY_REMOTE_REFUSED', `--listen ${hostname} is not a loopback address: other machines could use this proxy; add --allow-remote and a bearer token (GM_PROXY_TOKEN or --token-file)`);
    if (!token) throw configError('PROXY_TOKEN_REQUIRED', '--allow-remote needs a bearer token (GM_PROXY_TOKEN or --token-file) that every request must carry');
  }
  const apiKey = f['api-key'];
  const allowSim = f['allow-sim'] === true;
  const policy = await loadPolicy(io, f.policy, allowSim);
  const trust = await loadTrust(io);
  const outbound = outboundFetch(io.env);
  let client: GmClient;
  try {
    client = await createClient({ url, ...(f.relay ? { relay: f.relay } : {}), ...(f.collateral ? { collateralFrom: f.collateral } : {}), policy, allowSim, trust, fetch: outbound.fetch });
  } catch (e) {
    await outbound.close();
    throw refusal(e);
  }
  const log = createLogger({ service: 'proxy', sim: client.claims.sim, sink: (l) => io.err(l) });
  const p = await startProxy({ client, hostname, port, ...(token ? { token } : {}), ...(apiKey ? { apiKey } : {}), log: (event, fields) => log.info(event, fields) });
  const m = client.claims.cpu.measurement;
  log.info('proxy.listening', {
    url: `${p.url}/v1`, enclave: url, ...(f.relay ? { relay: f.relay } : {}), platform: client.claims.platform, measurement: m.slice(0, 16),
    remote: !isLoopback(hostname), ...(outbound.via.http ? { httpProxy: outbound.via.http } : {}), ...(outbound.via.https ? { httpsProxy: outbound.via.https } : {}), ...(outbound.via.noProxy ? { noProxy: outbound.via.noProxy } : {}),
  });
  o.onListening?.(p.url);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    if (o.signal) o.signal.addEventListener('abort', stop, { once: true });
    else {
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    }
  });
  await p.close();
  await outbound.close();
  return 0;
}

/** The verification failure as one line naming the failing check (the full table is `gm verify URL`'s). */
function refusal(e: unknown): unknown {
  if (!(e instanceof GmError)) return e;
  const row = e.report ? firstFailure(e.report) : undefined;
  const where = row ? ` at check ${row.id}${row.detail && row.detail !== e.message ? ` (${row.detail})` : ''}` : '';
  const what = e.report ? `the enclave did not verify${where}: ` : '';
  return new GmError(e.kind, e.code, `refusing to start: ${what}${e.message}`, { cause: e });
}

function firstFailure(r: VerificationReport) {
  return r.checks.find((c) => c.status === 'fail');
}

async function proxyToken(f: ProxyFlags, io: Io): Promise<string | undefined> {
  let t = f['proxy-token'];
  if (f['token-file']) t = new TextDecoder().decode(await io.readFile(f['token-file'])).trim();
  if (t !== undefined && t.length < 16) throw configError('PROXY_TOKEN_WEAK', 'the proxy bearer token must be at least 16 characters');
  return t;
}

function splitListen(v: string): { hostname: string; port: number } {
  const m = /^(?:(?:\[([^\]]+)\]|([^:[\]]*)):)?(\d{1,5})$/.exec(v.trim());
  if (!m || Number(m[3]) > 65535) throw configError('USAGE', `--listen must be HOST:PORT, :PORT or PORT (got ${v})`);
  return { hostname: m[1] ?? (m[2] || '127.0.0.1'), port: Number(m[3]) };
}

/** 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}


