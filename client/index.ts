/**
 * gm client SDK (docs/design.md §1, §5): verify the enclave, then talk to it encrypted. Runs in browsers and Node
 * (WebCrypto + fetch + Uint8Array; no node: imports).
 *
 * ```ts
 * const gm = await createClient({ url: 'https://enclave.example', policy });
 * const openai = new OpenAI({ baseURL: gm.baseURL, apiKey, fetch: gm.fetch });
 * ```
 *
 * No transport before trust: `createClient` resolves only after the enclave's evidence verified under `policy` for
 * a nonce of this session, and `fetch` exists only on the resolved client, so no request able to carry a prompt can
 * be made earlier. Every failure is a GmError with a stable code (and `.report` when verification ran).
 */
import { configError, GmError } from '../attestation/errors.ts';
import type { BundleClaims } from '../attestation/bundle-verify.ts';
import type { VerificationReport } from '../attestation/report.ts';
import type { TrustStore } from '../attestation/trust.ts';
import { type Attestation, attest, type FetchLike } from './attest.ts';
import { type ClientPolicy, parseClientPolicy, simPolicyDoc } from './policy.ts';
import type { ClientReceipt } from './receipts.ts';
import { attestReplicas, type ReplicaAttestations, ReplicaPool } from './replicas.ts';
import { encryptedFetch, type Session } from './transport.ts';

export type { ClientPolicy } from './policy.ts';
export type { ClientReceipt } from './receipts.ts';
export type { FetchLike } from './attest.ts';

export interface CreateClientOptions {
  /** The enclave's base URL (its identity; requests go to `relay` when given). */
  readonly url: string;
  /**
   * The enclave policy as data (client/policy.ts), already parsed or as the JSON document. Required, except with
   * `allowSim` where it defaults to the sim provider's fixed measurement.
   */
  readonly policy?: ClientPolicy | Record<string, unknown>;
  /** An OHTTP relay (the host shim) to go through: it sees only ciphertext and not the client's identity headers. */
  readonly relay?: string;
  /** Accept simulated TEE evidence (demo, tests). Never in production. */
  readonly allowSim?: boolean;
  /** Pinned vendor anchors (attestation/trust.ts). Required for real hardware evidence. */
  readonly trust?: TrustStore;
  /** The HTTP fetch to use for everything (default: globalThis.fetch). */
  readonly fetch?: FetchLike;
  /** Clock for verification (tests). */
  readonly now?: () => Date;
  readonly signal?: AbortSignal;
  /**
   * A host shim whose collateral cache completes what the bundle lacks (SEV-SNP: VCEK, ASK/ARK chain, AMD's CRL;
   * TDX: TCB info, QE identity, PCK and root CA CRLs for the quote's FMSPC; GPU: OCSP), client/collateral.ts;
   * verified like everything else against the pinned roots. When set, what the shim cannot serve fails
   * verification (COLLATERAL_UNAVAILABLE), never skips a check.
   */
  readonly collateralFrom?: string;
  /**
   * `all`: ask the relay for every replica it fronts (`GET /v1/attestation?all=1`, docs/protocol.md §3.1), verify
   * each under the same policy, and spread requests across the ones that pass; `one`: a single enclave. Default
   * `all` with a relay (a relay fronting one enclave lists just it), `one` without.
   */
  readonly replicas?: 'all' | 'one';
}

/** One verified replica of the current set. */
export interface VerifiedReplica {
  readonly claims: BundleClaims;
  readonly keyId: number;
  readonly receiptKey: Uint8Array;
}

