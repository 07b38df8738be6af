/**
 * Route constraints parsed from the decrypted request body (docs/design.md §5 "Route preferences travel inside the
 * encrypted request", §6). Field names follow OpenRouter's provider routing where they exist:
 *
 *   provider: { sort: "price"|"latency"|"throughput", max_price: { prompt, completion, currency? },
 *               order: [slug], only: [slug], ignore: [slug], allow_fallbacks: bool (default true),
 *               quantizations: ["fp8", ...], require_parameters: bool,
 *               weights_digests: ["<64 hex>", ...] (gm: only offers whose attested weights digest is listed) }
 *   payment:  { terms: ["prepaid"|"postpaid"|"per-request", ...], currency?: "USD" }   (gm)
 *   model + models: a model id, or a pool alias; `models` (<= 20 ids) is the request's own pool
 *     "default"            the pool in order (failover down the list)
 *     "default:latency"    lowest live TTFT across the pool
 *     "default:throughput" highest live tokens/s across the pool
 *     any other id with `models`: that model first, then `models` in order (OpenRouter's fallback list)
 *   Configured aliases (`gm enclave --pools FILE`) work the same way: "alias", "alias:latency", "alias:throughput";
 *   a configured pool named "default" is used when the request brings no `models`.
 *   OpenRouter's variants on any model or pool: "<id>:floor" (cheapest offer first: sort price), "<id>:nitro"
 *   (highest throughput first: sort throughput).
 *
 * A provider slug matches an offer's workerId or its operator hotkey (SS58). max_price is a decimal number (or
 * string) of currency units per million tokens, as OpenRouter takes it, converted exactly from its decimal text to
 * the currency's integer settlement units (micro-units, or rao for TAO; digits beyond them are dropped, which only
 * ever lowers the ceiling). It is
 * compared with the quoted price (offer price plus the routing fee). Token estimates come from the UTF-8 size of
 * the text fields: expected input tokens = ceil(bytes / 4) for ordering by price; the input upper bound for
 * authorising a debit = bytes + 16 + 8 per chat message (template tokens), where tool and function definitions
 * and a response schema count as their JSON text; output = (max_completion_tokens | max_tokens, else the configured
 * default) × n. The gateway writes the per-choice bound and n into the forwarded request.
 * Nothing here logs or returns request text: errors name fields only (ROUTE_CONSTRAINT_INVALID).
 */
import { currencyDecimals } from '../../protocol/offer-terms.ts';
import { protocolError } from '../../attestation/errors.ts';
import { PARAMETERS, parameterMask } from '../../protocol/model-identity.ts';
import { TERMS_KINDS, type TermsKind } from '../../protocol/offer.ts';

export type SortBy = 'price' | 'latency' | 'throughput';
/** How the candidate models combine: one model, a pool in order, or a pool ranked by a live measurement. */
export type PoolMode = 'single' | 'ordered' | 'latency' | 'throughput' | 'price';

export interface RouteConstraints {
  /** Candidate models in preference order (1..20). */
  readonly models: readonly string[];
  readonly poolMode: PoolMode;
  readonly sort: SortBy;
  /** Ceiling on the quoted price, micro-units per million tokens (exact bigint), in `maxPriceCurrency`. */
  readonly maxPricePerMInput?: bigint;
  readonly maxPricePerMOutput?: bigint;
  readonly maxPriceCurrency: string;
  readonly order?: readonly string[];
  readonly only?: ReadonlySet<string>;
  readonly ignore?: ReadonlySet<string>;
  readonly allowFallbacks: boolean;
  readonly acceptTerms: ReadonlySet<TermsKind>;
  /** provider.quantizations: only offers whose attested quantization is listed. */
  readonly quantizations?: ReadonlySet<string>;
  /** provider.weights_digests (gm): only offers whose attested weights digest (lower-case hex) is listed. */
  readonly weightsDigests?: ReadonlySet<string>;
  /**
   * provider.require_parameters: the request's parameters (protocol/model-identity.ts PARAMETERS) as a bitmask that
   * an offer's declared parameters must cover; 0 when not required or when the request uses none.
   */
  readonly requiredParameters: number;
  /** Currency the payer can pay in, when restricted. */
  readonly paymentCurrency?: string;
  /** Estimated tokens, used to rank by effective price. */
  readonly expectedInputTokens: number;
  readonly expectedOutputTokens: number;
  /** Upper bounds, used to authorise the debit before dispatch (output: all choices together). */
  readonly maxInputTokens: number;
  readonly maxOutputTokens: number;
  /** What the gateway writes into the forwarded request: output tokens per choice, and the choices (`n`). */
  readonly maxTokensPerChoice: number;
  readonly choices: number;
}

