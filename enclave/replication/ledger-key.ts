/**
 * Ledger key release between enclave replicas by mutual attestation (docs/design.md §10.1, docs/operator.md
 * "Replicas"). The shared ledger's encrypted columns are readable only with a 32-byte ledger key that exists only in
 * the memory of attested replicas; a new replica obtains it from a running one (a member) in one exchange:
 *
 *   joiner J                                                   member M
 *   fresh X-Wing key pair (skJ, pkJ), fresh nonce nJ
 *   bundleJ = J's evidence, REPORT_DATA binding nonce nJ, the configuration of pkJ as its `keys.ohttp`, J's receipt key
 *   and settings (protocol/binding.ts, as every enclave bundle)
 *                      ── POST /v1/replication/join {bundle: bundleJ} ──▶
 *                                                   verify bundleJ (nonce nJ as carried, REPORT_DATA, platform
 *                                                   verifier, M's replica policy, age); require J's platform,
 *                                                   measurement and settings to equal M's own
 *                                                   sealed = enc || ct, HPKE base mode (RFC 9180 §5.1.1) to pkJ,
 *                                                     info = "gm ledger key v1", aad = nJ, pt = ledger key
 *                                                   bundleM = M's evidence for nonce
 *                                                     SHA-256("gm ledger key release v1" || nJ || sealed)
 *                      ◀── {bundle: bundleM, sealed} ──
 *   verify bundleM for that nonce under the same policy; require M's platform, measurement and settings to equal J's;
 *   open sealed with skJ (aad nJ); the key is 32 bytes
 *
 * Why this holds (the host relays every byte and may replay, drop or rewrite any of them):
 * - Only an enclave that runs M's measurement with M's settings holds skJ (REPORT_DATA binds pkJ to J's hardware
 *   evidence), so the sealed key opens only there; a recorded exchange replayed to M yields a key sealed to the
 *   old pkJ, whose private half never left that genuine enclave. X-Wing keeps a recorded exchange closed to a
 *   future quantum attacker too.
 * - J accepts a key only from an enclave of its own measurement and settings, for this exchange: M's evidence binds
 *   nJ (fresh) and the exact sealed bytes, so the host cannot hand J a key of its own choosing (which would let it read
 *   everything J later writes) nor replay an old answer.
 * - Sim evidence passes only where the policy allows sim (--tee sim), and a sim replica can never join or be joined
 *   by a hardware one: the platforms must be equal.
 * The key is held in memory only; nothing here writes it anywhere.
 */
import { decodeBundle, encodeBundle, encodeEnclaveSettings, type EnclaveSettings } from '../../attestation/bundle.ts';
import { concat, fromBase64, hex, toBase64 } from '../../attestation/bytes.ts';
import { GmError, protocolError, rejected } from '../../attestation/errors.ts';
import type { TrustStore } from '../../attestation/trust.ts';
import { type Attestation, verifyEnclaveBundle } from '../../client/attest.ts';
import type { ClientPolicy } from '../../client/policy.ts';
import { AEAD_AES_256_GCM, KDF_HKDF_SHA256, KEM_MLKEM768_X25519, setupBaseR, setupBaseS, XWING_NENC } from '../../protocol/hpke.ts';
import { encodeKeyConfigs, generateKeyConfig } from '../../protocol/ohttp.ts';
import type { TeeProvider } from '../tee/provider.ts';
import { makeBundle } from '../tee/evidence.ts';

export const LEDGER_KEY_BYTES = 32;
const te = new TextEncoder();
const INFO = te.encode('gm ledger key v1');
const RELEASE_LABEL = te.encode('gm ledger key release v1');
/** The one suite of the exchange: X-Wing, HKDF-SHA256, AES-256-GCM. */
const SUITE = { kemId: KEM_MLKEM768_X25519, kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_256_GCM } as const;
/** Evidence older than this is refused in either direction, whatever the policy allows. */
export const MAX_PEER_EVIDENCE_AGE_MS = 5 * 60_000;
/** Upper bound of a join request or answer body (two bundles at most). */
export const MAX_REPLICATION_BODY_BYTES = 2 * 1024 * 1024;

