/**
 * The enclave's receipt key on node:crypto (docs/design.md §4: generated in memory at start, never written anywhere).
 * Same Ed25519 keys and signatures as protocol/receipt.ts's WebCrypto `generateReceiptKey`, but signing is
 * synchronous: Node runs every WebCrypto call as a thread-pool job, which costs ~1 ms of latency per receipt on a
 * busy host, and settles are serialised to keep the chain, so that latency would cap the ledger's throughput.
 * The private KeyObject stays inside the closure; nothing exports it.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { receiptSignerFrom, type ReceiptSigner } from '../../protocol/receipt.ts';

export function generateEnclaveReceiptKey(): ReceiptSigner {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  // SPKI for Ed25519 is a fixed 12-byte prefix followed by the raw 32-byte key (RFC 8410 §4).
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const raw = new Uint8Array(spki.subarray(spki.length - 32));
  return receiptSignerFrom(raw, (msg) => new Uint8Array(sign(null, msg, privateKey)));
}

/** PKCS#8 for Ed25519 is a fixed 16-byte prefix followed by the 32-byte seed (RFC 8410 §7). */
const PKCS8_ED25519 = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

/** A signer for the operator's credit key (account openings and deposits), from its 32-byte Ed25519 seed. */
export function signerFromSeed(seed: Uint8Array): ReceiptSigner {
  const der = new Uint8Array(PKCS8_ED25519.length + 32);
  der.set(PKCS8_ED25519);
  der.set(seed, PKCS8_ED25519.length);
  const privateKey = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return receiptSignerFrom(new Uint8Array(spki.subarray(spki.length - 32)), (msg) => new Uint8Array(sign(null, msg, privateKey)));
}