export interface ConstraintOptions {
  /** Configured model pools: alias → up to 20 model ids. */
  readonly pools?: Readonly<Record<string, readonly string[]>>;
  /** Output tokens assumed when the request sets no max_tokens (also the authorisation bound). */
  readonly defaultMaxOutputTokens?: number;
  /** Currency max_price is read in when the request does not say. */
  readonly defaultCurrency?: string;
}

export const MAX_POOL = 20;
/** Most choices (`n`) one request may ask for (OpenAI's own limit). */
export const MAX_CHOICES = 128;
const MAX_LIST = 64;
/** A refused constraint; `param` names the field at fault (every message starts with it) for the OpenAI error object. */
const bad = (what: string): Error => {
  const e = protocolError('ROUTE_CONSTRAINT_INVALID', `route constraint ${what}`);
  const field = /^([a-z_]+(?:\.[a-z_]+)*) (?:must|needs)/.exec(what)?.[1];
  return field && field !== 'body' ? Object.assign(e, { param: field }) : e;
};

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringList(v: unknown, field: string, max: number): string[] {
  if (!Array.isArray(v) || v.length > max || !v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 256)) throw bad(`${field} must be a list of at most ${max} non-empty strings`);
  return v as string[];
}

/** Decimal currency units (number or string) → integer micro-units, exactly, truncating past 6 decimals. */
export function decimalToMicros(v: unknown, field: string): bigint {
  return decimalToUnits(v, field, 6);
}

/**
 * Decimal currency units → integer settlement units with `decimals` places (protocol/offer-terms.ts: 6 for USD,
 * 9 for TAO, whose unit is the rao), exactly, truncating past them (which only ever lowers a ceiling).
 */
export function decimalToUnits(v: unknown, field: string, decimals: number): bigint {
  let s: string;
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0 || v > 1e12) throw bad(`${field} must be a non-negative number`);
    s = v.toFixed(9);
  } else if (typeof v === 'string') s = v.trim();
  else throw bad(`${field} must be a number or a decimal string`);
  const m = /^(\d{1,13})(?:\.(\d+))?$/.exec(s);
  if (!m) throw bad(`${field} must be a non-negative decimal`);
  const frac = (m[2] ?? '').slice(0, decimals).padEnd(decimals, '0');
  return BigInt(m[1]!) * 10n ** BigInt(decimals) + BigInt(frac);
}

function textBytes(v: unknown, depth = 0): number {
  if (depth > 8) return 0;
  if (typeof v === 'string') return utf8Length(v);
  if (Array.isArray(v)) return v.reduce<number>((n, x) => n + textBytes(x, depth + 1), 0);
  if (isObj(v)) {
    let n = 0;
    for (const k of ['content', 'text', 'input', 'prompt', 'arguments', 'name', 'tool_calls', 'function']) if (k in v) n += textBytes(v[k], depth + 1);
    return n;
  }
  return 0;
}

function jsonBytes(v: unknown): number {
  if (v === undefined || v === null) return 0;
  try {
    return utf8Length(JSON.stringify(v) ?? '');
  } catch {
    return 0;
  }
}

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function positiveInt(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw bad(`${field} must be a positive integer`);
  return v;
}