/** What both sides verify peers with, and what they must share. */
export interface ReplicaIdentity {
  /** The peer policy (the operator's client policy for this enclave image). */
  readonly policy: ClientPolicy;
  readonly allowSim: boolean;
  readonly trust: TrustStore | undefined;
  readonly now: () => Date;
  /** This enclave's TEE, its receipt public key and attested settings (bound in every bundle it makes). */
  readonly tee: TeeProvider;
  readonly receiptKey: Uint8Array;
  readonly settings: EnclaveSettings;
}

/** This enclave's platform, measurement and settings, from its own evidence verified under the peer policy. */
export interface SelfClaims {
  readonly platform: string;
  readonly measurement: string;
  readonly settings: string;
}

/**
 * Verifies this enclave's own fresh evidence under the peer policy: an enclave that would not pass its own policy
 * neither releases nor accepts a ledger key (SNP_POLICY_* and the like), and the claims are what peers must equal.
 */
export async function selfClaims(id: ReplicaIdentity, keyConfigs: Uint8Array): Promise<SelfClaims> {
  const nonce = crypto.getRandomValues(new Uint8Array(32));
  const b = encodeBundle(await makeBundle({ tee: id.tee, role: 'enclave', keyConfigs, signingKey: id.receiptKey, settings: id.settings, nonce, now: () => id.now().getTime() }));
  return claimsOf(await verifyPeer(b, nonce, id));
}

function claimsOf(a: Attestation): SelfClaims {
  return { platform: a.claims.platform, measurement: a.claims.cpu.measurement, settings: a.settings ? hex(encodeEnclaveSettings(a.settings)) : '' };
}

function verifyPeer(bundle: Uint8Array, nonce: Uint8Array, id: ReplicaIdentity): Promise<Attestation> {
  const maxAgeMs = Math.min(id.policy.maxAgeMs, MAX_PEER_EVIDENCE_AGE_MS);
  return verifyEnclaveBundle(bundle, { nonce, policy: id.policy, allowSim: id.allowSim, trust: id.trust, now: id.now(), maxAgeMs });
}

/** The peer must run what we run: same platform, same measurement, same attested settings. */
function requireSame(peer: SelfClaims, self: SelfClaims, who: 'joiner' | 'member'): void {
  if (peer.platform !== self.platform) throw rejected('REPLICA_PLATFORM_MISMATCH', `the ${who} runs on ${peer.platform}, this enclave on ${self.platform}`);
  if (peer.measurement !== self.measurement) throw rejected('REPLICA_MEASUREMENT_MISMATCH', `the ${who}'s measurement ${peer.measurement} is not this enclave's ${self.measurement}`);
  if (peer.settings !== self.settings) throw rejected('REPLICA_SETTINGS_MISMATCH', `the ${who}'s attested settings differ from this enclave's`);
}

function releaseNonce(nJ: Uint8Array, sealed: Uint8Array): Promise<Uint8Array> {
  return crypto.subtle.digest('SHA-256', concat(RELEASE_LABEL, nJ, sealed) as Uint8Array<ArrayBuffer>).then((d) => new Uint8Array(d));
}

/** Member side: verifies a joiner's request and answers with the ledger key sealed to it. */
export async function releaseLedgerKey(body: Uint8Array, o: { readonly identity: ReplicaIdentity; readonly self: SelfClaims; readonly ledgerKey: Uint8Array; readonly keyConfigs: Uint8Array }): Promise<Uint8Array> {
  const bundle = field(parseJson(body), 'bundle');
  const nJ = decodeBundle(bundle).nonce;
  if (nJ.length !== 32) throw protocolError('REPLICATION_MALFORMED', 'the joiner nonce must be 32 bytes');
  const joiner = await verifyPeer(bundle, nJ, o.identity);
  requireSame(claimsOf(joiner), o.self, 'joiner');
  if (joiner.keyConfig.kemId !== SUITE.kemId) throw rejected('REPLICATION_SUITE', 'the joiner key must be X-Wing');
  const sealed = await sealLedgerKey(joiner.keyConfig.publicKey, nJ, o.ledgerKey);
  const nonce = await releaseNonce(nJ, sealed);
  const mine = encodeBundle(await makeBundle({ tee: o.identity.tee, role: 'enclave', keyConfigs: o.keyConfigs, signingKey: o.identity.receiptKey, settings: o.identity.settings, nonce, now: () => o.identity.now().getTime() }));
  return te.encode(JSON.stringify({ bundle: toBase64(mine), sealed: toBase64(sealed) }));
}

