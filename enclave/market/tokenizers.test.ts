import fc from 'fast-check';
import { countTokens as cl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base';
import { countTokens as harmony } from 'gpt-tokenizer/encoding/o200k_harmony';
import { describe, expect, it } from 'vitest';
import { DeliveryMeter, inflated, meter, outputBound, SPECIAL_TOKENS_PER_CHOICE, utf8Length } from './metering.ts';
import { TokenizerThread } from './tokenizer-thread.ts';
import { counter, encodingFor, MAX_RUN_CHARS, tokenCounterFor } from './tokenizers.ts';

const ORDINARY = { disallowedSpecial: new Set<string>() };
const o200kCounter = counter('o200k_base', o200k);
const cl100kCounter = counter('cl100k_base', cl100k);

/** Text of short words with every kind of separator the split patterns treat apart. */
const WORDS = fc.array(
  fc.tuple(
    fc.oneof(fc.stringMatching(/^[A-Za-z]{1,12}$/), fc.stringMatching(/^[0-9]{1,7}$/), fc.constantFrom("don't", "we'll", 'HTTP/2', '漢字かな', 'über', 'ÉTÉ', '🙂', '<|endoftext|>', '<|start|>', '==>', '...', 'a_b', '$x', "'s")),
    fc.constantFrom(' ', '  ', '   ', '\n', ' \n', '\n\n', '\t', ', ', '. ', '! ', ' (', ') ', '\r\n', '\u00a0', ' - ', ''),
  ),
  { maxLength: 200 },
).map((ps) => ps.map(([w, s]) => w + s).join(''));

describe('tokenizer families', () => {
  it('maps model names to encodings by data; other families keep the byte bound', () => {
    expect(encodingFor('gpt-oss-20b')).toBe('o200k_harmony');
    expect(encodingFor('openai/gpt-oss-120b')).toBe('o200k_harmony');
    expect(encodingFor('GPT-OSS-120B')).toBe('o200k_harmony');
    expect(encodingFor('gpt-4o-mini')).toBe('o200k_base');
    expect(encodingFor('o1')).toBe('o200k_base');
    expect(encodingFor('o3-mini')).toBe('o200k_base');
    expect(encodingFor('gpt-4')).toBe('cl100k_base');
    expect(encodingFor('gpt-3.5-turbo-0125')).toBe('cl100k_base');
    for (const other of ['gm-dev', 'meta-llama/Llama-3.1-8B-Instruct', 'Qwen/Qwen2.5-7B', 'omni-7b', 'o1x']) expect(encodingFor(other)).toBeUndefined();
    expect(tokenCounterFor('gm-dev')).toBeUndefined();
  });

  it('o200k_harmony encodes ordinary text exactly as o200k_base (same pattern and ranks); special-token text counts as text', async () => {
    fc.assert(fc.property(WORDS, (t) => harmony(t, ORDINARY) === o200k(t, ORDINARY)), { numRuns: 200 });
    const c = await tokenCounterFor('gpt-oss-20b')!;
    expect(c.encoding).toBe('o200k_harmony');
    // A literal special token in an answer is several ordinary tokens, never refused.
    expect(c.count(['<|endoftext|>'])).toBeGreaterThan(1);
  });
});

describe('bounded counting', () => {
  it('counting by stretches cut at safe boundaries gives exactly the count of the whole text (both encodings)', () => {
    // Stretches of 8 characters: a cut at nearly every safe boundary.
    const [fine200, fine100] = [counter('o200k_base', o200k, 8), counter('cl100k_base', cl100k, 8)];
    fc.assert(
      fc.property(WORDS, (t) => {
        expect(fine200.count([t])).toBe(o200k(t, ORDINARY));
        expect(fine100.count([t])).toBe(cl100k(t, ORDINARY));
        expect(o200kCounter.count([t])).toBe(o200k(t, ORDINARY));
        expect(cl100kCounter.count([t])).toBe(cl100k(t, ORDINARY));
      }),
      { numRuns: 300 },
    );
  });

  it('property: the byte bound is an upper bound of the tokenizer count, and the bounded count lies between them', () => {
    const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 600 }), fc.string({ unit: 'grapheme', maxLength: 600 }), WORDS);
    fc.assert(
      fc.property(text, (t) => {
        const exact = o200k(t, ORDINARY);
        const bytes = utf8Length(t);
        expect(exact).toBeLessThanOrEqual(bytes);
        expect(cl100k(t, ORDINARY)).toBeLessThanOrEqual(bytes);
        const bounded = o200kCounter.count([t]);
        expect(bounded).toBeGreaterThanOrEqual(exact);
        expect(bounded).toBeLessThanOrEqual(bytes);
      }),
      { numRuns: 300 },
    );
  });

  it('a stretch with no safe boundary longer than the cap is counted by its bytes (BPE is never run on it)', () => {
    let seed = 3;
    const word = Array.from({ length: 64 * 1024 }, () => String.fromCharCode(97 + ((seed = (seed * 1103515245 + 12345) >>> 0) % 26))).join('');
    expect(o200kCounter.count([word])).toBe(64 * 1024);
    const cjk = '漢'.repeat(MAX_RUN_CHARS + 1);
    expect(o200kCounter.count([`Hello ${cjk}`])).toBe(o200k('Hello', ORDINARY) + utf8Length(` ${cjk}`));
  });

  it('stops counting at the cap it is given, counting the rest by bytes', () => {
    const t = ' The quick enclave routes sealed tokens'.repeat(100);
    const exact = o200k(t, ORDINARY);
    const capped = o200kCounter.count([t], 10);
    expect(capped).toBeGreaterThanOrEqual(10);
    expect(capped).toBeGreaterThan(exact);
    expect(capped).toBeLessThanOrEqual(utf8Length(t));
  });
});

