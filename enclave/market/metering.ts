/**
 * The enclave's own count of what a worker delivered, and the rule that turns it and the worker's `usage` report
 * into the tokens a receipt charges (docs/market.md "Metering"). A worker's number alone never sets a charge.
 *
 * Output bound. Every token a byte-level BPE or byte-fallback SentencePiece vocabulary produces decodes to at least
 * one byte, so the tokens behind a delivered text are at most its UTF-8 length; tokens that decode to nothing seen
 * by the client (end-of-sequence, role and tool-call markers, a stripped leading space) are allowed for with
 * `SPECIAL_TOKENS_PER_CHOICE` per returned choice:
 *
 *   outputBound = deliveredBytes + SPECIAL_TOKENS_PER_CHOICE · choices
 *
 * where deliveredBytes counts the text fields an OpenAI answer carries (content, text, refusal, reasoning, tool call
 * names and arguments). The estimate used when a worker reports nothing valid is ceil(deliveredBytes / 4), the
 * rate the constraints use for expected input; it never exceeds the bound.
 *
 * Token count. When the served model's family has a tokenizer (enclave/market/tokenizers.ts), the enclave counts
 * the tokens of the delivered text itself, T (each choice's field encoded on its own), and the bound tightens to
 *
 *   tokenBound = T + SPECIAL_TOKENS_PER_CHOICE · (choices + toolCalls)
 *
 * (the allowance covers the tokens a chat format generates that print nothing: Harmony's <|channel|>, <|message|>,
 * <|end|>, <|call|> and the like, per message and per tool call), and the estimate without a report becomes T.
 * tokenBound is not a proof the way the byte bound is: a model may sample a non-canonical split of a text (more
 * tokens than its canonical encoding), so the allowance is also the slack an honest report gets. T never exceeds
 * deliveredBytes (a property test checks it), so the byte bound stays the ceiling: outputBound = min(tokenBound,
 * the byte bound).
 *
 * Charge. inputTokens = min(report or the request's estimate, the hold's input bound);
 * outputTokens = min(report or the estimate, outputBound, the hold's output bound). Clamping is logged by the caller.
 * Usage figures must be non-negative safe integers (`parseUsage`); anything else is a worker fault.
 *
 * Inflation. A report above a bound by more than the tolerance (default 10%, plus SPECIAL_TOKENS_PER_CHOICE for
 * input) is not rounding: the worker claims tokens the enclave did not see. The charge is clamped as always; the
 * router also counts it (`gm_market_usage_inflated_total`) and demotes the worker's offer for that model out of
 * selection for a cool-off period (`inflatedUntil`, an exclusion `auditors` see among the live ones). With a token
 * count the tolerance applies to tokenBound: a worker may over-report by at most 10% of it before it is flagged.
 */
import { unavailable } from '../../attestation/errors.ts';
import type { Delivered, Usage } from '../router.ts';

export type { Delivered, Usage };

export const SPECIAL_TOKENS_PER_CHOICE = 16;

/** The request's bounds the hold was taken for, and the input estimate used when a worker reports no usage. */
export interface HoldBounds {
  readonly maxInputTokens: number;
  readonly maxOutputTokens: number;
  readonly expectedInputTokens: number;
}

export interface Metered {
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** True when a reported figure was above a bound and the bound was charged instead. */
  readonly clamped: boolean;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const count = (v: unknown): number => (typeof v === 'string' ? utf8Length(v) : 0);

export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Text bytes of one message or delta object (chat) or of a text completion choice. */
function choiceBytes(c: Record<string, unknown>): number {
  let n = count(c.text);
  for (const m of [c.message, c.delta]) {
    if (!isObj(m)) continue;
    n += count(m.content) + count(m.refusal) + count(m.reasoning_content) + count(m.reasoning);
    if (Array.isArray(m.tool_calls)) for (const t of m.tool_calls) if (isObj(t) && isObj(t.function)) n += count(t.function.name) + count(t.function.arguments);
    if (isObj(m.function_call)) n += count(m.function_call.name) + count(m.function_call.arguments);
  }
  return n;
}

/**
 * Most text a meter keeps for the tokenizer (UTF-16 units, 512 KiB of memory per answer at most, far above a
 * 4096-token answer's ~20 KB); past it the answer is counted by the byte bound alone.
 */
export const MAX_RETAINED_TEXT = 1 << 18;

/**
 * Accumulates what an answer delivered: call `add` with each parsed chunk (stream) or the whole parsed answer.
 * Choices are counted by their distinct `index` (a stream repeats them in every chunk), tool calls by their distinct
 * (choice, index). The text is kept per choice and field, in order, for a tokenizer to count at settlement.
 */
export class DeliveryMeter {
  #bytes = 0;
  readonly #indices = new Set<number>();
  readonly #tools = new Set<string>();
  readonly #texts = new Map<string, string[]>();
  #retained = 0;