/** Joiner side, first half: a fresh key pair and the request body; `accept` checks the answer and opens the key. */
export async function joinRequest(id: ReplicaIdentity): Promise<{ body: Uint8Array; accept(answer: Uint8Array): Promise<Uint8Array> }> {
  const key = await generateKeyConfig(0, [{ kdfId: SUITE.kdfId, aeadId: SUITE.aeadId }], { kemId: SUITE.kemId });
  const keyConfigs = encodeKeyConfigs([key.config]);
  const self = await selfClaims(id, keyConfigs);
  const nJ = crypto.getRandomValues(new Uint8Array(32));
  const mine = encodeBundle(await makeBundle({ tee: id.tee, role: 'enclave', keyConfigs, signingKey: id.receiptKey, settings: id.settings, nonce: nJ, now: () => id.now().getTime() }));
  return {
    body: te.encode(JSON.stringify({ bundle: toBase64(mine) })),
    async accept(answer) {
      const j = parseJson(answer);
      const bundle = field(j, 'bundle');
      const sealed = field(j, 'sealed');
      const nonce = await releaseNonce(nJ, sealed);
      // The member's evidence must bind this exchange's nonce and these sealed bytes: anything else was not its answer.
      if (hex(decodeBundle(bundle).nonce) !== hex(nonce)) throw rejected('LEDGER_KEY_NOT_BOUND', 'the sealed ledger key is not the one the member attested for this exchange');
      requireSame(claimsOf(await verifyPeer(bundle, nonce, id)), self, 'member');
      return openLedgerKey(sealed, nJ, key.privateKey);
    },
  };
}

/** `enc || ct`: the ledger key sealed to an X-Wing public key, HPKE base mode, aad = the joiner's nonce. */
export async function sealLedgerKey(pk: Uint8Array, nJ: Uint8Array, ledgerKey: Uint8Array): Promise<Uint8Array> {
  const { enc, context } = await setupBaseS(SUITE, pk, INFO);
  return concat(enc, await context.seal(nJ, ledgerKey));
}

/** Opens `enc || ct` with the joiner's key; any failure is LEDGER_KEY_UNSEAL_FAILED (no detail to the peer). */
export async function openLedgerKey(sealed: Uint8Array, nJ: Uint8Array, sk: Parameters<typeof setupBaseR>[2]): Promise<Uint8Array> {
  const nEnc = XWING_NENC;
  if (sealed.length !== nEnc + LEDGER_KEY_BYTES + 16) throw rejected('LEDGER_KEY_UNSEAL_FAILED', 'the sealed ledger key has the wrong length');
  try {
    const ctx = await setupBaseR(SUITE, sealed.subarray(0, nEnc), sk, INFO);
    return await ctx.open(nJ, sealed.subarray(nEnc));
  } catch (e) {
    throw rejected('LEDGER_KEY_UNSEAL_FAILED', 'the sealed ledger key does not open with this enclave key', { cause: e });
  }
}

function parseJson(b: Uint8Array): Record<string, unknown> {
  if (b.length > MAX_REPLICATION_BODY_BYTES) throw protocolError('REPLICATION_MALFORMED', 'replication message too large');
  let j: unknown;
  try {
    j = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b));
  } catch (e) {
    throw protocolError('REPLICATION_MALFORMED', 'replication message is not JSON', { cause: e });
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw protocolError('REPLICATION_MALFORMED', 'replication message must be a JSON object');
  return j as Record<string, unknown>;
}

function field(j: Record<string, unknown>, name: string): Uint8Array {
  const v = j[name];
  if (typeof v !== 'string') throw protocolError('REPLICATION_MALFORMED', `replication message needs ${name} (base64)`);
  try {
    return fromBase64(v, name);
  } catch (e) {
    throw e instanceof GmError ? protocolError('REPLICATION_MALFORMED', e.message, { cause: e }) : e;
  }
}
