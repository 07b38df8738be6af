/**
 * The proxy's outbound HTTP: undici's fetch through an EnvHttpProxyAgent, so `HTTPS_PROXY` / `HTTP_PROXY` /
 * `NO_PROXY` (and their lower-case forms, the curl convention) are honoured the way other command-line tools honour
 * them. The corporate proxy in between sees what the relay sees: ciphertext to the gateway and the public evidence.
 */
import { EnvHttpProxyAgent, fetch as undiciFetch } from 'undici';
import type { FetchLike } from '../../client/index.ts';

export interface Outbound {
  readonly fetch: FetchLike;
  /** The proxy URLs in force, for the start-up line (credentials removed). */
  readonly via: { readonly http?: string; readonly https?: string; readonly noProxy?: string };
  close(): Promise<void>;
}

export function outboundFetch(env: Readonly<Record<string, string | undefined>>): Outbound {
  const pick = (name: string): string | undefined => env[name.toLowerCase()] || env[name] || undefined;
  const httpProxy = pick('HTTP_PROXY');
  const httpsProxy = pick('HTTPS_PROXY');
  const noProxy = pick('NO_PROXY');
  const agent = new EnvHttpProxyAgent({ ...(httpProxy ? { httpProxy } : {}), ...(httpsProxy ? { httpsProxy } : {}), ...(noProxy ? { noProxy } : {}) });
  const f: FetchLike = async (input, init) => {
    // undici's own Request and Response types are structurally the web ones; the casts cross the two declarations.
    const r = await undiciFetch(input as string, { ...(init as object), dispatcher: agent } as Parameters<typeof undiciFetch>[1]);
    return r as unknown as Response;
  };
  return {
    fetch: f,
    via: { ...(httpProxy ? { http: redact(httpProxy) } : {}), ...(httpsProxy ? { https: redact(httpsProxy) } : {}), ...(noProxy ? { noProxy } : {}) },
    close: () => agent.close(),
  };
}

function redact(u: string): string {
  try {
    const x = new URL(u);
    x.username = '';
    x.password = '';
    return x.toString();
  } catch {
    return '(unparseable)';
  }
}
