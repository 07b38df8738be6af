/**
 * The enclave's keys (docs/design.md §4): two OHTTP key configurations, X-Wing (MLKEM768-X25519, draft-ietf-hpke-pq-05)
 * first and DHKEM(X25519) second, each with HKDF-SHA256 and AES-128-GCM then ChaCha20-Poly1305 (docs/protocol.md
 * §5), and the receipt-signing key, generated at start in memory. Workers use the same pair (worker/app.ts).
 * Nothing here is ever serialized except public parts: there is no export path for the private keys (the receipt key is
 * a node:crypto KeyObject held in a closure, enclave/ledger/signer.ts: synchronous signing, off the thread pool).
 */
import { KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256 } from '../protocol/hpke.ts';
import { DEFAULT_SYMMETRIC, encodeKeyConfigs, generateKeyConfig, type GatewayKey } from '../protocol/ohttp.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import type { ReceiptSigner } from '../protocol/receipt.ts';
import { generateEnclaveReceiptKey } from './ledger/signer.ts';

export interface EnclaveKeys {
  readonly gateway: readonly GatewayKey[];
  /** application/ohttp-keys bytes exactly as served at /.well-known/ohttp-gateway and bound in REPORT_DATA. */
  readonly keyConfigs: Uint8Array;
  readonly receipt: ReceiptSigner;
}

export async function generateEnclaveKeys(keyId?: number, kems: readonly number[] = GATEWAY_KEMS): Promise<EnclaveKeys> {
  const g = await generateGatewayKeys([], keyId, kems);
  return { ...g, receipt: generateEnclaveReceiptKey() };
}

/** The KEMs of the served configurations, in list order: X-Wing, then X25519 for clients without it. */
export const GATEWAY_KEMS: readonly number[] = [KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256];

/** One rotation period's gateway keys and the application/ohttp-keys bytes that list them. */
export interface GatewayKeySet {
  /** X-Wing first, X25519 second: the order of the served list (clients prefer X-Wing whatever the order). */
  readonly gateway: readonly GatewayKey[];
  readonly keyConfigs: Uint8Array;
}

/**
 * Fresh keys for `kems` (default GATEWAY_KEMS: an X-Wing + X25519 pair) with distinct random key ids, none of them
 * in `avoid` (the ids still accepted, so a request names exactly one key). `firstId`, if given, is the first
 * configuration's id. The private keys live in node:crypto and this process (the key remembers its backend;
 * docs/protocol.md §10). Another KEM set is for benchmarks and tests (an X25519-only baseline).
 */
export async function generateGatewayKeys(avoid: readonly number[] = [], firstId?: number, kems: readonly number[] = GATEWAY_KEMS): Promise<GatewayKeySet> {
  const ids: number[] = firstId === undefined ? [] : [firstId];
  while (ids.length < kems.length) {
    const id = randomKeyId();
    if (!avoid.includes(id) && !ids.includes(id)) ids.push(id);
  }
  const gateway = await Promise.all(kems.map((kemId, i) => generateKeyConfig(ids[i]!, DEFAULT_SYMMETRIC, { backend: nodeBackend, kemId })));
  return { gateway, keyConfigs: encodeKeyConfigs(gateway.map((g) => g.config)) };
}

/** A random key id: a restarted enclave gets a different id, so clients holding the old config re-attest at once. */
export function randomKeyId(): number {
  return crypto.getRandomValues(new Uint8Array(1))[0]!;
}
