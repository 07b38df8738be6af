/**
 * The enclave's receipt key on node:crypto (docs/design.md §4: generated in memory at start, never written anywhere).
 * Same Ed25519 keys and signatures as protocol/receipt.ts's WebCrypto `generateReceiptKey`, but signing is
 * synchronous: Node runs every WebCrypto call as a thread-pool job, which costs ~1 ms of latency per receipt on a
 * busy host, and settles are serialised to keep the chain, so that latency would cap the ledger's throughput.
 * The private KeyObject stays inside the closure; nothing exports it.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { receiptSignerFrom, type ReceiptSigner } from '../../protocol/receipt.ts';

export function generateEnclaveReceiptKey(): ReceiptSigner {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  // SPKI for Ed25519 is a fixed 12-byte prefix followed by the raw 32-byte key (RFC 8410 §4).
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const raw = new Uint8Array(spki.subarray(spki.length - 32));
  return receiptSignerFrom(raw, (msg) => new Uint8Array(sign(null, msg, privateKey)));
}
