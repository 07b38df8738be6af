/**
 * The enclave's keys (docs/design.md §4): OHTTP key configurations (X25519, HKDF-SHA256, AES-128-GCM and
 * ChaCha20-Poly1305) and the receipt-signing key, generated at start in memory. Nothing here is ever serialized
 * except public parts: there is no export path for the private keys (the receipt key is non-extractable WebCrypto).
 */
import { DEFAULT_SYMMETRIC, encodeKeyConfigs, generateKeyConfig, type GatewayKey } from '../protocol/ohttp.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { generateReceiptKey, type ReceiptSigner } from '../protocol/receipt.ts';

export interface EnclaveKeys {
  readonly gateway: readonly GatewayKey[];
  /** application/ohttp-keys bytes exactly as served at /.well-known/ohttp-gateway and bound in REPORT_DATA. */
  readonly keyConfigs: Uint8Array;
  readonly receipt: ReceiptSigner;
}

export async function generateEnclaveKeys(keyId = randomKeyId()): Promise<EnclaveKeys> {
  // The gateway key lives in node:crypto (the key remembers its backend; docs/protocol.md §10).
  const [g, receipt] = await Promise.all([generateKeyConfig(keyId, DEFAULT_SYMMETRIC, { backend: nodeBackend }), generateReceiptKey()]);
  return { gateway: [g], keyConfigs: encodeKeyConfigs([g.config]), receipt };
}

/** A random key id: a restarted enclave gets a different id, so clients holding the old config re-attest at once. */
export function randomKeyId(): number {
  return crypto.getRandomValues(new Uint8Array(1))[0]!;
}
