/**
 * The worker's offers (docs/design.md §6; protocol/offer.ts): one per served model, signed by the worker key bound in its
 * evidence and by the operator's sr25519 hotkey, re-signed at each registration with a fresh validity window and a
 * time-based, strictly increasing sequence (so a newer registration supersedes the older offer).
 *
 * Withdrawal (docs/market.md "Withdrawing an offer"): `withdraw(keys, model)` stops posting the model's offer and
 * signs a cancel whose sequence is above every version signed so far, so the enclave removes whatever version it
 * holds and refuses any older one that arrives later (a registration already in flight, a replay). `restore`
 * posts it again from the next registration on, at a higher sequence than the cancel.
 */
import type { ModelIdentity } from '../protocol/model-identity.ts';
import type { PaymentTerms } from '../protocol/offer.ts';
import { hotkeyFromSeed, signCancel, signOffer } from '../protocol/offer.ts';
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
  /** The identity each model's offer states (the same the agent puts in its evidence's model manifest). */
  readonly identity?: (model: string) => ModelIdentity | undefined;
  /** Unix milliseconds (tests). */
  readonly now?: () => number;
}

export interface SignedCancel {
  readonly offerId: string;
  readonly sequence: number;
  /** The signed cancel envelope (protocol/offer.ts signCancel). */
  readonly bytes: Uint8Array;
}

export interface OfferSigner {
  /** Signs one offer per model not withdrawn. */
  (keys: WorkerKeys, models: readonly string[]): Promise<Uint8Array[]>;
  /** Stops posting the model's offer and signs a cancel covering every version signed so far. */
  withdraw(keys: WorkerKeys, model: string): Promise<SignedCancel>;
  /** Posts the model's offer again from the next signing on. */
  restore(model: string): void;
  readonly withdrawn: ReadonlySet<string>;
}

/** The offer id the worker uses for a model (stable across re-signing, so a newer sequence replaces the older). */
export const offerIdFor = (workerId: string, model: string): string => `${workerId}-${model}`.slice(0, 200);

export function offerSigner(t: OfferTerms): OfferSigner {
  const hotkey = hotkeyFromSeed(t.hotkeySeed);
  const clock = t.now ?? Date.now;
  const withdrawn = new Set<string>();
  // Strictly increasing, and at least the unix second: every signing (offers or cancel) gets a new sequence.
  let last = 0;
  const nextSequence = (): number => (last = Math.max(Math.floor(clock() / 1000), last + 1));
  const sign = async (k: WorkerKeys, models: readonly string[]): Promise<Uint8Array[]> => {
    const now = Math.floor(clock() / 1000);
    const sequence = nextSequence();
    return Promise.all(
      models.filter((m) => !withdrawn.has(m)).map((model) => {
        const identity = t.identity?.(model);
        return signOffer(
          {
            v: 1, offerId: offerIdFor(k.workerId, model), sequence, workerId: k.workerId, workerKey: k.signing.publicKey, hotkey: hotkey.address, model, ...(identity ? { identity } : {}),
            currency: t.currency, pricePerMInput: t.pricePerMInput, pricePerMOutput: t.pricePerMOutput, terms: t.terms, capacity: t.capacity,
            ttftMs: t.ttftMs, tokensPerSecond: t.tokensPerSecond, validFrom: now - 60, validUntil: now + (t.validitySeconds ?? 24 * 3600),
          },
          k.signing.privateKey,
          hotkey.secretKey,
        );
      }),
    );
  };
  return Object.assign(sign, {
    async withdraw(k: WorkerKeys, model: string): Promise<SignedCancel> {
      withdrawn.add(model);
      const offerId = offerIdFor(k.workerId, model);
      const sequence = nextSequence();
      const bytes = await signCancel(
        { v: 1, type: 'cancel', offerId, workerId: k.workerId, workerKey: k.signing.publicKey, hotkey: hotkey.address, sequence, at: Math.floor(clock() / 1000) },
        k.signing.privateKey,
        hotkey.secretKey,
      );
      return { offerId, sequence, bytes };
    },
    restore(model: string): void {
      withdrawn.delete(model);
    },
    withdrawn: withdrawn as ReadonlySet<string>,
  });
}
