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
 * Charge. inputTokens = min(report or the request's estimate, the hold's input bound);
 * outputTokens = min(report or the estimate, outputBound, the hold's output bound). Clamping is logged by the caller.
 * Usage figures must be non-negative safe integers (`parseUsage`); anything else is a worker fault.
 *
 * Inflation. A report above a bound by more than the tolerance (default 10%, plus SPECIAL_TOKENS_PER_CHOICE for
 * input) is not rounding: the worker claims tokens the enclave did not see. The charge is clamped as always; the
 * router also counts it (`gm_market_usage_inflated_total`) and demotes the worker's offer for that model out of
 * selection for a cool-off period (`inflatedUntil`, an exclusion `auditors` see among the live ones).
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
 * Accumulates what an answer delivered: call `add` with each parsed chunk (stream) or the whole parsed answer.
 * Choices are counted by their distinct `index` (a stream repeats them in every chunk).
 */
export class DeliveryMeter {
  #bytes = 0;
  readonly #indices = new Set<number>();

  add(answer: unknown): void {
    if (!isObj(answer) || !Array.isArray(answer.choices)) return;
    for (const c of answer.choices) {
      if (!isObj(c)) continue;
      this.#bytes += choiceBytes(c);
      this.#indices.add(typeof c.index === 'number' && Number.isSafeInteger(c.index) ? c.index : 0);
    }
  }

  get delivered(): Delivered {
    return { bytes: this.#bytes, choices: Math.max(1, this.#indices.size) };
  }
}

export const outputBound = (d: Delivered): number => d.bytes + SPECIAL_TOKENS_PER_CHOICE * d.choices;
export const outputEstimate = (d: Delivered): number => Math.ceil(d.bytes / 4);

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

/** True when the worker's report exceeds the enclave's bounds by more than `tolerance` (a fraction of the bound). */
export function inflated(reported: Usage | undefined, delivered: Delivered, hold: HoldBounds, tolerance = DEFAULT_INFLATION_TOLERANCE): boolean {
  if (!reported) return false;
  const outLimit = Math.min(outputBound(delivered), hold.maxOutputTokens) * (1 + tolerance);
  const inLimit = hold.maxInputTokens * (1 + tolerance) + SPECIAL_TOKENS_PER_CHOICE;
  return reported.completionTokens > outLimit || reported.promptTokens > inLimit;
}

/** The tokens to charge: the worker's report checked against the enclave's bounds (see the module header). */
export function meter(reported: Usage | undefined, delivered: Delivered, hold: HoldBounds): Metered {
  const inWant = reported?.promptTokens ?? hold.expectedInputTokens;
  const outWant = reported?.completionTokens ?? outputEstimate(delivered);
  const inputTokens = Math.min(inWant, hold.maxInputTokens);
  const outputTokens = Math.min(outWant, outputBound(delivered), hold.maxOutputTokens);
  return { inputTokens, outputTokens, clamped: inputTokens < inWant || outputTokens < outWant };
}