export interface GmClient {
  /** A fetch that encrypts every request to the attested enclave: pass it to the OpenAI SDK. */
  readonly fetch: FetchLike;
  /** The OpenAI base URL to use with `fetch` (`<url>/v1`). */
  readonly baseURL: string;
  /** The verification report of the current attestation. */
  readonly verification: VerificationReport;
  readonly claims: BundleClaims;
  /** Verified receipts received so far, oldest first. */
  readonly receipts: readonly ClientReceipt[];
  /** The raw bundle of the current attestation (CBOR) for auditors. */
  readonly bundle: Uint8Array;
  /** Every verified replica requests are spread across (one without a replica-fronting relay). */
  readonly replicas: readonly VerifiedReplica[];
  /** Re-attests now (new nonce); the client switches to the new keys only if it verifies. */
  reattest(): Promise<VerificationReport>;
  /**
   * An encrypted fetch on the same verified session whose receipts go to `onReceipt` instead of `receipts`: a
   * caller serving many requests at once (a local proxy) learns which receipt each request earned, and keeps them.
   */
  fetchWith(onReceipt: (r: ClientReceipt) => void): FetchLike;
}

export async function createClient(o: CreateClientOptions): Promise<GmClient> {
  const url = normalise(o.url, 'url');
  const base = o.relay ? normalise(o.relay, 'relay') : url;
  const allowSim = o.allowSim === true;
  let policy: ClientPolicy;
  if (o.policy === undefined) {
    if (!allowSim) throw configError('POLICY_REQUIRED', 'createClient needs a policy (the enclave measurements to accept)');
    policy = parseClientPolicy(simPolicyDoc(), 'sim policy');
  } else {
    policy = isParsed(o.policy) ? o.policy : parseClientPolicy(o.policy);
  }
  const f: FetchLike = o.fetch ?? ((i, init) => globalThis.fetch(i, init));
  const now = o.now ?? (() => new Date());
  const collateral = o.collateralFrom ? { base: normalise(o.collateralFrom, 'collateralFrom'), fetch: f } : undefined;
  const mode = o.replicas ?? (o.relay ? 'all' : 'one');
  const opts = { base, fetch: f, policy, allowSim, trust: o.trust, now, ...(o.signal ? { signal: o.signal } : {}), ...(collateral ? { collateral } : {}) };
  const run = async (): Promise<ReplicaAttestations> => (mode === 'all' ? attestReplicas(opts) : { verified: [await attest(opts)], refused: [] });

  // No transport before trust: the pool exists only once at least one replica verified.
  const pool = new ReplicaPool((await run()).verified);
  let again: Promise<Attestation> | undefined;
  const receipts: ClientReceipt[] = [];
  const session: Session = {
    current: () => pool.next(),
    generation: () => pool.generation,
    // Concurrent requests that all hit a key mismatch share one re-attestation; replicas that fail it are dropped,
    // and with none passing the session keeps its set and the caller gets the error.
    reattest: () => {
      again ??= run().then((r) => {
        pool.replace(r.verified);
        return pool.next();
      }).finally(() => (again = undefined));
      return again;
    },
  };
  const skew = { offset: 0 };
  const transport = (onReceipt: (r: ClientReceipt) => void) =>
    encryptedFetch(session, { base, origin: new URL(url).origin, authority: new URL(url).host, fetch: f, onReceipt, now: () => now().getTime(), skew });
  const fetch = transport((r) => receipts.push(r));
  return {
    fetch,
    baseURL: `${url}/v1`,
    get verification() {
      return pool.all[0]!.report;
    },
    get claims() {
      return pool.all[0]!.claims;
    },
    get bundle() {
      return pool.all[0]!.bundle;
    },
    get replicas() {
      return pool.all.map((a) => ({ claims: a.claims, keyId: a.keyConfig.keyId, receiptKey: a.receiptKey }));
    },
    receipts,
    async reattest() {
      return (await session.reattest()).report;
    },
    fetchWith: (onReceipt) => transport(onReceipt),
  };
}

function isParsed(p: ClientPolicy | Record<string, unknown>): p is ClientPolicy {
  return typeof (p as ClientPolicy).maxAgeMs === 'number';
}

function normalise(u: string, what: string): string {
  let x: URL;
  try {
    x = new URL(u);
  } catch (e) {
    throw configError('BAD_URL', `${what} is not a URL: ${u}`, { cause: e });
  }
  if (x.protocol !== 'https:' && x.protocol !== 'http:') throw configError('BAD_URL', `${what} must be http(s)`);
  return `${x.origin}${x.pathname.replace(/\/+$/, '')}`;
}

export { GmError };
