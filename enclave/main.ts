/**
 * `gm enclave [--tee auto|configfs|sim] [--listen ADDR] [--worker-policy FILE] [--allow-sim-workers]
 *             [--max-body BYTES] [--max-streams N] [--configfs-root DIR] [--router market|first] [--ledger FILE|postgres://URL [--ledger-key-file FILE]]
 *             [--fee-bps N] [--open-access] [--sim-platform sim-sev-snp|sim-tdx] [--key-rotation-seconds N]
 *             [--collateral URL] [--operator-token-file FILE] [--require-request-time] [--join URL] [--peer-policy FILE]
 *             [--processes N]`
 * Starts the enclave service (enclave/app.ts), prints its URL, stops cleanly on SIGINT/SIGTERM. The flags are
 * declared, with their GM_<FLAG> environment names, in cli/commands.ts. `--tee auto` (the default) refuses to start without a TEE.
 * `--collateral URL` (a host shim's base URL) has worker verification ask that shim's collateral cache for the OCSP
 * status of GPU chains and the GPU's driver and VBIOS RIMs; a policy without a `gpu` section then requires both.
 * `--operator-token-file FILE` (or the token itself in GM_OPERATOR_TOKEN; never a plain flag, which would show in
 * process listings) enables GET /v1/operator/metrics for that bearer token (docs/operator.md §7.1).
 * `--require-request-time` refuses requests that do not carry gm's request time (docs/protocol.md §13).
 * With `--ledger postgres://...` the ledger is shared by replicas: `--join URL` obtains its key from a running replica
 * by mutual attestation under `--peer-policy FILE` (enclave/replication/, docs/design.md §10.1), else a new key is made.
 */
import * as fsp from 'node:fs/promises';
import { homedir } from 'node:os';
import { configError } from '../attestation/errors.ts';
import { gpuCollateralFromShim } from '../client/collateral.ts';
import { loadTrustStore, trustDirFrom, trustFromDir } from '../attestation/trust.ts';
import { createEnclave, enclaveSettings } from './app.ts';
import { generateEnclaveKeys } from './keys.ts';
import type { Ledger } from './ledger/ledger.ts';
import { isPostgresUrl, openLedger } from './ledger/open.ts';
import { readLedgerKeyFile } from './ledger/key-file.ts';
import { type SharedLedgerStart, sharedLedgerStart } from './replication/startup.ts';
import { createMarket } from './market/index.ts';
import { parsePools } from './market/pools.ts';
import { type MarketRouter, marketRouter } from './market/router.ts';
import type { WorkerPolicy } from './workers/registry.ts';
import { intFlag, urlFlag } from './flags.ts';
import { createLogger } from './log.ts';
import { parseWorkerPolicy, simWorkerPolicyDoc, withCollateralDefaults } from './policy.ts';
import { onSignal, serve, serveHanded, type ServiceIo } from './serve.ts';
import { availableParallelism } from 'node:os';
import { childLink, enclaveKeysFrom, isClusterProcess, type KeyMaterial, newGatewayMaterial, runPrimary } from './cluster.ts';
import { signerFromSeed } from './ledger/signer.ts';
import type { Logger } from './log.ts';
import { randomBytes } from 'node:crypto';
import { parseTeeChoice, selectTee } from './tee/select.ts';

export interface EnclaveFlags {
  readonly tee?: string;
  readonly listen?: string;
  readonly 'worker-policy'?: string;
  readonly 'allow-sim-workers'?: boolean;
  readonly 'max-body'?: string;
  readonly 'max-streams'?: string;
  readonly 'configfs-root'?: string;
  readonly 'log-level'?: string;
  readonly router?: string;
  readonly ledger?: string;
  readonly 'ledger-key-file'?: string;
  readonly join?: string;
  readonly 'peer-policy'?: string;
  readonly 'fee-bps'?: string;
  readonly 'open-access'?: boolean;
  readonly 'sim-platform'?: string;
  readonly 'key-rotation-seconds'?: string;
  readonly collateral?: string;
  readonly 'operator-token-file'?: string;
  /** From GM_OPERATOR_TOKEN only. */
  readonly 'operator-token'?: string;
  readonly 'require-request-time'?: boolean;
  /** The operator's model pools (enclave/market/pools.ts), a JSON file. */
  readonly pools?: string;
  /** Processes sharing the listening socket (default: the number of cores; one with an in-memory ledger). */
  readonly processes?: string;
  readonly json?: boolean;
}

/** The sim account's prepaid balance in micro-units (100 USD). */
const SIM_CREDIT = 100_000_000n;

