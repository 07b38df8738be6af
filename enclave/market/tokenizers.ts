/**
 * Real tokenizers for the model families that publish one on npm, so the enclave counts the output tokens of what it
 * delivered instead of bounding them by bytes (docs/market.md "Metering"). Which family a model belongs to is data
 * (`TOKENIZER_FAMILIES`), matched on the served offer's model name; a model matching no entry keeps the byte bound.
 *
 * Encodings (OpenAI's tiktoken: `tiktoken/model.py` MODEL_PREFIX_TO_ENCODING and `tiktoken_ext/openai_public.py`),
 * run by the pure-JavaScript `gpt-tokenizer` package (pinned in package.json):
 *  - `o200k_harmony` for the open-weight gpt-oss models (prefix "gpt-oss-"; the gpt-oss model card, §2.3, names it,
 *    201,088 tokens): the o200k_base split pattern and mergeable ranks, plus the Harmony special tokens at ids
 *    199998..201087 (<|start|>, <|channel|>, <|message|>, <|end|>, <|return|>, <|call|>, ...). Ordinary text
 *    therefore encodes exactly as under o200k_base (a test checks it); the framing
 *    tokens print nothing and are allowed for per choice and per tool call by the caller (metering.ts).
 *  - `o200k_base` for gpt-4o, gpt-4.1, gpt-4.5, gpt-5 and the o1/o3/o4 reasoning models;
 *  - `cl100k_base` for gpt-4 and gpt-3.5-turbo.
 * Special-token text inside an answer (a literal "<|endoftext|>") is counted as ordinary text, never refused.
 *
 * Cost bound. BPE over one pre-tokenized piece grows faster than linearly with its length (a 16 KiB word of random
 * letters takes about half a second), and a worker chooses the text. The text is therefore cut at safe boundaries,
 * a single space between two non-white characters, where both encodings' split patterns always end a piece before
 * the space and start the next one with it (a leading space belongs to the word after it); so no piece spans a cut,
 * and the sum of the counts of the stretches between cuts equals the count of the whole text (a property test checks
 * it). A run between two boundaries longer than `MAX_RUN_CHARS` (a long run of letters; CJK text, which has no
 * spaces) is counted by its UTF-8 bytes instead, which every byte-level BPE token covers at least one of, so the
 * result stays an upper bound of the true count and never exceeds the byte bound. Counting also stops once `stopAt`
 * is reached (the caller's cap: more tokens could not change the charge), and the rest is counted by bytes.
 * Measured in `npm run bench -- metering`.
 */
import { utf8Length } from './metering.ts';

export type EncodingName = 'o200k_harmony' | 'o200k_base' | 'cl100k_base';

/** Model families by name prefix (matched on the name after its last "/", lower-cased), most specific first. */
export const TOKENIZER_FAMILIES: readonly { readonly prefix: string; readonly encoding: EncodingName }[] = [
  { prefix: 'gpt-oss-', encoding: 'o200k_harmony' },
  { prefix: 'gpt-4o', encoding: 'o200k_base' },
  { prefix: 'chatgpt-4o-', encoding: 'o200k_base' },
  { prefix: 'gpt-4.1', encoding: 'o200k_base' },
  { prefix: 'gpt-4.5-', encoding: 'o200k_base' },
  { prefix: 'gpt-5', encoding: 'o200k_base' },
  { prefix: 'o1', encoding: 'o200k_base' },
  { prefix: 'o3', encoding: 'o200k_base' },
  { prefix: 'o4-mini', encoding: 'o200k_base' },
  { prefix: 'gpt-4', encoding: 'cl100k_base' },
  { prefix: 'gpt-3.5-turbo', encoding: 'cl100k_base' },
  { prefix: 'gpt-35-turbo', encoding: 'cl100k_base' },
];

/** A run with no safe boundary longer than this is counted by bytes (bounds BPE's superlinear cost per piece). */
export const MAX_RUN_CHARS = 256;
/** Text handed to the tokenizer per call (runs of at most MAX_RUN_CHARS each); also the granularity of `stopAt`. */
export const STRETCH_CHARS = 2048;

/** The encoding a served model's name maps to, or undefined (the byte bound applies). */
export function encodingFor(model: string): EncodingName | undefined {
  const name = model.slice(model.lastIndexOf('/') + 1).toLowerCase();
  // "o1"/"o3" name whole models ("o1", "o1-mini", "o3-2025-04-16"), not any name starting with the letter o.
  return TOKENIZER_FAMILIES.find(
    (f) =>
      name === f.prefix ||
      (name.startsWith(f.prefix) && (/^o\d/.test(f.prefix) ? name[f.prefix.length] === '-' : true)),
  )?.encoding;
}

