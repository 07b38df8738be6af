/**
 * What the gate checks (docs/design.md §1): the shim is a client of the enclave it fronts, so it verifies it exactly as
 * the SDK does (client/attest.ts: own nonce, REPORT_DATA binding, platform verifier, the operator's policy), and
 * reads the enclave's worker and offer listings for the status page.
 */
import { unavailable } from '../attestation/errors.ts';
import type { TrustStore } from '../attestation/trust.ts';
import { attest, type FetchLike } from '../client/attest.ts';
import type { CollateralSource } from '../client/collateral.ts';
import { createClient, type GmClient } from '../client/index.ts';
import type { ClientPolicy } from '../client/policy.ts';
import type { GateCheckResult } from './gate.ts';
import type { GpuRow, Listings, WorkerRow } from './status-page.ts';

export interface EnclaveCheckOptions {
  readonly enclave: string;
  readonly policy: ClientPolicy;
  readonly allowSim: boolean;
  readonly trust: TrustStore | undefined;
  readonly fetch?: FetchLike;
  readonly now?: () => Date;
  /** A check that has not finished by then fails (an enclave that stops answering must not keep the gate open). */
  readonly timeoutMs?: number;
  /**
   * The shim's own collateral cache, for evidence that ships without it (a TDX quote from configfs carries no TCB
   * info; an SEV-SNP report may come without its VCEK): completed and verified to the pinned roots as a client does.
   */
  readonly collateral?: CollateralSource;
}

export function enclaveCheck(o: EnclaveCheckOptions): () => Promise<GateCheckResult> {
  const f: FetchLike = o.fetch ?? ((i, init) => fetch(i, init));
  return async () => {
    const signal = AbortSignal.timeout(o.timeoutMs ?? 15_000);
    const a = await Promise.race([
      attest({ base: o.enclave.replace(/\/$/, ''), fetch: f, policy: o.policy, allowSim: o.allowSim, trust: o.trust, now: o.now ?? (() => new Date()), signal, ...(o.collateral ? { collateral: o.collateral } : {}) }),
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(unavailable('HOST_GATE_CHECK_TIMEOUT', 'the enclave did not produce verifiable evidence in time')), { once: true })),
    ]);
    return {
      report: a.report,
      keyConfigs: a.keyConfigs,
      summary: {
        platform: a.claims.platform,
        measurement: a.claims.cpu.measurement,
        'evidence issued': new Date(a.claims.issuedAt).toISOString(),
        'OHTTP key id': String(a.keyConfig.keyId),
        ...(a.claims.sim ? { sim: 'SIMULATED TEE: not backed by hardware' } : {}),
      },
    };
  };
}

/**
 * The enclave's listings for the status page. Models come over OHTTP from the attested enclave (the shim verifies it
 * as a client would); worker lists and counts are the enclave's plain word, shown as such. Missing endpoints show
 * as "not available".
 */
export function enclaveListings(enclave: string, o: Omit<EnclaveCheckOptions, 'enclave'> | undefined = undefined, f: FetchLike = (i, init) => fetch(i, init)): () => Promise<Listings> {
  let client: Promise<GmClient> | undefined;
  const models = async (): Promise<string[] | undefined> => {
    if (!o) return undefined;
    try {
      client ??= createClient({ url: enclave, policy: o.policy, allowSim: o.allowSim, fetch: f, ...(o.trust ? { trust: o.trust } : {}) });
      const c = await client;
      const r = await c.fetch(`${c.baseURL}/models`, { signal: AbortSignal.timeout(3000) });
      if (!r.ok) return undefined;
      const j = (await r.json()) as { data?: { id?: unknown; gm_pool?: unknown }[] };
      // Models only: the operator's pools (marked gm_pool) are names for lists of them, not models workers offer.
      return (j.data ?? []).filter((m) => m.gm_pool === undefined).map((m) => m.id).filter((x): x is string => typeof x === 'string');
    } catch {
      client = undefined; // re-attest next time (key rotated, enclave restarted)
      return undefined;
    }
  };
  const states = async (): Promise<Record<string, number> | undefined> => {
    try {
      const r = await f(`${enclave.replace(/\/$/, '')}/metrics`, { signal: AbortSignal.timeout(3000) });
      if (!r.ok) return undefined;
      const out: Record<string, number> = {};
      for (const m of (await r.text()).matchAll(/^gm_workers\{state="([a-z_-]{1,32})"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
      return Object.keys(out).length ? out : undefined;
    } catch {
      return undefined;
    }
  };
  const base = enclave.replace(/\/$/, '');
  const get = async (path: string): Promise<unknown[] | undefined> => {
    try {
      const r = await f(`${base}${path}`, { signal: AbortSignal.timeout(3000) });
      if (!r.ok) return undefined;
      const j = (await r.json()) as unknown;
      const list = Array.isArray(j) ? j : (j as Record<string, unknown>)[path.split('/').pop()!] ?? (j as { data?: unknown }).data;
      return Array.isArray(list) ? list : undefined;
    } catch {
      return undefined;
    }
  };
  const s = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : typeof v === 'string' ? v : JSON.stringify(v));
  return async () => {
    // Offers are fetched and their signatures checked by withCheckedOffers (status-page.ts), not here.
    const [w, ms, st] = await Promise.all([get('/v1/workers'), models(), states()]);
    const workers = w?.map((x): WorkerRow => {
      const o = x as Record<string, unknown>;
      const claims = Array.isArray(o.gpus) && o.gpus.every((g) => typeof g === 'object' && g !== null) ? (o.gpus as Record<string, unknown>[]).map(gpuRow) : undefined;
      return { id: s(o.id ?? o.workerId) ?? '?', platform: s(o.platform), measurement: s(o.measurement), gpus: typeof o.gpus === 'number' ? o.gpus : Array.isArray(o.gpus) ? o.gpus.length : undefined, ...(claims ? { gpuClaims: claims } : {}), state: s(o.state), verifiedAt: s(o.verifiedAt) } as WorkerRow;
    });
    return { workers, offers: undefined, models: ms, workerStates: st };
  };
}

/** A listed GPU's verified claims (attestation/nvidia/claims.ts field names), reduced to model, driver and CC mode. */
function gpuRow(g: Record<string, unknown>): GpuRow {
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 && v.length <= 128 ? v : undefined);
  const model = str(g.hwmodel) ?? str(g.arch);
  const driver = str(g.driverVersion);
  const ccMode = str(g.ccMode);
  return { ...(model ? { model } : {}), ...(driver ? { driver } : {}), ...(ccMode ? { ccMode } : {}) };
}
