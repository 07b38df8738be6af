/**
 * Model identity (docs/market.md "Model identity"; docs/protocol.md §12.4): what exactly a worker serves under a model
 * id, stated once in its evidence and repeated in each offer, so a request can ask for a quantization or for given
 * weights and the receipt can name what served it.
 *
 * One identity is the deterministic CBOR map (protocol/market-cbor.ts, RFC 8949 §4.2.1):
 *
 *   weightsDigest  bytes 32   SHA-256 manifest digest of the weight files, or a dm-verity root hash of their volume
 *   quantization   text       lower case [a-z0-9_-]{1,16}, OpenRouter's names: int4 int8 fp4 fp6 fp8 fp16 bf16 fp32 ...
 *   engine         text       1..64 printable ASCII, e.g. "vllm"
 *   engineVersion  text       1..64 printable ASCII, e.g. "0.6.3"
 *   contextLength  uint       tokens, 1..2^32-1
 *   parameters     [text]     the request parameters the deployment honours (PARAMETERS), sorted, no duplicates
 *
 * The worker's manifest, carried in its evidence bundle (`models`, worker bundles only) and bound in its REPORT_DATA
 * (protocol/binding.ts), is {v: 1, models: [{model: text, identity: map}]} sorted by model id, one entry per model.
 * An offer that carries an identity must carry exactly the manifest's entry for its model (byte-equal encodings);
 * the enclave refuses it otherwise (OFFER_IDENTITY_UNATTESTED). Runtime-agnostic: Uint8Array only.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { equalBytes } from '../attestation/bytes.ts';
import { protocolError } from '../attestation/errors.ts';
import { asMap, type CborMap, type CborValue, decodeDeterministic, encodeDeterministic, fBytes, fText, fUint, onlyKeys } from './market-cbor.ts';

export interface ModelIdentity {
  readonly weightsDigest: Uint8Array;
  readonly quantization: string;
  readonly engine: string;
  readonly engineVersion: string;
  readonly contextLength: number;
  /** Sorted, unique members of PARAMETERS. */
  readonly parameters: readonly string[];
}

export interface ModelManifestEntry {
  readonly model: string;
  readonly identity: ModelIdentity;
}

/**
 * The request parameters an offer can declare (OpenRouter's `supported_parameters` vocabulary, minus those every
 * OpenAI-compatible server takes such as max_tokens). `provider.require_parameters` checks exactly these.
 */
export const PARAMETERS = [
  'frequency_penalty', 'include_reasoning', 'logit_bias', 'logprobs', 'min_p', 'parallel_tool_calls', 'presence_penalty', 'reasoning', 'repetition_penalty',
  'response_format', 'seed', 'stop', 'structured_outputs', 'temperature', 'tool_choice', 'tools', 'top_k', 'top_logprobs', 'top_p',
] as const;
export type Parameter = (typeof PARAMETERS)[number];
const PARAM_BIT: ReadonlyMap<string, number> = new Map(PARAMETERS.map((p, i) => [p, 1 << i]));

const QUANT_RE = /^[a-z0-9_-]{1,16}$/;
const TEXT_RE = /^[\x21-\x7e]{1,64}$/;
const MODEL_MAX = 256;
const MAX_MODELS = 64;
const M = 'MODEL_IDENTITY_MALFORMED';

/** The bitmask of a parameter list (bit i = PARAMETERS[i]); unknown names have no bit. */
export function parameterMask(names: Iterable<string>): number {
  let m = 0;
  for (const n of names) m |= PARAM_BIT.get(n) ?? 0;
  return m;
}

/** Checks ranges (shared by encode and decode so both sides agree). */
export function checkIdentity(i: ModelIdentity, code = M): ModelIdentity {
  const bad = (why: string): never => {
    throw protocolError(code, `model identity ${why}`);
  };
  if (!(i.weightsDigest instanceof Uint8Array) || i.weightsDigest.length !== 32) bad('weightsDigest must be 32 bytes');
  if (!QUANT_RE.test(i.quantization)) bad('quantization must be 1..16 of [a-z0-9_-]');
  if (!TEXT_RE.test(i.engine) || !TEXT_RE.test(i.engineVersion)) bad('engine and engineVersion must be 1..64 printable ASCII characters');
  if (!Number.isSafeInteger(i.contextLength) || i.contextLength < 1 || i.contextLength > 0xffffffff) bad('contextLength must be 1..2^32-1 tokens');
  for (let k = 0; k < i.parameters.length; k++) {
    const p = i.parameters[k]!;
    if (!PARAM_BIT.has(p)) bad(`parameter "${p.slice(0, 32)}" is not one of ${PARAMETERS.join(', ')}`);
    if (k > 0 && i.parameters[k - 1]! >= p) bad('parameters must be sorted and unique');
  }
  return i;
}