describe('the tokenizer thread', () => {
  it('counts off the event loop exactly as the counter does; a model of no family gets no count and starts nothing', async () => {
    const t = new TokenizerThread();
    const text = 'The enclave counts what it delivered, not what a worker says. '.repeat(50);
    expect(await t.count('openai/gpt-oss-120b', [text, 'and a second field'], 10_000)).toBe(o200k(text, ORDINARY) + o200k('and a second field', ORDINARY));
    expect(await t.count('gpt-4', [text], 10_000)).toBe(cl100k(text, ORDINARY));
    // Counting stops at the cap (the rest by bytes) on the thread too.
    expect(await t.count('gpt-oss-20b', [text], 10)).toBe(o200kCounter.count([text], 10));
    expect(await t.count('gm-dev', [text], 10_000)).toBeUndefined();
  }, 60_000);
});

describe('metering with a token count', () => {
  const hold = { maxInputTokens: 1000, maxOutputTokens: 4096, expectedInputTokens: 10 };
  const answer = ' The quick enclave routes sealed tokens to attested workers, and nobody else reads them.'.repeat(20);

  function delivered() {
    const m = new DeliveryMeter();
    // Streamed one word per event, as a worker would.
    for (const w of answer.split(/(?= )/)) m.add({ choices: [{ index: 0, delta: { content: w } }] });
    return m.delivered;
  }

  it('the meter keeps the streamed text for the tokenizer; the tokens are far below the byte bound', () => {
    const d = delivered();
    expect(d.texts).toEqual([answer]);
    const tokens = o200kCounter.count(d.texts!);
    expect(tokens).toBe(o200k(answer, ORDINARY));
    expect(outputBound(d, tokens)).toBe(tokens + SPECIAL_TOKENS_PER_CHOICE);
    expect(outputBound(d)).toBe(utf8Length(answer) + SPECIAL_TOKENS_PER_CHOICE);
    expect(tokens * 4).toBeLessThan(utf8Length(answer));
  });

  it('an inflating worker is flagged with the token count (not with the byte bound) and charged the token bound', () => {
    const d = delivered();
    const tokens = o200kCounter.count(d.texts!);
    const report = { promptTokens: 5, completionTokens: Math.round(tokens * 1.5) };
    expect(inflated(report, d, hold)).toBe(false);
    expect(inflated(report, d, hold, undefined, tokens)).toBe(true);
    expect(meter(report, d, hold, tokens)).toEqual({ inputTokens: 5, outputTokens: tokens + SPECIAL_TOKENS_PER_CHOICE, clamped: true });
  });

  it('an honest worker reporting the real count (with its format tokens) is not flagged and is charged its report', () => {
    const d = delivered();
    const tokens = o200kCounter.count(d.texts!);
    for (const extra of [0, 5, SPECIAL_TOKENS_PER_CHOICE]) {
      const report = { promptTokens: 5, completionTokens: tokens + extra };
      expect(inflated(report, d, hold, undefined, tokens)).toBe(false);
      expect(meter(report, d, hold, tokens)).toEqual({ inputTokens: 5, outputTokens: tokens + extra, clamped: false });
    }
    // Without a report the enclave charges its own count.
    expect(meter(undefined, d, hold, tokens).outputTokens).toBe(tokens);
  });

  it('tool calls are counted per call, with their own allowance; text past the retention cap falls back to bytes', () => {
    const m = new DeliveryMeter();
    m.add({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { name: 'get_weather', arguments: '{"city":' } }] } }] });
    m.add({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }, { index: 1, function: { name: 'get_time', arguments: '{}' } }] } }] });
    const d = m.delivered;
    expect(d.toolCalls).toBe(2);
    expect([...d.texts!].sort()).toEqual(['get_weather', '{"city":"Paris"}', 'get_time', '{}'].sort());
    // Two calls and one choice: three allowances (below the byte bound of 37 bytes + 16).
    expect(outputBound(d, 1)).toBe(1 + SPECIAL_TOKENS_PER_CHOICE * 3);
    const big = new DeliveryMeter();
    big.add({ choices: [{ index: 0, message: { content: 'x '.repeat(600_000) } }] });
    expect(big.delivered.texts).toBeUndefined();
  });
});