/** A collateral request the shim does not answer in this time fails (and the policy decides what that means). */
const COLLATERAL_TIMEOUT_MS = 15_000;

function policyJson(bytes: Uint8Array, file: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw configError('POLICY_INVALID', `${file} is not valid JSON`, { cause: e });
  }
}

function poolsJson(bytes: Uint8Array, file: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw configError('POOLS_INVALID', `${file} is not valid JSON`, { cause: e });
  }
}

export async function run(f: EnclaveFlags, io: ServiceIo): Promise<number> {
  const teeChoice = parseTeeChoice(f.tee);
  const simPlatform = f['sim-platform'] ?? 'sim-sev-snp';
  if (simPlatform !== 'sim-sev-snp' && simPlatform !== 'sim-tdx') throw configError('USAGE', '--sim-platform must be sim-sev-snp or sim-tdx');
  const tee = await selectTee({ tee: teeChoice, simPlatform, ...(f['configfs-root'] ? { configfsRoot: f['configfs-root'] } : {}) });
  const allowSim = f['allow-sim-workers'] ?? tee.sim;
  const collateral = urlFlag(f.collateral, 'collateral');
  const parsed = f['worker-policy'] ? parseWorkerPolicy(new TextDecoder().decode(await io.readFile(f['worker-policy'])), f['worker-policy']) : tee.sim ? simWorkerPolicyDoc() : undefined;
  if (!parsed) throw configError('WORKER_POLICY_REQUIRED', 'a real enclave needs --worker-policy FILE (allowed worker measurements, GPU policy)');
  const policy = collateral ? withCollateralDefaults(parsed) : parsed;
  // RIMs chain to the pinned NVIDIA RIM root: with a collateral source the trust store is needed even under sim. A
  // real enclave verifies real workers: it does not start without anchors (every registration would fail later).
  const trustDir = trustDirFrom(io.env, homedir());
  const trust = tee.sim && allowSim && !collateral ? undefined : tee.sim ? await loadTrustStore(trustDir, fsp) : await trustFromDir(trustDir, fsp, { requiredBy: 'a real enclave verifies its workers against the pinned vendor roots' });
  const level = (f['log-level'] ?? 'info') as 'debug' | 'info' | 'warn' | 'error';
  const log = createLogger({ service: 'enclave', sim: tee.sim, level, sink: (l) => io.err(l) });
  // The shim is trusted for nothing: every OCSP response and RIM it serves is verified to the pinned NVIDIA roots.
  const src = collateral ? { base: collateral, fetch: (i: string | URL | Request, init?: RequestInit) => fetch(i, { ...init, signal: AbortSignal.timeout(COLLATERAL_TIMEOUT_MS) }) } : undefined;
  const workerPolicy: WorkerPolicy = { ...policy, allowSim, ...(trust ? { trust } : {}), ...(src ? { gpuCollateral: gpuCollateralFromShim(src) } : {}) };
  // The market routes by signed offers and settles receipts into the ledger (enclave/market, enclave/ledger).
  const routerKind = f.router ?? 'market';
  if (routerKind !== 'market' && routerKind !== 'first') throw configError('USAGE', '--router must be market or first');
  let market: MarketRouter | undefined;
  const openAccess = routerKind === 'market' && (f['open-access'] ?? tee.sim);
  let ledger: Ledger | undefined;
  let shared: SharedLedgerStart | undefined;
  const settingsIn = { openAccess, ledger: routerKind === 'market' ? ((f.ledger ?? ':memory:') === ':memory:' ? 'memory' : isPostgresUrl(f.ledger!) ? 'postgres' : 'file') : 'none' } as const;
  if ((f.join || f['peer-policy']) && !(routerKind === 'market' && isPostgresUrl(f.ledger ?? ''))) throw configError('USAGE', '--join and --peer-policy need a shared ledger (--ledger postgres://...)');
  let simAccount: { account: { id: string }; apiKey: string } | undefined;
  if (f.pools && routerKind !== 'market') throw configError('USAGE', '--pools needs the market router (--router market)');
  const rotationMs = intFlag(f['key-rotation-seconds'], 'key-rotation-seconds', 3600, 60, 7 * 24 * 3600) * 1000;
  // Several processes (enclave/cluster.ts) share one ledger file; an in-memory ledger cannot be shared, and a
  // PostgreSQL ledger is for replicas (each their own enclave), so both run one process.
  const singleLedger = routerKind === 'market' && ((f.ledger ?? ':memory:') === ':memory:' || isPostgresUrl(f.ledger!));
  const processes = f.processes === undefined ? (singleLedger ? 1 : availableParallelism()) : intFlag(f.processes, 'processes', 1, 1, 256);
  if (processes > 1 && singleLedger) throw configError('USAGE', '--processes N > 1 needs a ledger file the processes share (--ledger FILE), or --router first');
  // Every flag is checked before any process starts: a process that failed its start would only be started again.
  const pools = f.pools ? parsePools(poolsJson(await io.readFile(f.pools), f.pools), f.pools) : undefined;
  const child = isClusterProcess() ? await childLink(log) : undefined;
  if (processes > 1 && !child) return runEnclavePrimary(f, io, { processes, rotationMs, routerKind, openAccess, sim: tee.sim, log });
  const fromPrimary = child?.shared as FromPrimary | undefined;
  try {
    const keys = child ? await enclaveKeysFrom(child.material) : await generateEnclaveKeys();
    if (routerKind === 'market') {
      const path = f.ledger ?? ':memory:';
      if (path === ':memory:') io.err('gm enclave: ledger in memory (--ledger FILE to keep receipts)\n');
      const ledgerKeyFile = f['ledger-key-file'];
      const provided = ledgerKeyFile ? await readLedgerKeyFile(ledgerKeyFile, io) : undefined;
      // A shared ledger (PostgreSQL): the provisioned key, the key from a replica (--join), or a new one (docs/design.md §10.1).
      shared = isPostgresUrl(path)
        ? await sharedLedgerStart({ join: f.join, provided, peerPolicy: f['peer-policy'] ? policyJson(await io.readFile(f['peer-policy']), f['peer-policy']) : undefined, tee, trust, receiptKey: keys.receipt.publicKey, settings: await enclaveSettings({ workerPolicy, settings: settingsIn }), log, fetch: (i, init) => fetch(i, init), now: () => new Date() })
        : undefined;
      // Several processes (enclave/cluster.ts) append one receipt chain each (a replacement continues its instance's).
      ledger = await openLedger(path, { signer: keys.receipt, ...(shared ? { ledgerKey: shared.ledgerKey } : provided ? { ledgerKey: provided } : {}), ...(child && child.instance > 1 ? { chainId: `main.${child.instance}` } : {}) });
      // --open-access (default under sim): requests without an API key are charged to a house account (dev/demo).
      // With several processes the primary made it (and the sim account) once; each process looks it up.
      const open = openAccess;
      const anonymous = fromPrimary ? (fromPrimary.anonymousId ? await ledger.account(fromPrimary.anonymousId) : undefined) : open ? (await ledger.createAccount({ currency: 'USD', creditLimit: 1_000_000_000_000n }, Date.now())).account : undefined;
      // Under sim a prepaid account is opened too and its API key printed once (after the URL), so a first client can
      // name an account; on hardware accounts come only from `gm receipts account create`.
      if (tee.sim && !fromPrimary) simAccount = await ledger.createAccount({ currency: 'USD', prepaid: SIM_CREDIT }, Date.now());
      market = marketRouter({ market: createMarket({ feeBasisPoints: intFlag(f['fee-bps'], 'fee-bps', 0, 0, 10_000), ...(pools ? { pools } : {}) }), ledger, enclaveSim: tee.sim, ...(anonymous ? { anonymous } : {}), log });
    }
    if (collateral) {
      const g = policy.policy.gpu!;
      log.info('enclave.worker_collateral', { collateral, rimMatchRequired: g.rimMatchRequired, ocsp: g.ocsp });
    }
    const tokenFile = f['operator-token-file'];
    const operatorToken = tokenFile ? new TextDecoder().decode(await io.readFile(tokenFile)).trim() : f['operator-token'];
    const enclave = await createEnclave({
      tee,
      log,
      keys,
      ...(operatorToken ? { operatorToken } : {}),
      ...(f['require-request-time'] ? { requireRequestTime: true } : {}),
      keyRotationMs: rotationMs,
      ...(child ? { instance: child.instance, rotationTimer: false, relay: { registered: (r, workerId) => child.relay.registered({ ...r, workerId }), cancelled: child.relay.cancelled } } : {}),
      ...(market ? { router: market.router, onWorkerChange: market.onWorkerChange, market: market.surface } : {}),
      settings: settingsIn,
      ...(shared?.replication ? { replication: shared.replication } : {}),
      workerPolicy,
      limits: {
        ...(f['max-body'] ? { maxRequestBytes: intFlag(f['max-body'], 'max-body', 0, 1024) } : {}),
        ...(f['max-streams'] ? { maxConcurrentStreams: intFlag(f['max-streams'], 'max-streams', 0, 1) } : {}),
      },
    });
    if (child) {
      // A process replacing one that exited takes the workers the enclave holds (those still within the skew limit)
      // before it says it is ready: the primary hands it connections from then on, and it listens on nothing itself.
      for (const r of child.registrations) await enclave.adopt(r).catch((e: unknown) => log.warn('enclave.adopt_failed', { code: (e as { code?: string }).code ?? 'INTERNAL' }));
      const s = serveHanded({ fetch: enclave.app.fetch, direct: enclave.direct });
      await child.serve({ rotate: (g) => enclave.rotateKeys(g), adopt: (r) => enclave.adopt(r), adoptCancel: (id, c) => enclave.adoptCancel(id, c), take: (socket) => s.take(socket) });
      await onSignal(async () => {
        await enclave.close();
        await s.close();
        await ledger?.close();
        child.close();
      });
      return 0;
    }
    const s = await serve({ fetch: enclave.app.fetch, direct: enclave.direct, listen: f.listen ?? '127.0.0.1:8443' });
    if (tee.sim) io.err('gm enclave: SIMULATED TEE (--tee sim): evidence is signed by a fake vendor; nothing here is confidential\n');
    // --json: the same as one JSON object per line, for scripts.
    if (f.json) io.out(`${JSON.stringify({ event: 'listening', url: s.url, sim: tee.sim })}\n`);
    else io.out(`gm enclave${tee.sim ? ' (sim)' : ''} listening on ${s.url}\n`);
    if (simAccount && f.json) io.out(`${JSON.stringify({ event: 'sim-account', account: simAccount.account.id, currency: 'USD', prepaid: String(SIM_CREDIT), apiKey: simAccount.apiKey })}\n`);
    else if (simAccount) io.out(`gm enclave (sim): account ${simAccount.account.id} holds ${SIM_CREDIT / 1_000_000n} USD of sim credit; its API key (shown once): ${simAccount.apiKey}\n`);
    await onSignal(async () => {
      log.info('enclave.stopping');
      await enclave.close();
      await s.close();
      await ledger?.close();
    });
    return 0;
  } catch (e) {
    child?.close(); // a process that failed to start must exit, not wait on its primary
    throw e;
  }
}

