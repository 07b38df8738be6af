/**
 * Attestation of the enclave by the client (docs/design.md §1, §4): a fresh 32-byte nonce per session, the evidence
 * bundle for it, the REPORT_DATA binding recomputed here from the bundle's keys and our nonce, then the platform
 * verifier chosen by the bundle's platform under the client's policy. Only on success are the OHTTP key
 * configurations and the receipt key returned: they are what the rest of the SDK may use.
 *
 * Runtime-agnostic (WebCrypto, fetch, Uint8Array); the fetch is the caller's, so tests can record every request.
 */
import { decodeBundle, type EnclaveSettings, encodeEnclaveSettings } from '../attestation/bundle.ts';
import { type BundleClaims, verifyBundle } from '../attestation/bundle-verify.ts';
import { hex } from '../attestation/bytes.ts';
import { GmError, protocolError, rejected, unavailable } from '../attestation/errors.ts';
import { Checks, type VerificationReport } from '../attestation/report.ts';
import type { TrustStore } from '../attestation/trust.ts';
import { reportData } from '../protocol/binding.ts';
import { chooseKeyConfig, decodeKeyConfigs, isPostQuantumKem, type KeyConfig } from '../protocol/ohttp.ts';
import { KEM_MLKEM768_X25519 } from '../protocol/hpke.ts';
import { fetchFailure } from './net-cause.ts';
import { type CollateralSource, gpuOcspFromShim, missingTdxCollateral, tdxCollateralGetter, withCollateral } from './collateral.ts';
import { type ClientPolicy, policyAllows, settingsViolations } from './policy.ts';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface AttestOptions {
  /** Where attestation requests go: the relay when there is one, else the enclave. */
  readonly base: string;
  readonly fetch: FetchLike;
  readonly policy: ClientPolicy;
  readonly allowSim: boolean;
  readonly trust: TrustStore | undefined;
  readonly now: () => Date;
  /** TEST/bench hook: a fixed nonce instead of a random one. */
  readonly nonce?: Uint8Array;
  readonly signal?: AbortSignal;
  /** Complete missing collateral (SNP certificates and CRL, TDX TCB info / QE identity / CRLs, GPU OCSP) from a host shim's cache (client/collateral.ts). */
  readonly collateral?: CollateralSource;
}

export interface Attestation {
  readonly report: VerificationReport;
  readonly claims: BundleClaims;
  /** The attested application/ohttp-keys bytes and the configuration the client will use. */
  readonly keyConfigs: Uint8Array;
  readonly keyConfig: KeyConfig;
  readonly receiptKey: Uint8Array;
  /** The enclave's trust-relevant settings, verified as bound in its evidence (absent: it binds none). */
  readonly settings?: EnclaveSettings;
  readonly nonce: Uint8Array;
  /** The bundle as received (CBOR), for auditors (`gm verify URL --save`). */
  readonly bundle: Uint8Array;
}

const MAX_BUNDLE_BYTES = 1024 * 1024;

export async function attest(o: AttestOptions): Promise<Attestation> {
  const nonce = o.nonce ?? crypto.getRandomValues(new Uint8Array(32));
  let res: Response;
  try {
    res = await o.fetch(`${o.base}/v1/attestation?nonce=${hex(nonce)}`, { method: 'GET', headers: { accept: 'application/cbor' }, ...(o.signal ? { signal: o.signal } : {}) });
  } catch (e) {
    throw unavailable('ATTESTATION_UNREACHABLE', `could not fetch the enclave's evidence from ${o.base} (${fetchFailure(e)})`, { cause: e });
  }
  if (!res.ok) {
    const code = await errorCode(res);
    throw unavailable('ATTESTATION_UNAVAILABLE', `the enclave's evidence endpoint answered HTTP ${res.status}${code ? ` (${code})` : ''}`);
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.length > MAX_BUNDLE_BYTES) throw protocolError('BUNDLE_MALFORMED', 'evidence bundle is too large');
  return verifyEnclaveBundle(bytes, { nonce, policy: o.policy, allowSim: o.allowSim, trust: o.trust, now: o.now(), maxAgeMs: o.policy.maxAgeMs, ...(o.collateral ? { collateral: o.collateral } : {}) });
}

export interface BundleCheckOptions {
  /** The nonce the bundle must be bound to (ours for a live check; the bundle's own for an offline audit). */
  readonly nonce: Uint8Array;
  readonly policy: ClientPolicy;
  readonly allowSim: boolean;
  readonly trust: TrustStore | undefined;
  readonly now: Date;
  readonly maxAgeMs: number | undefined;
  readonly collateral?: CollateralSource;
}