/** Parses the constraints out of an OpenAI-style request body (already decrypted, already JSON-parsed). */
export function parseRouteConstraints(body: unknown, opts: ConstraintOptions = {}): RouteConstraints {
  if (!isObj(body)) throw bad('body must be a JSON object');
  const { models, poolMode, variant } = resolveModels(body, opts.pools ?? {});

  const provider = body.provider ?? {};
  if (!isObj(provider)) throw bad('provider must be an object');
  checkProviderFields(provider);
  let sort: SortBy = 'price';
  if (provider.sort !== undefined) {
    if (provider.sort !== 'price' && provider.sort !== 'latency' && provider.sort !== 'throughput') throw bad('provider.sort must be price, latency or throughput');
    sort = provider.sort;
  }
  let maxIn: bigint | undefined;
  let maxOut: bigint | undefined;
  let currency = opts.defaultCurrency ?? 'USD';
  if (provider.max_price !== undefined) {
    const mp = provider.max_price;
    if (!isObj(mp)) throw bad('provider.max_price must be an object');
    if (mp.currency !== undefined) {
      if (typeof mp.currency !== 'string' || !/^[A-Z0-9]{1,12}$/.test(mp.currency)) throw bad('provider.max_price.currency must be a currency code');
      currency = mp.currency;
    }
    // In the currency's settlement units: micro-USD for USD, rao for TAO.
    if (mp.prompt !== undefined) maxIn = decimalToUnits(mp.prompt, 'provider.max_price.prompt', currencyDecimals(currency));
    if (mp.completion !== undefined) maxOut = decimalToUnits(mp.completion, 'provider.max_price.completion', currencyDecimals(currency));
  }
  const order = provider.order === undefined ? undefined : stringList(provider.order, 'provider.order', MAX_LIST);
  const only = provider.only === undefined ? undefined : new Set(stringList(provider.only, 'provider.only', MAX_LIST));
  const ignore = provider.ignore === undefined ? undefined : new Set(stringList(provider.ignore, 'provider.ignore', MAX_LIST));
  if (provider.allow_fallbacks !== undefined && typeof provider.allow_fallbacks !== 'boolean') throw bad('provider.allow_fallbacks must be a boolean');
  const allowFallbacks = provider.allow_fallbacks !== false;
  const quantizations = provider.quantizations === undefined ? undefined : new Set(stringList(provider.quantizations, 'provider.quantizations', 16));
  if (quantizations && (quantizations.size === 0 || ![...quantizations].every((q) => /^[a-z0-9_-]{1,16}$/.test(q)))) throw bad('provider.quantizations must list quantization names such as "fp8" or "bf16"');
  const weights = provider.weights_digests === undefined ? undefined : stringList(provider.weights_digests, 'provider.weights_digests', MAX_LIST);
  if (weights && (weights.length === 0 || !weights.every((w) => /^[0-9a-fA-F]{64}$/.test(w)))) throw bad('provider.weights_digests must list SHA-256 digests as 64 hex digits');
  const requiredParameters = provider.require_parameters === true ? parameterMask(requestParameters(body)) : 0;

  let acceptTerms: ReadonlySet<TermsKind> = new Set(TERMS_KINDS);
  let paymentCurrency: string | undefined;
  if (body.payment !== undefined) {
    const p = body.payment;
    if (!isObj(p)) throw bad('payment must be an object');
    if (p.terms !== undefined) {
      const t = stringList(p.terms, 'payment.terms', 3);
      if (t.length === 0 || !t.every((x) => (TERMS_KINDS as readonly string[]).includes(x))) throw bad('payment.terms must list prepaid, postpaid or per-request');
      acceptTerms = new Set(t as TermsKind[]);
    }
    if (p.currency !== undefined) {
      if (typeof p.currency !== 'string' || !/^[A-Z0-9]{1,12}$/.test(p.currency)) throw bad('payment.currency must be a currency code');
      paymentCurrency = p.currency;
    }
  }

  // Tool and function definitions and a response schema enter the prompt too: counted as their JSON text.
  const inBytes = textBytes(body.messages) + textBytes(body.prompt) + textBytes(body.input) + jsonBytes(body.tools) + jsonBytes(body.functions) + jsonBytes(body.response_format);
  // Chat templates add a few tokens per message (role markers, separators): bound them generously.
  const templateTokens = 16 + 8 * (Array.isArray(body.messages) ? body.messages.length : 0);
  const perChoice = positiveInt(body.max_completion_tokens, 'max_completion_tokens') ?? positiveInt(body.max_tokens, 'max_tokens') ?? opts.defaultMaxOutputTokens ?? 4096;
  const choices = positiveInt(body.n, 'n') ?? 1;
  if (choices > MAX_CHOICES) throw bad(`n must be at most ${MAX_CHOICES}`);
  // Every returned choice can reach the per-choice bound: the hold covers all of them.
  const maxOutput = perChoice * choices;
  if (!Number.isSafeInteger(maxOutput)) throw bad('max_tokens times n must stay below 2^53');
  // OpenRouter's variants are shortcuts for provider.sort and win over it: `:floor` price, `:nitro` throughput.
  if (variant) sort = variant === 'floor' ? 'price' : 'throughput';
  return {
    models,
    poolMode,
    sort,
    ...(maxIn !== undefined ? { maxPricePerMInput: maxIn } : {}),
    ...(maxOut !== undefined ? { maxPricePerMOutput: maxOut } : {}),
    maxPriceCurrency: currency,
    ...(order ? { order } : {}),
    ...(only ? { only } : {}),
    ...(ignore ? { ignore } : {}),
    allowFallbacks,
    acceptTerms,
    ...(quantizations ? { quantizations } : {}),
    ...(weights ? { weightsDigests: new Set(weights.map((w) => w.toLowerCase())) } : {}),
    requiredParameters,
    ...(paymentCurrency ? { paymentCurrency } : {}),
    expectedInputTokens: Math.ceil(inBytes / 4),
    expectedOutputTokens: maxOutput,
    maxInputTokens: inBytes + templateTokens,
    maxOutputTokens: maxOutput,
    maxTokensPerChoice: perChoice,
    choices,
  };
}

