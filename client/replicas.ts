/**
 * The client's verified replica set (docs/design.md §10, docs/protocol.md §3.1): through a relay that fronts several
 * enclave replicas, one request for `GET /v1/attestation?all=1&nonce=N` returns each replica's bundle for our nonce;
 * each is verified on its own exactly as a single enclave is (client/attest.ts: nonce, REPORT_DATA binding, platform
 * verifier, the same policy). The ones that pass form the set; requests are spread across it round robin, each
 * sealed to its replica's attested configuration and its receipts checked against that replica's receipt key.
 *
 * A replica whose bundle fails is left out (its error kept for the caller); the set is usable while one replica
 * passes, and with none the first failure is thrown, as a single enclave's would be. The relay is untrusted: it can
 * leave replicas out (denial of service, which it can do anyway), never add one that does not verify. An answer that
 * is a single bundle (an enclave without a relay, or a relay that does not list) is verified as one.
 * Runtime-agnostic (WebCrypto, fetch, Uint8Array).
 */
import { hex } from '../attestation/bytes.ts';
import { GmError, protocolError, unavailable } from '../attestation/errors.ts';
import { decodeBundleList, isBundleList, MAX_LISTED_BUNDLE_BYTES, MAX_LISTED_BUNDLES } from '../protocol/bundle-list.ts';
import { type Attestation, type AttestOptions, attest, errorCode, verifyEnclaveBundle } from './attest.ts';
import { fetchFailure } from './net-cause.ts';

export interface ReplicaAttestations {
  /** The replicas that verified, in the relay's order, one per receipt key. */
  readonly verified: readonly Attestation[];
  /** Why each of the others was refused (the verifier's GmError, with its report). */
  readonly refused: readonly GmError[];
}

/**
 * Attests every replica the relay lists. A relay that refuses the `all` parameter (400) is asked again the ordinary
 * way; an answer that is one bundle is verified as one.
 */
export async function attestReplicas(o: AttestOptions): Promise<ReplicaAttestations> {
  const nonce = o.nonce ?? crypto.getRandomValues(new Uint8Array(32));
  let res: Response;
  try {
    res = await o.fetch(`${o.base}/v1/attestation?all=1&nonce=${hex(nonce)}`, { method: 'GET', headers: { accept: 'application/cbor' }, ...(o.signal ? { signal: o.signal } : {}) });
  } catch (e) {
    throw unavailable('ATTESTATION_UNREACHABLE', `could not fetch the enclave's evidence from ${o.base} (${fetchFailure(e)})`, { cause: e });
  }
  if (res.status === 400) {
    await res.body?.cancel().catch(() => undefined);
    return { verified: [await attest({ ...o, nonce })], refused: [] };
  }
  if (!res.ok) {
    const code = await errorCode(res);
    throw unavailable('ATTESTATION_UNAVAILABLE', `the enclave's evidence endpoint answered HTTP ${res.status}${code ? ` (${code})` : ''}`);
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.length > MAX_LISTED_BUNDLES * (MAX_LISTED_BUNDLE_BYTES + 5) + 9) throw protocolError('BUNDLE_LIST_MALFORMED', 'replica bundle list is too large');
  const bundles = isBundleList(bytes) ? decodeBundleList(bytes) : [bytes];
  if (bundles.length === 0) throw unavailable('NO_REPLICA', 'the relay listed no replica');
  const check = { nonce, policy: o.policy, allowSim: o.allowSim, trust: o.trust, now: o.now(), maxAgeMs: o.policy.maxAgeMs, ...(o.collateral ? { collateral: o.collateral } : {}) };
  const results = await Promise.allSettled(bundles.map((b) => verifyEnclaveBundle(b, check)));
  const verified: Attestation[] = [];
  const refused: GmError[] = [];
  const seen = new Set<string>();
  for (const r of results) {
    if (r.status === 'rejected') {
      refused.push(r.reason instanceof GmError ? r.reason : protocolError('BUNDLE_MALFORMED', 'a listed bundle could not be verified', { cause: r.reason }));
      continue;
    }
    // A relay repeating a replica gains nothing: one entry per receipt key.
    const id = hex(r.value.receiptKey);
    if (seen.has(id)) continue;
    seen.add(id);
    verified.push(r.value);
  }
  if (verified.length === 0) throw refused[0]!;
  return { verified, refused };
}

/**
 * The verified set a session draws from: `next()` walks it round robin; `replace` swaps in a freshly verified set
 * (a re-attestation), bumping `generation` so requests sealed to the old set know to use the new one.
 */
export class ReplicaPool {
  #set: readonly Attestation[];
  #next = 0;
  #generation = 0;

  constructor(initial: readonly Attestation[]) {
    if (initial.length === 0) throw new Error('a replica pool needs at least one verified replica');
    this.#set = initial;
  }

  get size(): number {
    return this.#set.length;
  }

  get all(): readonly Attestation[] {
    return this.#set;
  }

  get generation(): number {
    return this.#generation;
  }

  next(): Attestation {
    return this.#set[this.#next++ % this.#set.length]!;
  }

  replace(set: readonly Attestation[]): void {
    if (set.length === 0) throw new Error('a replica pool needs at least one verified replica');
    this.#set = set;
    this.#generation++;
  }
}
