/**
 * The worker's offers (DESIGN.md §6; protocol/offer.ts): one per served model, signed by the worker key bound in its
 * evidence and by the operator's sr25519 hotkey, re-signed at each registration with a fresh validity window and a
 * time-based sequence (so a newer registration supersedes the older offer).
 */
import type { PaymentTerms } from '../protocol/offer.ts';
import { hotkeyFromSeed, signOffer } from '../protocol/offer.ts';
import type { WorkerKeys } from './app.ts';

export interface OfferTerms {
  readonly currency: string;
  /** Micro-units per million input / output tokens. */
  readonly pricePerMInput: bigint;
  readonly pricePerMOutput: bigint;
  readonly terms: PaymentTerms;
  readonly capacity: number;
  readonly ttftMs: number;
  readonly tokensPerSecond: number;
  /** 32-byte sr25519 mini-secret of the operator's hotkey. */
  readonly hotkeySeed: Uint8Array;
  readonly validitySeconds?: number;
}

export function offerSigner(t: OfferTerms): (keys: WorkerKeys, models: readonly string[]) => Promise<Uint8Array[]> {
  const hotkey = hotkeyFromSeed(t.hotkeySeed);
  return async (k, models) => {
    const now = Math.floor(Date.now() / 1000);
    return Promise.all(
      models.map((model) =>
        signOffer(
          {
            v: 1, offerId: `${k.workerId}-${model}`.slice(0, 200), sequence: now, workerId: k.workerId, workerKey: k.signing.publicKey, hotkey: hotkey.address, model,
            currency: t.currency, pricePerMInput: t.pricePerMInput, pricePerMOutput: t.pricePerMOutput, terms: t.terms, capacity: t.capacity,
            ttftMs: t.ttftMs, tokensPerSecond: t.tokensPerSecond, validFrom: now - 60, validUntil: now + (t.validitySeconds ?? 24 * 3600),
          },
          k.signing.privateKey,
          hotkey.secretKey,
        ),
      ),
    );
  };
}
