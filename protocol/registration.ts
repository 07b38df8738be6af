/**
 * Worker registration signature (docs/protocol.md §12.1). A worker's evidence is public (anyone can fetch its bundle),
 * so the bundle alone does not say who is registering: the registration is signed with the Ed25519 key bound in that
 * evidence (REPORT_DATA, role `worker`). Whoever re-posts the bundle with another URL, other models or other offers
 * holds no such signature.
 *
 *   message   = u8(len(label)) || "gm/v1 worker-registration" || CBOR(claims)      (deterministic CBOR, RFC 8949 §4.2.1)
 *   claims    = { v: 1, url, models: [text], offers: [SHA-256(offer)], bundle: SHA-256(bundle CBOR), time }
 *   signature = Ed25519(workerKey, message)                                         (RFC 8032, 64 bytes)
 *
 * `time` (Unix milliseconds) lets an enclave refuse stale or replayed registrations; the label keeps the signature
 * from standing for an offer or a cancel, which the same key signs under other labels (protocol/offer.ts).
 *
 * The enclave's answer (§12.1) carries the worker's credential sealed to the worker (protocol/worker-auth.ts); the
 * worker's key configuration is public, so anyone on the path could seal a credential of their own. The enclave
 * therefore signs its answer with its receipt key, which the worker attested (REPORT_DATA, role `enclave`) before
 * registering:
 *
 *   answer    = CBOR({ v: 1, workerId, credential: SHA-256(sealed credential), registration: SHA-256(worker's signature) })
 *   signature = Ed25519(receiptKey, "gm-worker-registration-answer-v1" 0x00 || answer)   (protocol/receipt.ts RECORD_CONTEXTS)
 *
 * Naming the worker's own signature ties the answer to this registration (its time strictly increases), so an
 * answer to an earlier one cannot be replayed.
 * Runtime-agnostic: WebCrypto only.
 */
import { concat } from '../attestation/bytes.ts';
import { protocolError, rejected } from '../attestation/errors.ts';
import { encodeDeterministic } from './market-cbor.ts';
import { ed25519Verify } from './offer.ts';
import { RECORD_CONTEXTS, type ReceiptSigner } from './receipt.ts';

export interface RegistrationClaims {
  /** The URL the enclave will challenge and dispatch to, exactly as posted. */
  readonly url: string;
  readonly models: readonly string[];
  /** The signed offers exactly as posted. */
  readonly offers: readonly Uint8Array[];
  /** The posted evidence bundle (CBOR bytes). */
  readonly bundle: Uint8Array;
  /** Unix milliseconds when the worker signed it. */
  readonly time: number;
}

const LABEL = new TextEncoder().encode('gm/v1 worker-registration');

const sha256 = async (b: Uint8Array): Promise<Uint8Array> => new Uint8Array(await crypto.subtle.digest('SHA-256', new Uint8Array(b)));

/** The exact bytes the worker signs (exposed so docs and tests can show them). */
export async function registrationMessage(c: RegistrationClaims): Promise<Uint8Array> {
  if (!Number.isSafeInteger(c.time) || c.time < 0) throw protocolError('REGISTRATION_MALFORMED', 'registration time must be a non-negative integer of Unix milliseconds');
  const offers = await Promise.all(c.offers.map(sha256));
  const body = encodeDeterministic({ v: 1, url: c.url, models: [...c.models], offers, bundle: await sha256(c.bundle), time: c.time });
  return concat(Uint8Array.of(LABEL.length), LABEL, body);
}

/** Signs a registration with the worker's evidence-bound Ed25519 key. */
export async function signRegistration(c: RegistrationClaims, workerPrivateKey: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, workerPrivateKey, new Uint8Array(await registrationMessage(c))));
}

/** Verifies the signature against the worker key bound in the (separately verified) evidence. Code: REGISTRATION_SIGNATURE. */
export async function verifyRegistration(c: RegistrationClaims, signature: Uint8Array, workerKey: Uint8Array): Promise<void> {
  if (signature.length !== 64 || !(await ed25519Verify(workerKey, signature, await registrationMessage(c)))) {
    throw rejected('REGISTRATION_SIGNATURE', 'the registration is not signed by the key bound in the posted evidence');
  }
}

/** What the enclave's answer to one registration says: the credential it sealed for this worker, for this request. */
export interface RegistrationAnswer {
  readonly workerId: string;
  /** The sealed credential exactly as returned. */
  readonly sealedCredential: Uint8Array;
  /** The worker's signature over the registration it answers. */
  readonly registrationSignature: Uint8Array;
}

async function answerBody(a: RegistrationAnswer): Promise<Uint8Array> {
  return encodeDeterministic({ v: 1, workerId: a.workerId, credential: await sha256(a.sealedCredential), registration: await sha256(a.registrationSignature) });
}

/** Enclave: signs its answer with the receipt key bound in its evidence. */
export async function signRegistrationAnswer(a: RegistrationAnswer, signer: Pick<ReceiptSigner, 'signRecord'>): Promise<Uint8Array> {
  return signer.signRecord('registration', await answerBody(a));
}

/** Worker: verifies the answer against the receipt key of the enclave it attested. Code: REGISTRATION_ANSWER_SIGNATURE. */
export async function verifyRegistrationAnswer(a: RegistrationAnswer, signature: Uint8Array, receiptKey: Uint8Array): Promise<void> {
  if (signature.length !== 64 || !(await ed25519Verify(receiptKey, signature, concat(RECORD_CONTEXTS.registration, await answerBody(a))))) {
    throw rejected('REGISTRATION_ANSWER_SIGNATURE', 'the registration answer is not signed by the attested enclave');
  }
}
