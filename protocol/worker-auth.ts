/**
 * Enclave → worker request authentication (docs/protocol.md §12.2). A worker's gateway key is public (it is in its
 * evidence), so anyone could encapsulate a request to it and use the worker without the enclave, its ledger or its
 * receipts. The worker therefore serves only requests carrying a MAC under a credential an enclave gave it.
 *
 * Credential: 32 random bytes per (enclave, worker), made by the enclave at the worker's first registration and
 * returned in each registration answer sealed to the worker's attested OHTTP key configuration, in the layout of an
 * RFC 9458 §4.3 request under its own label, so only the attested worker can open it:
 *
 *   sealed = hdr(keyId, kem, kdf, aead) || enc || Seal(aad = u8(len(workerId)) || workerId, credential)
 *   info   = "gm/v1 worker-credential" || 0x00 || hdr
 *
 * Each request to the worker's gateway carries
 *
 *   gm-worker-auth: v1 <kid> <mac>
 *   kid = hex(SHA-256("gm/v1 worker-credential-id" || credential)[0..8])
 *   mac = hex(HMAC-SHA256(credential, u8(len(label)) || "gm/v1 worker-request" || u8(len(type)) || type || body))
 *
 * over the whole encapsulated body: a MAC seen on the wire authorizes that body only, whose encapsulated key the
 * worker's replay guard accepts once, so it cannot carry another request. Runtime-agnostic: the HMAC is the HPKE
 * backend's (protocol/backend.ts; node:crypto on the servers), the rest WebCrypto.
 */
import { concat, fromHex, hex } from '../attestation/bytes.ts';
import { protocolError, rejected } from '../attestation/errors.ts';
import { defaultBackend, type CryptoBackend } from './backend.ts';
import { setupBaseR, setupBaseS } from './hpke.ts';
import { type GatewayKey, type KeyConfig, parseRequestHeader, requestHeader, requestInfo, selectSuite } from './ohttp.ts';

export const WORKER_AUTH_HEADER = 'gm-worker-auth';
export const CREDENTIAL_LENGTH = 32;
const LABEL_CREDENTIAL = 'gm/v1 worker-credential';
const te = new TextEncoder();
const LABEL_ID = te.encode('gm/v1 worker-credential-id');
const LABEL_REQUEST = te.encode('gm/v1 worker-request');

const own = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b);
const lengthPrefixed = (b: Uint8Array): Uint8Array => {
  if (b.length > 255) throw protocolError('WORKER_AUTH_MALFORMED', 'field longer than 255 bytes');
  return concat(Uint8Array.of(b.length), b);
};

/** A fresh credential (the enclave makes one per worker). */
export function newCredential(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(CREDENTIAL_LENGTH));
}

/** The credential's public id (names it in the header without revealing it). */
export async function credentialId(credential: Uint8Array): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', own(concat(LABEL_ID, credential)))).subarray(0, 8));
}

/** Enclave: seals the credential to the worker's attested key configuration. */
export async function sealCredential(config: KeyConfig, workerId: string, credential: Uint8Array, backend: CryptoBackend = defaultBackend()): Promise<Uint8Array> {
  if (credential.length !== CREDENTIAL_LENGTH) throw protocolError('WORKER_AUTH_MALFORMED', 'credential must be 32 bytes');
  const suite = selectSuite(config);
  const hdr = requestHeader(config.keyId, suite);
  const { enc, context } = await setupBaseS(suite, config.publicKey, requestInfo(LABEL_CREDENTIAL, hdr), { backend });
  return concat(hdr, enc, await context.seal(lengthPrefixed(te.encode(workerId)), credential));
}

/** Worker: opens a sealed credential with one of its gateway keys. Code: WORKER_CREDENTIAL_INVALID. */
export async function openCredential(keys: readonly GatewayKey[], workerId: string, sealed: Uint8Array, backend: CryptoBackend = defaultBackend()): Promise<Uint8Array> {
  try {
    const h = parseRequestHeader(keys, sealed);
    const ctx = await setupBaseR(h.suite, h.enc, h.key.privateKey, requestInfo(LABEL_CREDENTIAL, h.hdr), { backend });
    const credential = await ctx.open(lengthPrefixed(te.encode(workerId)), h.rest);
    if (credential.length !== CREDENTIAL_LENGTH) throw new Error('length');
    return credential;
  } catch (e) {
    throw rejected('WORKER_CREDENTIAL_INVALID', 'the credential is not sealed to this worker', { cause: e });
  }
}

const macInput = (contentType: string, body: Uint8Array): Uint8Array => concat(lengthPrefixed(LABEL_REQUEST), lengthPrefixed(te.encode(contentType)), body);

/** HMAC-SHA256 of a request under a credential (the backend's synchronous HMAC: node:crypto on servers). */
export function requestMac(credential: Uint8Array, contentType: string, body: Uint8Array, backend: CryptoBackend = defaultBackend()): Uint8Array {
  return backend.hmacSha256(credential, macInput(contentType, body));
}

/** Enclave: the header value for each request body under one credential (its id derived once). */
export async function requestAuthorizer(credential: Uint8Array, backend: CryptoBackend = defaultBackend()): Promise<(contentType: string, body: Uint8Array) => string> {
  const kid = await credentialId(credential);
  return (contentType, body) => `v1 ${kid} ${hex(requestMac(credential, contentType, body, backend))}`;
}

/** Enclave: the header value for one request body. */
export async function authorizationFor(credential: Uint8Array, contentType: string, body: Uint8Array): Promise<string> {
  return (await requestAuthorizer(credential))(contentType, body);
}

/** The credentials a worker accepts, by id (each enclave it registered with holds one). */
export interface CredentialStore {
  get(kid: string): Uint8Array | undefined;
}

/** Worker: a store entry for a credential. */
export async function verifierFor(credential: Uint8Array): Promise<{ kid: string; credential: Uint8Array }> {
  return { kid: await credentialId(credential), credential };
}

/** Compares in time independent of where the inputs differ (a MAC check must not say how much of a guess was right). */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/**
 * Worker: checks the header before the body is read (present, well formed, a credential it holds) and returns the
 * check of the body's MAC. Codes: WORKER_AUTH_REQUIRED (no header), WORKER_AUTH_FAILED (any other failure).
 */
export function beginAuthentication(header: string | null | undefined, store: CredentialStore, backend: CryptoBackend = defaultBackend()): (contentType: string, body: Uint8Array) => Promise<void> {
  if (header === null || header === undefined) throw rejected('WORKER_AUTH_REQUIRED', 'this worker serves only the enclaves it registered with');
  const m = /^v1 ([0-9a-f]{16}) ([0-9a-f]{64})$/.exec(header);
  const credential = m ? store.get(m[1]!) : undefined;
  if (!m || !credential) throw rejected('WORKER_AUTH_FAILED', 'request not authorized by an enclave this worker registered with');
  const mac = fromHex(m[2]!);
  return async (contentType, body) => {
    if (!constantTimeEqual(requestMac(credential, contentType, body, backend), mac)) {
      throw rejected('WORKER_AUTH_FAILED', 'request not authorized by an enclave this worker registered with');
    }
  };
}
