/**
 * The worker's offers (docs/design.md §6; protocol/offer.ts): one per served model, signed by the worker key bound in its
 * evidence and by the operator's sr25519 hotkey, re-signed at each registration with a fresh validity window and a
 * time-based, strictly increasing sequence (so a newer registration supersedes the older offer).
 *
 * Withdrawal (docs/market.md "Withdrawing an offer"): `withdraw(keys, model)` stops posting the model's offer and
 * signs a cancel whose sequence is above every version signed so far, so the enclave removes whatever version it
 * holds and refuses any older one that arrives later (a registration already in flight, a replay). `restore`
 * posts it again from the next registration on, at a higher sequence than the cancel.
 *
 * GPUs (protocol/offer.ts `gpus`): an offer states how many GPUs serve it and their model, which the enclave takes
 * only when its verified GPU evidence shows exactly that (OFFER_GPU_MISMATCH). By default the statement is read from
 * the evidence the worker collected for its latest registration (`statingGpus`), the model named as the enclave's
 * verifier names it: the device certificate's issuer CN (NVIDIA's `hwmodel`, e.g. "GH100 A01 GSP BROM").
 */
import type { GpuEvidence } from '../attestation/bundle.ts';
import { commonName, parseCertificate } from '../attestation/x509/cert.ts';
import type { GpuEvidenceSource } from '../enclave/tee/evidence.ts';
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
  /** The GPUs the offers state, read at each signing (undefined: none stated). */
  readonly gpus?: () => GpuStatement | undefined;
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

/** The GPUs an offer states (protocol/offer.ts: count 1..64, model 1..64 characters). */
export interface GpuStatement {
  readonly count: number;
  readonly model: string;
}

/**
 * What an offer states about the GPUs of collected evidence: their number and their model, the issuer CN of each
 * device certificate (the enclave's verifier reads the same name from the verified chain). Undefined when a GPU's
 * chain names no model, the GPUs are of different models (an offer states one), or the statement would be out of
 * range: then the offers state nothing rather than something the enclave would refuse.
 */
export function gpusOfEvidence(gpus: readonly GpuEvidence[]): GpuStatement | undefined {
  if (gpus.length < 1 || gpus.length > 64) return undefined;
  let model: string | undefined;
  for (const g of gpus) {
    const leaf = g.certs[0];
    if (!leaf) return undefined;
    let name: string | undefined;
    try {
      name = commonName(parseCertificate(leaf).issuer);
    } catch {
      return undefined;
    }
    if (name === undefined || name.length < 1 || name.length > 64 || (model !== undefined && name !== model)) return undefined;
    model = name;
  }
  return model === undefined ? undefined : { count: gpus.length, model };
}

/** The GPU source, recording each collection's statement: offers signed after a registration state what it showed. */
export function statingGpus(source: GpuEvidenceSource): { readonly source: GpuEvidenceSource; readonly stated: () => GpuStatement | undefined } {
  let last: GpuStatement | undefined;
  return {
    source: async (nonce) => {
      const gpus = await source(nonce);
      last = gpusOfEvidence(gpus);
      return gpus;
    },
    stated: () => last,
  };
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
        const gpus = t.gpus?.();
        return signOffer(
          {
            v: 1, offerId: offerIdFor(k.workerId, model), sequence, workerId: k.workerId, workerKey: k.signing.publicKey, hotkey: hotkey.address, model, ...(identity ? { identity } : {}), ...(gpus ? { gpus } : {}),
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
