/**
 * `gm host --enclave URL [--enclave URL ...] --listen ADDR` (docs/design.md §2, §7, §10): the host shim beside an
 * enclave, or in front of several replicas: gated relay (routing by OHTTP key id across replicas, host/replicas.ts),
 * collateral cache, status page. Trusted for nothing: it holds no keys and everything it serves is re-verified by its
 * consumers.
 *
 * Flags (declared, with their GM_<NAME> environment variables, in cli/commands.ts): --enclave URL (required; repeat it
 * for replicas), --listen HOST:PORT (default 127.0.0.1:8080),
 * --policy FILE (the operator's enclave policy; required unless --allow-sim), --allow-sim, --cache-dir DIR,
 * --check-interval SECONDS (default 60), --amd-kds URL, --intel-pcs URL, --intel-certs URL, --nvidia-rim URL,
 * --nvidia-ocsp URL (vendor base URLs, for mirrors and tests).
 * The gate verifies the enclave against the pinned vendor roots of the trust directory (GM_TRUST_DIR, else
 * ~/.config/gm/trust), read at start: one holding a certificate that fails its pin (TRUST_PIN_MISMATCH) or a file
 * that cannot be read (TRUST_DIR_UNREADABLE) stops the shim, as does, without --allow-sim, one holding none
 * (TRUST_ANCHOR_MISSING). On the sim policy (--allow-sim, no --policy) it reads none.
 */
import * as fsp from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { configError } from '../attestation/errors.ts';
import { createLogger, type Logger } from '../enclave/log.ts';
import { trustDirFrom, trustFromDir, type TrustStore } from '../attestation/trust.ts';
import { type ClientPolicy, parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import { hostApp, type HostAppOptions } from './app.ts';
import { CollateralCache } from './collateral/cache.ts';
import type { RetryOptions } from './collateral/fetch.ts';
import { VENDOR_BASES, type VendorBases } from './collateral/sources.ts';
import type { CollateralSource } from '../client/collateral.ts';
import { enclaveCheck, enclaveListings } from './enclave-check.ts';
import { EnclaveGate, type GateStatus, type HostGate } from './gate.ts';
import { ReplicaSet } from './replicas.ts';
import type { RelayOptions } from './relay.ts';
import type { Listings } from './status-page.ts';
import { listen } from './serve.ts';

export interface HostOptions {
  readonly enclave: string;
  /** More replicas besides `enclave` (the first): requests are routed by key id (host/replicas.ts). */
  readonly replicas?: readonly string[];
  readonly hostname?: string;
  readonly port?: number;
  readonly policy: ClientPolicy;
  readonly allowSim: boolean;
  readonly trust: TrustStore | undefined;
  readonly cacheDir: string;
  readonly checkIntervalMs?: number;
  /** A gate check not finished by then fails (default 15 s). */
  readonly checkTimeoutMs?: number;
  readonly vendors?: VendorBases;
  /** Replaces the enclave listings on the status page (in-process stacks such as `gm demo`, which hold the market). */
  readonly listings?: () => Promise<Listings>;
  /** Vendor fetch retries (tests shorten the backoff). */
  readonly collateralRetry?: Partial<RetryOptions>;
  readonly observe?: RelayOptions['observe'];
  /** Gateway requests per source (host/app.ts; default DEFAULT_RATE_LIMIT). */
  readonly rateLimit?: HostAppOptions['rateLimit'];
  /** The relay's connection pool towards the enclaves (default undici's global one). */
  readonly dispatcher?: RelayOptions['dispatcher'];
  /** The shim's log (the one JSON-line schema of enclave/log.ts); silent when absent. */
  readonly log?: Logger;
}

export interface RunningHost {
  readonly url: string;
  readonly gate: HostGate;
  /** The replica set when the shim fronts more than one enclave. */
  readonly replicas: ReplicaSet | undefined;
  readonly cache: CollateralCache;
  close(): Promise<void>;
}

export async function startHost(o: HostOptions): Promise<RunningHost> {
  const log = o.log ?? createLogger({ service: 'host', sim: o.allowSim, sink: () => {} });
  // The gate completes TDX evidence that ships without collateral from this shim's own cache, in process (the same
  // routes clients use; every byte verified to the pinned roots by the check, so the cache is trusted for nothing).
  let self: { request(input: string | URL | Request, init?: RequestInit): Response | Promise<Response> } | undefined;
  // TDX only: an SEV-SNP bundle is checked as the enclave ships it (completing it would also require AMD's CRL).
  const ownCollateral: CollateralSource = { base: 'http://gm-host.internal', fetch: async (input, init) => self!.request(input, init), platforms: ['tdx'] };
  const checkFor = (enclave: string) => enclaveCheck({ enclave, policy: o.policy, allowSim: o.allowSim, trust: o.trust, timeoutMs: o.checkTimeoutMs ?? 15_000, collateral: ownCollateral });
  const intervalMs = o.checkIntervalMs ?? 60_000;
  const urls = [o.enclave, ...(o.replicas ?? [])];
  // One enclave keeps the plain gate (every request to it; the enclave answers unknown key ids itself).
  const replicas = urls.length > 1
    ? new ReplicaSet({
      replicas: urls.map((url) => ({ url, check: checkFor(url) })),
      intervalMs,
      onChange: (url, s) => log.info('gate', { replica: url, state: s.state, ...(s.error ? { code: s.error.code } : {}) }),
      onCollision: (url, keyIds, owner) => log.warn('replica.key_id_collision', { replica: url, keyIds: keyIds.join(','), owner }),
    })
    : undefined;
  const gate: HostGate = replicas ?? new EnclaveGate({
    check: checkFor(o.enclave),
    intervalMs,
    onChange: (s: GateStatus) => log.info('gate', { state: s.state, ...(s.error ? { code: s.error.code } : {}) }),
  });
  const cache = new CollateralCache({ dir: o.cacheDir, ...(o.collateralRetry ? { retry: o.collateralRetry } : {}) });
  const app = hostApp({
    relay: { enclave: o.enclave, ...(replicas ? { replicas } : {}), ...(o.observe ? { observe: o.observe } : {}), ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}) },
    ...(o.rateLimit ? { rateLimit: o.rateLimit } : {}),
    gate,
    ...(replicas ? { replicas } : {}),
    collateral: { cache, bases: o.vendors ?? VENDOR_BASES },
    listings: o.listings ?? enclaveListings(o.enclave, { policy: o.policy, allowSim: o.allowSim, trust: o.trust }),
  });
  self = app;
  const l = await listen(app.fetch, o.hostname ?? '127.0.0.1', o.port ?? 0);
  // The relay opens only after the first check passed; a failed first check leaves it closed (503) and retrying.
  await gate.start();
  return {
    url: l.url,
    gate,
    replicas,
    cache,
    async close() {
      gate.stop();
      await l.close();
    },
  };
}