  add(answer: unknown): void {
    if (!isObj(answer) || !Array.isArray(answer.choices)) return;
    for (const c of answer.choices) {
      if (!isObj(c)) continue;
      this.#bytes += choiceBytes(c);
      const i = typeof c.index === 'number' && Number.isSafeInteger(c.index) ? c.index : 0;
      this.#indices.add(i);
      if (this.#retained <= MAX_RETAINED_TEXT) this.#keep(i, c);
    }
  }

  #text(key: string, v: unknown): void {
    if (typeof v !== 'string' || v.length === 0) return;
    this.#retained += v.length;
    if (this.#retained > MAX_RETAINED_TEXT) {
      // Past the cap the text is of no use (the byte bound applies): drop what was kept.
      this.#texts.clear();
      return;
    }
    const l = this.#texts.get(key);
    if (l) l.push(v);
    else this.#texts.set(key, [v]);
  }

  #keep(i: number, c: Record<string, unknown>): void {
    this.#text(`${i}`, c.text);
    for (const m of [c.message, c.delta]) {
      if (!isObj(m)) continue;
      this.#text(`${i}c`, m.content);
      this.#text(`${i}x`, m.refusal);
      this.#text(`${i}r`, m.reasoning_content);
      this.#text(`${i}r`, m.reasoning);
      if (Array.isArray(m.tool_calls)) {
        for (const [n, t] of m.tool_calls.entries()) {
          if (!isObj(t) || !isObj(t.function)) continue;
          const k = `${i}t${typeof t.index === 'number' && Number.isSafeInteger(t.index) ? t.index : n}`;
          this.#tools.add(k);
          this.#text(`${k}n`, t.function.name);
          this.#text(`${k}a`, t.function.arguments);
        }
      }
      if (isObj(m.function_call)) {
        this.#tools.add(`${i}f`);
        this.#text(`${i}fn`, m.function_call.name);
        this.#text(`${i}fa`, m.function_call.arguments);
      }
    }
  }

  get delivered(): Delivered {
    const d = { bytes: this.#bytes, choices: Math.max(1, this.#indices.size), toolCalls: this.#tools.size };
    return this.#retained > MAX_RETAINED_TEXT ? d : { ...d, texts: [...this.#texts.values()].map((l) => l.join('')) };
  }
}

/** The byte bound, or with the tokenizer's count `tokens` of the delivered text the tighter token bound. */
export function outputBound(d: Delivered, tokens?: number): number {
  const bytes = d.bytes + SPECIAL_TOKENS_PER_CHOICE * d.choices;
  return tokens === undefined ? bytes : Math.min(bytes, tokens + SPECIAL_TOKENS_PER_CHOICE * (d.choices + (d.toolCalls ?? 0)));
}
export const outputEstimate = (d: Delivered, tokens?: number): number => tokens ?? Math.ceil(d.bytes / 4);

/**
 * A worker's `usage` object, strictly: absent (or null) → undefined; prompt_tokens and completion_tokens (absent
 * completion_tokens is 0, as embeddings report) must be non-negative safe integers, else WORKER_USAGE_INVALID.
 */
export function parseUsage(u: unknown): Usage | undefined {
  if (u === undefined || u === null) return undefined;
  const bad = (): never => {
    throw unavailable('WORKER_USAGE_INVALID', 'the worker reported usage that is not a pair of non-negative integer token counts below 2^53');
  };
  if (!isObj(u)) return bad();
  const p = u.prompt_tokens;
  const c = u.completion_tokens ?? 0;
  if (typeof p !== 'number' || typeof c !== 'number' || !Number.isSafeInteger(p) || !Number.isSafeInteger(c) || p < 0 || c < 0) return bad();
  return { promptTokens: p, completionTokens: c };
}

export const DEFAULT_INFLATION_TOLERANCE = 0.1;

/**
 * True when the worker's report exceeds the enclave's bounds by more than `tolerance` (a fraction of the bound);
 * `tokens` is the tokenizer's count of the delivered text, when the model's family has one.
 */
export function inflated(reported: Usage | undefined, delivered: Delivered, hold: HoldBounds, tolerance = DEFAULT_INFLATION_TOLERANCE, tokens?: number): boolean {
  if (!reported) return false;
  const outLimit = Math.min(outputBound(delivered, tokens), hold.maxOutputTokens) * (1 + tolerance);
  const inLimit = hold.maxInputTokens * (1 + tolerance) + SPECIAL_TOKENS_PER_CHOICE;
  return reported.completionTokens > outLimit || reported.promptTokens > inLimit;
}

/** The tokens to charge: the worker's report checked against the enclave's bounds (see the module header). */
export function meter(reported: Usage | undefined, delivered: Delivered, hold: HoldBounds, tokens?: number): Metered {
  const inWant = reported?.promptTokens ?? hold.expectedInputTokens;
  const outWant = reported?.completionTokens ?? outputEstimate(delivered, tokens);
  const inputTokens = Math.min(inWant, hold.maxInputTokens);
  const outputTokens = Math.min(outWant, outputBound(delivered, tokens), hold.maxOutputTokens);
  return { inputTokens, outputTokens, clamped: inputTokens < inWant || outputTokens < outWant };
}