/** Verifies an enclave evidence bundle (CBOR) for `nonce`: the checks of `attest` without the network. */
export async function verifyEnclaveBundle(bytes: Uint8Array, o: BundleCheckOptions): Promise<Attestation> {
  const { nonce } = o;
  const decoded = decodeBundle(bytes);

  // Checks the SDK makes itself, recorded in the same report the verifier returns.
  const pre = new Checks('client');
  const tdx = decoded.platform.replace(/^sim-/, '') === 'tdx';
  const src = o.collateral && (!o.collateral.platforms || o.collateral.platforms.includes(tdx ? 'tdx' : 'sev-snp')) ? o.collateral : undefined;
  const bundle = src && !tdx
    ? await pre.run('client.collateral', 'missing collateral (VCEK and chain, CRL) completed from the host shim cache (verified against the vendor root below)', src.base, () => withCollateral(decoded, src),
      (b) => `${b.collateral.crls?.length ?? 0} CRL(s), ${b.certs.length} certificate(s)`)
    : decoded;
  // TDX: the verifier asks for the collateral by the FMSPC of the PCK certificate it verified (tdx.collateral.get).
  const tdxGetter = src && tdx ? tdxCollateralGetter(decoded, src) : undefined;
  if (src && tdx) pre.runSync('client.collateral', 'TDX collateral the bundle lacks is asked from the host shim cache by the verified PCK FMSPC (verified against the Intel root below)', src.base,
    () => missingTdxCollateral(decoded), (m) => (m.length ? `from the shim: ${m.join(', ')}` : 'the bundle carries all of it'));
  const fetched = src ? { ...(tdxGetter ? { tdx: tdxGetter } : {}), ...(decoded.gpu?.length ? { gpu: gpuOcspFromShim(src) } : {}) } : undefined;
  pre.runSync('client.platform', 'bundle platform has a section in the client policy', 'client policy', () => {
    if (!policyAllows(o.policy, bundle.platform)) throw rejected('PLATFORM_NOT_ALLOWED', `the client policy does not accept ${bundle.platform} enclaves`);
  }, () => bundle.platform);
  const receiptKey = pre.runSync('client.keys', 'bundle carries an enclave receipt key and OHTTP key configurations', 'docs/design.md §4', () => {
    if (!bundle.keys.receipt || bundle.keys.signing) throw rejected('BUNDLE_ROLE_MISMATCH', 'the bundle is not an enclave bundle (no receipt key)');
    return bundle.keys.receipt;
  });
  // The enclave's settings, when its bundle carries them, are bound in REPORT_DATA too: altered ones fail the binding.
  const expectedReportData = await reportData({ role: 'enclave', nonce, keyConfigs: bundle.keys.ohttp, signingKey: receiptKey, ...(bundle.settings ? { settings: encodeEnclaveSettings(bundle.settings) } : {}) });

  let verified;
  try {
    verified = await verifyBundle(bundle, {
      expectedReportData,
      expectedNonce: nonce,
      policy: o.policy,
      allowSim: o.allowSim,
      ...(o.trust ? { trust: o.trust } : {}),
      now: o.now,
      ...(o.maxAgeMs !== undefined ? { maxAgeMs: o.maxAgeMs } : {}),
      ...(fetched ? { fetched } : {}),
    });
  } catch (e) {
    if (e instanceof GmError && e.report) e.report = joinReports(pre.report(), e.report);
    throw e;
  }
  const post = new Checks('client');
  // The configuration comes from the attested list only (never /.well-known/ohttp-gateway): X-Wing when listed.
  const keyConfig = post.runSync('client.key-config', 'an attested OHTTP key configuration with a supported HPKE suite, post-quantum (X-Wing) preferred', 'bundle keys.ohttp (bound in REPORT_DATA); docs/protocol.md §5.1', () => {
    const chosen = chooseKeyConfig(decodeKeyConfigs(bundle.keys.ohttp));
    if (o.policy.requirePostQuantum && !isPostQuantumKem(chosen.kemId)) {
      throw rejected('POST_QUANTUM_REQUIRED', 'the client policy requires a post-quantum KEM and no attested key configuration has one');
    }
    return chosen;
  }, (c) => `key id ${c.keyId}, ${c.kemId === KEM_MLKEM768_X25519 ? 'MLKEM768-X25519 (X-Wing)' : 'DHKEM(X25519)'}`);
  try {
    post.runSync('client.settings', "the enclave's attested settings meet the client policy (no sim workers unless allowed)", 'bundle settings (bound in REPORT_DATA); docs/protocol.md §12.3', () => {
      const bad = settingsViolations(o.policy, verified.claims.sim, bundle.settings);
      if (bad.length > 0) throw rejected(bad[0]!.code, bad.map((b) => b.message).join('; '));
    }, () => (bundle.settings ? `allowSimWorkers ${bundle.settings.allowSimWorkers}, openAccess ${bundle.settings.openAccess}, ledger ${bundle.settings.ledger}` : 'none bound'));
  } catch (e) {
    if (e instanceof GmError) e.report = joinReports(pre.report(), verified.report, post.report());
    throw e;
  }
  return {
    report: joinReports(pre.report(), verified.report, post.report()),
    claims: verified.claims,
    keyConfigs: bundle.keys.ohttp,
    keyConfig,
    receiptKey,
    ...(bundle.settings ? { settings: bundle.settings } : {}),
    nonce,
    bundle: bytes,
  };
}

function joinReports(...rs: VerificationReport[]): VerificationReport {
  const main = rs.find((r) => r.subject !== 'client') ?? rs[0]!;
  const checks = rs.flatMap((r) => r.checks);
  return { subject: main.subject, verified: checks.every((c) => c.status !== 'fail'), checks };
}

/** The stable code of a JSON or problem+json error body, if any (never the body itself: it is the peer's text). */
export async function errorCode(res: Response): Promise<string | undefined> {
  try {
    const j = (await res.clone().json()) as { error?: { code?: unknown }; code?: unknown; type?: unknown };
    const c = j.error?.code ?? j.code;
    return typeof c === 'string' && /^[A-Z0-9_]{1,64}$/.test(c) ? c : undefined;
  } catch {
    return undefined;
  }
}