export function parseListen(s: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s) ?? /^()()(\d{1,5})$/.exec(s);
  if (!m) throw configError('USAGE', `--listen must be HOST:PORT or PORT (got ${s})`);
  const port = Number(m[3]);
  if (port > 65535) throw configError('USAGE', `--listen port out of range: ${port}`);
  return { hostname: m[1] || m[2] || '127.0.0.1', port };
}

export interface HostFlags {
  readonly enclave?: readonly string[];
  readonly listen?: string;
  readonly policy?: string;
  readonly 'allow-sim'?: boolean;
  readonly 'cache-dir'?: string;
  readonly 'check-interval'?: string;
  readonly 'amd-kds'?: string;
  readonly 'intel-pcs'?: string;
  readonly 'intel-certs'?: string;
  readonly 'nvidia-rim'?: string;
  readonly 'nvidia-ocsp'?: string;
}

/** What run() needs from its process (the `gm` command line passes its own). */
export interface HostIo {
  out(s: string): void;
  err(s: string): void;
  readFile(path: string): Promise<Uint8Array>;
  readonly env: Readonly<Record<string, string | undefined>>;
}

function policyJson(bytes: Uint8Array, file: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw configError('POLICY_INVALID', `--policy ${file} is not valid JSON`, { cause: e });
  }
}

export async function run(f: HostFlags, io: HostIo): Promise<number> {
  const [enclave, ...more] = f.enclave ?? [];
  if (!enclave) throw configError('USAGE', 'gm host needs --enclave URL');
  if (new Set(f.enclave).size !== f.enclave!.length) throw configError('USAGE', '--enclave lists the same replica twice');
  const allowSim = f['allow-sim'] === true;
  const policy = f.policy
    ? parseClientPolicy(policyJson(await io.readFile(f.policy), f.policy), f.policy)
    : allowSim ? parseClientPolicy(simPolicyDoc(), 'sim policy') : (() => { throw configError('POLICY_REQUIRED', 'gm host needs --policy FILE (the enclave measurements to accept), or --allow-sim'); })();
  // The vendor roots the enclave's evidence must chain to. On the sim policy the gate accepts sim evidence only and
  // reads none; otherwise a broken directory stops the shim here, and without --allow-sim so does an empty one.
  const trust = allowSim && !f.policy ? undefined : await trustFromDir(trustDirFrom(io.env, homedir()), fsp, allowSim ? {} : { requiredBy: 'gm host admits only an enclave whose evidence chains to the pinned vendor roots' });
  const { hostname, port } = parseListen(f.listen ?? '127.0.0.1:8080');
  const interval = Number(f['check-interval'] ?? '60');
  if (!Number.isFinite(interval) || interval < 1) throw configError('USAGE', '--check-interval must be at least 1 second');
  const vendors: VendorBases = {
    amd: f['amd-kds'] ?? VENDOR_BASES.amd,
    intel: f['intel-pcs'] ?? VENDOR_BASES.intel,
    intelCerts: f['intel-certs'] ?? VENDOR_BASES.intelCerts,
    nvidiaRim: f['nvidia-rim'] ?? VENDOR_BASES.nvidiaRim,
    nvidiaOcsp: f['nvidia-ocsp'] ?? VENDOR_BASES.nvidiaOcsp,
  };
  const cacheDir = f['cache-dir'] ?? join(io.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'gm', 'collateral');
  // With --allow-sim every line says sim (docs/design.md §3: everything produced under sim says so).
  const log = createLogger({ service: 'host', sim: allowSim, sink: (l) => io.err(l) });
  const h = await startHost({ enclave, ...(more.length ? { replicas: more } : {}), hostname, port, policy, allowSim, trust, cacheDir, checkIntervalMs: interval * 1000, vendors, log });
  log.info('listening', { url: h.url, enclave: [enclave, ...more].join(','), gate: h.gate.status.state });
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await h.close();
  return 0;
}