/** What the primary makes once and every process needs. */
interface FromPrimary {
  readonly anonymousId?: string;
}

/**
 * The primary of a multi-process enclave: makes the keys and the shared accounts once, starts the processes, prints
 * what a single process prints, and relays between them until stopped (enclave/cluster.ts).
 */
async function runEnclavePrimary(f: EnclaveFlags, io: ServiceIo, o: { processes: number; rotationMs: number; routerKind: string; openAccess: boolean; sim: boolean; log: Logger }): Promise<number> {
  const material: KeyMaterial = { gateway: newGatewayMaterial(), receiptSeed: new Uint8Array(randomBytes(32)) };
  let shared: FromPrimary = {};
  let simAccount: { account: { id: string }; apiKey: string } | undefined;
  if (o.routerKind === 'market') {
    const ledger = await openLedger(f.ledger!, { signer: signerFromSeed(material.receiptSeed) });
    try {
      if (o.openAccess) shared = { anonymousId: (await ledger.createAccount({ currency: 'USD', creditLimit: 1_000_000_000_000n }, Date.now())).account.id };
      if (o.sim) simAccount = await ledger.createAccount({ currency: 'USD', prepaid: SIM_CREDIT }, Date.now());
    } finally {
      await ledger.close();
    }
  }
  o.log.info('enclave.processes', { processes: o.processes });
  return runPrimary({
    processes: o.processes, log: o.log, shared, material, rotationMs: o.rotationMs, listen: f.listen ?? '127.0.0.1:8443',
    onListening: (url) => {
      if (o.sim) io.err('gm enclave: SIMULATED TEE (--tee sim): evidence is signed by a fake vendor; nothing here is confidential\n');
      if (f.json) io.out(`${JSON.stringify({ event: 'listening', url, sim: o.sim, processes: o.processes })}\n`);
      else io.out(`gm enclave${o.sim ? ' (sim)' : ''} listening on ${url} (${o.processes} processes)\n`);
      if (simAccount && f.json) io.out(`${JSON.stringify({ event: 'sim-account', account: simAccount.account.id, currency: 'USD', prepaid: String(SIM_CREDIT), apiKey: simAccount.apiKey })}\n`);
      else if (simAccount) io.out(`gm enclave (sim): account ${simAccount.account.id} holds ${SIM_CREDIT / 1_000_000n} USD of sim credit; its API key (shown once): ${simAccount.apiKey}\n`);
    },
  });
}