export function identityToCbor(i: ModelIdentity): CborMap {
  checkIdentity(i);
  return { weightsDigest: i.weightsDigest, quantization: i.quantization, engine: i.engine, engineVersion: i.engineVersion, contextLength: i.contextLength, parameters: [...i.parameters] };
}

export function identityFromCbor(v: CborValue | undefined, code = M): ModelIdentity {
  const m = asMap(v, code, 'model identity');
  onlyKeys(m, ['weightsDigest', 'quantization', 'engine', 'engineVersion', 'contextLength', 'parameters'], code, 'model identity');
  const ps = m.parameters;
  if (!Array.isArray(ps) || ps.length > PARAMETERS.length || !ps.every((p) => typeof p === 'string')) throw protocolError(code, 'model identity parameters must be a list of text');
  return checkIdentity(
    {
      weightsDigest: fBytes(m, 'weightsDigest', code, 32),
      quantization: fText(m, 'quantization', code, 16),
      engine: fText(m, 'engine', code, 64),
      engineVersion: fText(m, 'engineVersion', code, 64),
      contextLength: fUint(m, 'contextLength', code),
      parameters: ps as string[],
    },
    code,
  );
}

/** An identity with its parameters sorted and de-duplicated (what callers building one from flags want). */
export function normalizeIdentity(i: ModelIdentity): ModelIdentity {
  return checkIdentity({ ...i, parameters: [...new Set(i.parameters)].sort() });
}

/** The manifest bytes a worker carries in its bundle and binds in REPORT_DATA. */
export function encodeManifest(entries: readonly ModelManifestEntry[]): Uint8Array {
  if (entries.length === 0 || entries.length > MAX_MODELS) throw protocolError(M, `model manifest must list 1..${MAX_MODELS} models`);
  const sorted = [...entries].sort((a, b) => (a.model < b.model ? -1 : a.model > b.model ? 1 : 0));
  for (let k = 0; k < sorted.length; k++) {
    const e = sorted[k]!;
    if (e.model.length < 1 || e.model.length > MODEL_MAX) throw protocolError(M, 'model manifest model ids must be 1..256 characters');
    if (k > 0 && sorted[k - 1]!.model === e.model) throw protocolError(M, `model manifest lists "${e.model.slice(0, 64)}" twice`);
  }
  return encodeDeterministic({ v: 1, models: sorted.map((e) => ({ model: e.model, identity: identityToCbor(e.identity) })) });
}

/** Strictly decodes a manifest: exactly the canonical encoding of a sorted, duplicate-free list (MODEL_IDENTITY_MALFORMED). */
export function decodeManifest(bytes: Uint8Array): Map<string, ModelIdentity> {
  let v: CborValue;
  try {
    v = decodeDeterministic(bytes);
  } catch (e) {
    throw protocolError(M, `model manifest is not deterministic CBOR: ${(e as Error).message}`, { cause: e });
  }
  const m = asMap(v, M, 'model manifest');
  onlyKeys(m, ['v', 'models'], M, 'model manifest');
  if (m.v !== 1) throw protocolError(M, 'model manifest version must be 1');
  const list = m.models;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_MODELS) throw protocolError(M, `model manifest must list 1..${MAX_MODELS} models`);
  const out = new Map<string, ModelIdentity>();
  let prev: string | undefined;
  for (const x of list as CborValue[]) {
    const e = asMap(x, M, 'model manifest entry');
    onlyKeys(e, ['model', 'identity'], M, 'model manifest entry');
    const model = fText(e, 'model', M, MODEL_MAX);
    if (prev !== undefined && prev >= model) throw protocolError(M, 'model manifest entries must be sorted by model id, without duplicates');
    prev = model;
    out.set(model, identityFromCbor(e.identity));
  }
  return out;
}

/** SHA-256 of the manifest bytes: what REPORT_DATA binds. */
export const manifestDigest = (bytes: Uint8Array): Uint8Array => sha256(bytes);

/** Byte-equal identities (the encodings are canonical, so this is field-by-field equality). */
export function sameIdentity(a: ModelIdentity, b: ModelIdentity): boolean {
  return equalBytes(encodeDeterministic(identityToCbor(a)), encodeDeterministic(identityToCbor(b)));
}

/** "engine/version", as receipts and listings show it. */
export const engineLabel = (i: ModelIdentity): string => `${i.engine}/${i.engineVersion}`;