/** OpenRouter's provider routing fields gm honours; any other is refused by name rather than silently ignored. */
const PROVIDER_FIELDS = new Set(['sort', 'max_price', 'order', 'only', 'ignore', 'allow_fallbacks', 'data_collection', 'require_parameters', 'quantizations', 'weights_digests']);

/**
 * The request's parameters an offer must declare under require_parameters: every PARAMETERS name present in the
 * body (null counts as absent, as OpenAI treats it), with `functions` counting as `tools` and `function_call` as
 * `tool_choice` (their legacy forms).
 */
export function requestParameters(body: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const p of PARAMETERS) if (body[p] !== undefined && body[p] !== null) out.push(p);
  if (body.functions !== undefined && body.functions !== null && !out.includes('tools')) out.push('tools');
  if (body.function_call !== undefined && body.function_call !== null && !out.includes('tool_choice')) out.push('tool_choice');
  return out;
}

/**
 * Fields accepted only as far as gm can honour them (OpenRouter provider routing): `data_collection` "allow" or
 * "deny" both hold, since every gm worker runs in an attested TEE that keeps no prompts; `require_parameters` and
 * `quantizations` are checked against the identity each offer states and the worker's evidence backs.
 */
function checkProviderFields(provider: Record<string, unknown>): void {
  for (const k of Object.keys(provider)) if (!PROVIDER_FIELDS.has(k)) throw bad(`provider.${/^[a-z_]{1,64}$/.test(k) ? k : 'field'} needs support gm does not have (unknown provider field)`);
  const dc = provider.data_collection;
  if (dc !== undefined && dc !== 'allow' && dc !== 'deny') throw bad('provider.data_collection must be "allow" or "deny"');
  const rp = provider.require_parameters;
  if (rp !== undefined && typeof rp !== 'boolean') throw bad('provider.require_parameters must be a boolean');
}

function resolveModels(body: Record<string, unknown>, pools: Readonly<Record<string, readonly string[]>>): { models: string[]; poolMode: PoolMode; variant?: 'floor' | 'nitro' } {
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0 || model.length > 256) throw bad('model must be a non-empty string');
  const own = body.models === undefined ? undefined : stringList(body.models, 'models', MAX_POOL);
  if (own && own.length === 0) throw bad('models must not be empty');
  const [alias, suffix] = splitSuffix(model);
  const variant = suffix === 'floor' || suffix === 'nitro' ? suffix : undefined;
  // On a pool, `:floor` ranks the whole pool by price and `:nitro` by throughput; on one model they only sort.
  const mode: PoolMode | undefined = suffix === 'floor' ? 'price' : suffix === 'nitro' ? 'throughput' : suffix;
  const pool = alias === 'default' && own ? own : Object.hasOwn(pools, alias) ? pools[alias] : undefined;
  if (pool) {
    if (pool.length === 0 || pool.length > MAX_POOL) throw bad(`pool "${alias}" must name 1..${MAX_POOL} models`);
    return { models: [...new Set(pool)], poolMode: mode ?? 'ordered', ...(variant ? { variant } : {}) };
  }
  if (alias === 'default') throw bad('model "default" needs a models list or a configured pool');
  // A model id itself may end in ":latency" or ":throughput" (only pools take those); the variants apply to any model.
  const id = variant ? alias : model;
  if (own) {
    const list = [...new Set([id, ...own])];
    if (list.length > MAX_POOL) throw bad(`models must name at most ${MAX_POOL} models`);
    return { models: list, poolMode: 'ordered', ...(variant ? { variant } : {}) };
  }
  return { models: [id], poolMode: 'single', ...(variant ? { variant } : {}) };
}

function splitSuffix(model: string): [string, 'latency' | 'throughput' | 'floor' | 'nitro' | undefined] {
  const m = /^(.+):(latency|throughput|floor|nitro)$/.exec(model);
  return m ? [m[1]!, m[2] as 'latency' | 'throughput' | 'floor' | 'nitro'] : [model, undefined];
}
