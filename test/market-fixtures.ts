/**
 * Test fixtures for the market: workers with a real Ed25519 offer key and sr25519 hotkey, signed offers with
 * per-field overrides (the fake-signer-with-overrides pattern of CONTRIBUTING.md, convention 8), and a fixed clock.
 */
import { sha256 } from '../attestation/bytes.ts';
import type { WorkerInfo } from '../enclave/market/book.ts';
import type { ModelIdentity } from '../protocol/model-identity.ts';
import { generateWorkerKey, type Hotkey, hotkeyFromSeed, type Offer, signOffer, verifySignedOffer, type VerifiedOffer } from '../protocol/offer.ts';

/** 2026-01-01T00:00:00Z: every test runs on this clock unless it moves it. */
export const NOW = Date.UTC(2026, 0, 1);
export const NOW_S = NOW / 1000;

export interface TestWorker {
  readonly id: string;
  readonly publicKey: Uint8Array;
  readonly privateKey: CryptoKey;
  readonly hotkey: Hotkey;
  readonly info: WorkerInfo;
}

export async function makeWorker(id: string, opts: { seed?: number; verifiedUntil?: number; sim?: boolean } = {}): Promise<TestWorker> {
  const k = await generateWorkerKey();
  const hotkey = hotkeyFromSeed(new Uint8Array(32).fill(opts.seed ?? id.length + 1));
  const evidenceDigest = await sha256(new TextEncoder().encode(`evidence of ${id}`));
  return {
    id,
    publicKey: k.publicKey,
    privateKey: k.privateKey,
    hotkey,
    info: { workerId: id, workerKey: k.publicKey, evidenceDigest, verifiedUntil: opts.verifiedUntil ?? NOW + 3_600_000, sim: opts.sim ?? true },
  };
}

/** A model identity for tests: the weights digest is a fixed byte per quantization, so two quantizations differ. */
export function testIdentity(quantization: string, over: Partial<ModelIdentity> = {}): ModelIdentity {
  return { weightsDigest: new Uint8Array(32).fill(quantization.length * 16 + quantization.charCodeAt(quantization.length - 1) % 16), quantization, engine: 'vllm', engineVersion: '0.6.3', contextLength: 32_768, parameters: ['response_format', 'tools'], ...over };
}

export function offerFor(w: TestWorker, over: Partial<Offer> = {}): Offer {
  return {
    v: 1,
    offerId: `${w.id}-offer`,
    sequence: 1,
    workerId: w.id,
    workerKey: w.publicKey,
    hotkey: w.hotkey.address,
    model: 'dev-model',
    currency: 'USD',
    pricePerMInput: 500_000n,
    pricePerMOutput: 1_500_000n,
    terms: { kind: 'per-request' },
    capacity: 4,
    ttftMs: 200,
    tokensPerSecond: 50,
    validFrom: NOW_S - 60,
    validUntil: NOW_S + 3600,
    ...over,
  };
}

export async function signedOffer(w: TestWorker, over: Partial<Offer> = {}): Promise<Uint8Array> {
  return signOffer(offerFor(w, over), w.privateKey, w.hotkey.secretKey);
}

export async function verifiedOffer(w: TestWorker, over: Partial<Offer> = {}): Promise<VerifiedOffer> {
  return verifySignedOffer(await signedOffer(w, over), { workerPublicKey: w.publicKey, now: NOW });
}

/** A VerifiedOffer built without signatures, for property tests that insert thousands (book.insert trusts it). */
export function unsignedVerified(offer: Offer, n: number): VerifiedOffer {
  const digest = new Uint8Array(32);
  new DataView(digest.buffer).setUint32(0, n);
  return { offer, signed: new Uint8Array(0), digest };
}

export async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    const got = (e as { code?: string }).code;
    if (got !== code) throw new Error(`expected ${code}, got ${got ?? String(e)}`, { cause: e });
    return;
  }
  throw new Error(`expected ${code}, but it succeeded`);
}
