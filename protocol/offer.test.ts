import * as sr25519 from '@scure/sr25519';
import { describe, expect, it } from 'vitest';
import { fromHex, hex } from '../attestation/bytes.ts';
import { expectCode, makeWorker, NOW, NOW_S, offerFor, signedOffer, testIdentity } from '../test/market-fixtures.ts';
import { decodeDeterministic, encodeDeterministic } from './market-cbor.ts';
import { decodeOffer, encodeOffer, signCancel, signOffer, ss58Decode, ss58Encode, verifySignedCancel, verifySignedOffer } from './offer.ts';

describe('SS58 (Substrate address format, prefix 42)', () => {
  it('encodes the well-known //Alice sr25519 key', () => {
    const alice = fromHex('d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d');
    expect(ss58Encode(alice)).toBe('5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY');
    expect(hex(ss58Decode('5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY').publicKey)).toBe(hex(alice));
  });
  it('rejects a checksum error', async () => {
    await expectCode(() => ss58Decode('5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ'), 'SS58_INVALID');
  });
});

describe('offers: canonical encoding and double signature', () => {
  it('encodes deterministically and decodes to the same offer', async () => {
    const w = await makeWorker('w1');
    const o = offerFor(w, { identity: testIdentity('fp8'), terms: { kind: 'postpaid', creditLimit: 50_000_000n, settlementPeriodSeconds: 86_400 } });
    const a = encodeOffer(o);
    expect(encodeOffer(decodeOffer(a))).toEqual(a);
    expect(decodeOffer(a)).toEqual(o);
    // The first key on the wire is the shortest: "v".
    expect(hex(a.subarray(0, 4))).toBe('b1617601');
  });

  it('verifies a genuine offer and returns the digest of the offer bytes', async () => {
    const w = await makeWorker('w1');
    const v = await verifySignedOffer(await signedOffer(w), { workerPublicKey: w.publicKey, hotkey: w.hotkey.address, now: NOW });
    expect(v.offer.pricePerMInput).toBe(500_000n);
    expect(v.digest.length).toBe(32);
  });

  it('forged: a flipped byte in the worker signature → OFFER_SIGNATURE_WORKER', async () => {
    const w = await makeWorker('w1');
    const env = decodeDeterministic(await signedOffer(w)) as { offer: Uint8Array; workerSig: Uint8Array; hotkeySig: Uint8Array };
    env.workerSig[5]! ^= 1;
    await expectCode(verifySignedOffer(encodeDeterministic(env), { workerPublicKey: w.publicKey, now: NOW }), 'OFFER_SIGNATURE_WORKER');
  });

  it('forged: a changed price under the original signatures → OFFER_SIGNATURE_WORKER', async () => {
    const w = await makeWorker('w1');
    const env = decodeDeterministic(await signedOffer(w)) as { offer: Uint8Array; workerSig: Uint8Array; hotkeySig: Uint8Array };
    const cheaper = encodeOffer({ ...decodeOffer(env.offer), pricePerMInput: 1n });
    await expectCode(verifySignedOffer(encodeDeterministic({ ...env, offer: cheaper }), { workerPublicKey: w.publicKey, now: NOW }), 'OFFER_SIGNATURE_WORKER');
  });

  it('re-signed by the worker key alone (hotkey signature from another offer) → OFFER_SIGNATURE_HOTKEY', async () => {
    const w = await makeWorker('w1');
    const original = decodeDeterministic(await signedOffer(w)) as { offer: Uint8Array; workerSig: Uint8Array; hotkeySig: Uint8Array };
    const changed = decodeDeterministic(await signedOffer(w, { pricePerMOutput: 1n })) as { offer: Uint8Array; workerSig: Uint8Array; hotkeySig: Uint8Array };
    await expectCode(verifySignedOffer(encodeDeterministic({ ...changed, hotkeySig: original.hotkeySig }), { workerPublicKey: w.publicKey, now: NOW }), 'OFFER_SIGNATURE_HOTKEY');
  });

  it('re-signed by another hotkey than the registered one → OFFER_HOTKEY_MISMATCH; by another worker key → OFFER_WORKER_KEY_MISMATCH', async () => {
    const w = await makeWorker('w1');
    const thief = await makeWorker('w1', { seed: 99 });
    const stolen = await signOffer(offerFor(thief), thief.privateKey, thief.hotkey.secretKey);
    await expectCode(verifySignedOffer(stolen, { workerPublicKey: w.publicKey, now: NOW }), 'OFFER_WORKER_KEY_MISMATCH');
    const rehot = await signOffer({ ...offerFor(w), hotkey: thief.hotkey.address }, w.privateKey, thief.hotkey.secretKey);
    await expectCode(verifySignedOffer(rehot, { workerPublicKey: w.publicKey, hotkey: w.hotkey.address, now: NOW }), 'OFFER_HOTKEY_MISMATCH');
  });

  it('an sr25519 signature over the wrong context does not verify', async () => {
    const w = await makeWorker('w1');
    const env = decodeDeterministic(await signedOffer(w)) as { offer: Uint8Array; workerSig: Uint8Array; hotkeySig: Uint8Array };
    const bare = sr25519.sign(w.hotkey.secretKey, env.offer);
    await expectCode(verifySignedOffer(encodeDeterministic({ ...env, hotkeySig: bare }), { workerPublicKey: w.publicKey, now: NOW }), 'OFFER_SIGNATURE_HOTKEY');
  });

  it('expired → OFFER_EXPIRED; not yet valid → OFFER_NOT_YET_VALID (validUntil is exclusive)', async () => {
    const w = await makeWorker('w1');
    await expectCode(verifySignedOffer(await signedOffer(w, { validUntil: NOW_S }), { workerPublicKey: w.publicKey, now: NOW }), 'OFFER_EXPIRED');
    await expectCode(verifySignedOffer(await signedOffer(w, { validFrom: NOW_S + 1 }), { workerPublicKey: w.publicKey, now: NOW }), 'OFFER_NOT_YET_VALID');
    await verifySignedOffer(await signedOffer(w, { validUntil: NOW_S + 1 }), { workerPublicKey: w.publicKey, now: NOW });
  });

  it.each([
    ['trailing bytes', (b: Uint8Array) => Uint8Array.of(...b, 0)],
    ['truncated', (b: Uint8Array) => b.subarray(0, b.length - 1)],
    ['an unknown envelope field', (b: Uint8Array) => encodeDeterministic({ ...(decodeDeterministic(b) as object), extra: 1 })],
  ])('malformed (%s) → OFFER_MALFORMED', async (_n, mutate) => {
    const w = await makeWorker('w1');
    await expectCode(verifySignedOffer(mutate(await signedOffer(w)), { workerPublicKey: w.publicKey, now: NOW }), 'OFFER_MALFORMED');
  });

  it('refuses to sign floats, negative or oversized money', async () => {
    const w = await makeWorker('w1');
    await expectCode(signOffer(offerFor(w, { pricePerMInput: -1n }), w.privateKey, w.hotkey.secretKey), 'OFFER_MALFORMED');
    await expectCode(signOffer(offerFor(w, { pricePerMInput: 1n << 60n }), w.privateKey, w.hotkey.secretKey), 'OFFER_MALFORMED');
    await expectCode(signOffer(offerFor(w, { pricePerMInput: 0.5 as unknown as bigint }), w.privateKey, w.hotkey.secretKey), 'OFFER_MALFORMED');
  });

  it('cancels verify with both signatures and name the offer', async () => {
    const w = await makeWorker('w1');
    const c = await signCancel({ v: 1, type: 'cancel', offerId: 'w1-offer', workerId: 'w1', workerKey: w.publicKey, hotkey: w.hotkey.address, sequence: 3, at: NOW_S }, w.privateKey, w.hotkey.secretKey);
    expect((await verifySignedCancel(c, { workerPublicKey: w.publicKey })).sequence).toBe(3);
    const other = await makeWorker('w2');
    await expectCode(verifySignedCancel(c, { workerPublicKey: other.publicKey }), 'OFFER_WORKER_KEY_MISMATCH');
  });
});