export interface TokenCounter {
  readonly encoding: EncodingName;
  /** Tokens of `texts` (each encoded on its own), an upper bound as the module header says; stops at `stopAt`. */
  count(texts: readonly string[], stopAt?: number): number;
}

type CountFn = (text: string, options: { disallowedSpecial: Set<string> }) => number;
interface EncodingModule {
  readonly countTokens: CountFn;
  readonly setMergeCacheSize: (size: number) => void;
  readonly clearMergeCache: () => void;
}

/** Merged pieces remembered within one count (a word repeated in an answer is merged once). */
const MERGE_CACHE_ENTRIES = 10_000;

const loaders: Record<EncodingName, () => Promise<EncodingModule>> = {
  // The module per encoding loads only its own ranks (o200k: about 2.4 MB of source, some 30 MB of heap).
  o200k_harmony: () => import('gpt-tokenizer/encoding/o200k_harmony'),
  o200k_base: () => import('gpt-tokenizer/encoding/o200k_base'),
  cl100k_base: () => import('gpt-tokenizer/encoding/cl100k_base'),
};

const loaded = new Map<EncodingName, Promise<TokenCounter>>();

/** The counter for `model`'s family (loaded once per encoding, on first use), or undefined for other models. */
export function tokenCounterFor(model: string): Promise<TokenCounter> | undefined {
  const encoding = encodingFor(model);
  if (!encoding) return undefined;
  let p = loaded.get(encoding);
  if (!p) {
    p = loaders[encoding]().then((m) => {
      m.setMergeCacheSize(MERGE_CACHE_ENTRIES);
      // Emptied after every count: no piece of an answer stays in memory past its settlement, and no count runs
      // faster because of another request's words (a timing channel between clients).
      return counter(encoding, m.countTokens, STRETCH_CHARS, m.clearMergeCache);
    });
    // A failed load is retried on the next request rather than cached.
    p.catch(() => loaded.delete(encoding));
    loaded.set(encoding, p);
  }
  return p;
}

/** Ordinary text only: special-token strings in an answer are text the model produced, not control tokens. */
const ORDINARY = { disallowedSpecial: new Set<string>() };

/**
 * A counter over `countTokens` (tests pass a small `stretchChars` to cut at nearly every safe boundary); `done` runs
 * after each count, whatever happens (the loader empties the tokenizer's merge cache there).
 */
export function counter(
  encoding: EncodingName,
  countTokens: CountFn,
  stretchChars = STRETCH_CHARS,
  done: () => void = () => undefined,
): TokenCounter {
  const tokenize = (t: string): number => (t.length === 0 ? 0 : countTokens(t, ORDINARY));
  return {
    encoding,
    count(texts, stopAt = Number.POSITIVE_INFINITY) {
      try {
        return countAll(texts, stopAt);
      } finally {
        done();
      }
    },
  };
  function countAll(texts: readonly string[], stopAt: number): number {
    let n = 0;
    for (const text of texts) {
      // [from, run) is gathered for one call; [run, i) is the run since the last safe boundary.
      let from = 0;
      let run = 0;
      for (let i = 1; i <= text.length; i++) {
        if (i < text.length && !safeAt(text, i)) continue;
        if (i - run > MAX_RUN_CHARS) {
          n += tokenize(text.slice(from, run)) + utf8Length(text.slice(run, i));
          from = i;
        } else if (i - from >= stretchChars || i === text.length) {
          n += tokenize(text.slice(from, i));
          from = i;
        }
        run = i;
        if (n >= stopAt) {
          n += utf8Length(text.slice(from));
          break;
        }
      }
    }
    return n;
  }
}

const SPACE = 0x20;
/** JavaScript's `\s` (the split patterns' whitespace): WhiteSpace and LineTerminator of ECMA-262. */
const isWhite = (c: number): boolean =>
  c === SPACE ||
  (c >= 0x09 && c <= 0x0d) ||
  c === 0xa0 ||
  c === 0x1680 ||
  (c >= 0x2000 && c <= 0x200a) ||
  c === 0x2028 ||
  c === 0x2029 ||
  c === 0x202f ||
  c === 0x205f ||
  c === 0x3000 ||
  c === 0xfeff;
/** A safe boundary at i: a non-white character, then a space, then a non-white character (see the module header). */
const safeAt = (t: string, i: number): boolean =>
  t.charCodeAt(i) === SPACE && i + 1 < t.length && !isWhite(t.charCodeAt(i - 1)) && !isWhite(t.charCodeAt(i + 1));
