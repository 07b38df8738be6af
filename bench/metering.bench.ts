/**
 * The enclave's usage count per request (enclave/market/metering.ts, enclave/market/tokenizers.ts): metering a
 * streamed answer with the byte bound alone (the floor: the meter over every event and the charge rule) against the
 * same plus the o200k tokenizer's count of the delivered text, in the same run, in alternating blocks.
 *
 * Answers, streamed one event per word, with the hold's output bound at 4096 tokens, a different text in every run
 * (the tokenizer keeps no merge cache across counts):
 *  - prose of 256 and of 4096 words (the honest case: docs/*.md of this repository, English technical text);
 *  - the worst a worker can choose within one hold: words of 250 random letters (one BPE piece each, just under the
 *    stretch cap) and runs of 250 random CJK characters, until the count reaches the hold (counting stops there).
 * The tokenizer is paid once per request, at settlement (after the last event, before the receipt), never per event,
 * and on the tokenizer thread (enclave/market/tokenizer-thread.ts): the last rows show what the event loop itself
 * spends handing a 4096-word answer to the thread (the structured clone), against the count it no longer runs.
 */
import { readFileSync } from 'node:fs';
import { DeliveryMeter, meter } from '../enclave/market/metering.ts';
import { tokenizerThread } from '../enclave/market/tokenizer-thread.ts';
import { tokenCounterFor } from '../enclave/market/tokenizers.ts';
import { type BenchRow, interleavedMedians, medianUs } from './harness.ts';

export const title = 'metering: tokenizer count against the byte bound';

const HOLD = { maxInputTokens: 1000, maxOutputTokens: 4096, expectedInputTokens: 10 };

let seed = 11;
const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
/** Real English prose: this repository's design and market documents, one event per word. */
const PROSE = ['design.md', 'market.md', 'protocol.md'].flatMap((f) => readFileSync(new URL(`../docs/${f}`, import.meta.url), 'utf8').split(/(?= )/));

/** `runs` answers of `words` events each, from different places in the prose. */
function prose(words: number, runs: number): string[][] {
  return Array.from({ length: runs }, (_, r) => {
    const at = (r * 7919 * 13) % (PROSE.length - words);
    return PROSE.slice(at, at + words);
  });
}
/** Words of 250 random letters (or CJK characters), in events of 4 characters, until `bytes` of text. */
function adversarial(cjk: boolean, bytes: number): string[] {
  const out: string[] = [];
  let n = 0;
  while (n < bytes) {
    let w = ' ';
    for (let i = 0; i < 250; i++) w += String.fromCharCode(cjk ? 0x4e00 + rnd(20_000) : 97 + rnd(26));
    for (let i = 0; i < w.length; i += 4) out.push(w.slice(i, i + 4));
    n += Buffer.byteLength(w);
  }
  return out;
}

function deliveredOf(events: readonly string[]) {
  const m = new DeliveryMeter();
  for (const e of events) m.add({ choices: [{ index: 0, delta: { content: e } }] });
  return m.delivered;
}

export async function run(): Promise<BenchRow[]> {
  // The enclave's own counter for the o200k family (merge cache emptied after every count).
  const o200k = await tokenCounterFor('gpt-4o')!;
  const RUNS = 24;
  const cases: [string, string[][]][] = [
    ['prose, 256 words', prose(256, RUNS)],
    ['prose, 4096 words', prose(4096, RUNS)],
    // Enough text to pass the hold's 4096 tokens either way (counting stops there); a new text for every run.
    ['worst case: 250-letter random words up to the hold', Array.from({ length: RUNS }, () => adversarial(false, 64 * 1024))],
    ['worst case: 250-character random CJK runs up to the hold', Array.from({ length: RUNS }, () => adversarial(true, 64 * 1024))],
  ];
  const rows: BenchRow[] = [];
  for (const [name, texts] of cases) {
    const report = { promptTokens: 5, completionTokens: 100 };
    let a = 0;
    let b = 0;
    const bytesOnly = () => meter(report, deliveredOf(texts[a++ % texts.length]!), HOLD);
    const withTokens = () => {
      const d = deliveredOf(texts[b++ % texts.length]!);
      return meter(report, d, HOLD, o200k.count(d.texts!, HOLD.maxOutputTokens));
    };
    const [floor, value] = await interleavedMedians([bytesOnly, withTokens], 5, 4, 1);
    // CPU the count adds per request; it runs on the tokenizer thread, so it is reported, not held to a target.
    rows.push({ name: `metering one answer, ${name}`, value: value!, unit: 'µs', floorName: 'byte bound only (meter over every event, charge rule)', floor: floor!, ratio: value! / floor!, target: 'informational (on the tokenizer thread)', ok: true, note: `${texts[0]!.length} events` });
  }
  // The event loop's share with the thread: posting the texts (synchronous) and the whole round trip.
  const long = prose(4096, RUNS).map((events) => deliveredOf(events).texts!);
  const thread = tokenizerThread();
  await thread.count('gpt-4o', long[0]!, HOLD.maxOutputTokens);
  let k = 0;
  let t = 0;
  const post = await medianUs(() => void thread.count('gpt-4o', long[k++ % RUNS]!, HOLD.maxOutputTokens), 24, 4);
  const inline = await medianUs(() => o200k.count(long[t++ % RUNS]!, HOLD.maxOutputTokens), 24, 4);
  const roundTrip = await medianUs(() => thread.count('gpt-4o', long[k++ % RUNS]!, HOLD.maxOutputTokens), 24, 4);
  rows.push({ name: 'event loop per settlement with the tokenizer thread, prose of 4096 words (post)', value: post, unit: 'µs', floorName: 'the same count run on the event loop', floor: inline, ratio: post / inline, target: 'ratio <= 0.1', ok: post / inline <= 0.1, note: `round trip including the count on the thread ${roundTrip.toFixed(0)} µs` });
  return rows;
}
