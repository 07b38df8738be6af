import { describe, expect, it } from 'vitest';
import { computeCharge, verifyReceipt, ZERO_HASH } from '../../protocol/receipt.ts';
import { expectCode } from '../../test/market-fixtures.ts';
import { generateEnclaveReceiptKey } from './signer.ts';

describe('enclave receipt key (node:crypto Ed25519)', () => {
  it('signs receipts that the runtime-agnostic WebCrypto verifier accepts under its raw public key', async () => {
    const k = generateEnclaveReceiptKey();
    expect(k.publicKey.length).toBe(32);
    const s = await k.sign({
      seq: 1, prev: ZERO_HASH, requestId: 'r', time: 1, model: 'm', account: 'acct_x', workerId: 'w', workerKey: new Uint8Array(32), evidenceDigest: new Uint8Array(32),
      offerId: 'o', offerDigest: new Uint8Array(32), inputTokens: 3, outputTokens: 4, currency: 'USD', pricePerMInput: 10n, pricePerMOutput: 20n, feeBasisPoints: 0,
      ...computeCharge({ pricePerMInput: 10n, pricePerMOutput: 20n }, 0, 3, 4), terms: { kind: 'prepaid' }, sim: false,
    });
    expect((await verifyReceipt(s.signed, k.publicKey)).receipt.receiptKey).toEqual(k.publicKey);
    await expectCode(verifyReceipt(s.signed, generateEnclaveReceiptKey().publicKey), 'RECEIPT_KEY_MISMATCH');
  });
});
