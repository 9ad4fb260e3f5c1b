import { writeFileAtomic } from "../util/atomic.js";
import { SteerlmError } from "../util/errors.js";
import { Progress } from "../util/progress.js";
import { BYTE_SYMBOLS, gpt2Split, toByteLevel } from "./byte-level.js";
import { addedToken, byteLevelBpeModel, type HfTokenizerJson } from "./hf-json.js";
import { CONTROL_TOKEN_NAMES } from "./types.js";

/**
 * Trains a byte-level BPE (GPT-2's scheme) and returns it as a Hugging Face tokenizer.json object.
 *
 * Why byte-level BPE: every UTF-8 input is encodable (no unknown token), it needs no normalizer, and llama.cpp
 * implements exactly this model + pre-tokenizer ("gpt2" / "gpt-2"), so the same vocabulary tokenizes the same in
 * our HF path and in a GGUF. Training is deterministic: the most frequent adjacent pair is merged next, ties
 * going to the smaller (left id, right id), as Hugging Face's trainer does.
 *
 * Ids: the 256 byte symbols (GPT-2's order), then one id per new merged piece, then the special tokens
 * (`<|endoftext|>` for BOS/EOS, then `<extra_id_0..2>`), so `vocabSize` counts all of them.
 */
export interface BpeTrainOptions {
  /** Total ids including the 256 byte symbols, the special tokens and `reserved`. */
  vocabSize: number;
  /** Ids of `vocabSize` left for tokens the caller adds after training (default 0): not merged pieces. */
  reserved?: number;
  /** Pairs seen fewer times than this are never merged (default 2). */
  minFrequency?: number;
  /** Added special tokens, in id order (default: `<|endoftext|>` and the three SteerLM control tokens). */
  specialTokens?: readonly string[];
  /** Show a progress bar (default: when stderr is a terminal). */
  progress?: boolean;
}

export const DEFAULT_SPECIAL_TOKENS: readonly string[] = ["<|endoftext|>", ...CONTROL_TOKEN_NAMES];

// Pair (left, right) as one number; ids stay below 2^21, so the key is exact in a double.
const PAIR_SHIFT = 2 ** 21;
const pairKey = (a: number, b: number) => a * PAIR_SHIFT + b;

export function trainByteLevelBpe(texts: Iterable<string>, opts: BpeTrainOptions): HfTokenizerJson {
  const specials = opts.specialTokens ?? DEFAULT_SPECIAL_TOKENS;
  const minFrequency = opts.minFrequency ?? 2;
  const fixed = BYTE_SYMBOLS.length + specials.length + (opts.reserved ?? 0);
  const targetMerged = opts.vocabSize - fixed;
  if (!Number.isInteger(opts.vocabSize) || targetMerged < 0 || opts.vocabSize >= PAIR_SHIFT)
    throw new SteerlmError(
      `vocab size ${opts.vocabSize} must be an integer from ${fixed} to ${PAIR_SHIFT - 1} ` +
        `(${BYTE_SYMBOLS.length} bytes, ${specials.length} special tokens` +
        `${opts.reserved ? `, ${opts.reserved} kept for added tokens` : ""} and the merged pieces)`,
    );

  // 1. Count pre-tokenized words (raw text first: converting each distinct word to bytes once is cheaper).
  const rawCounts = new Map<string, number>();
  for (const text of texts) {
    for (const w of gpt2Split(text)) rawCounts.set(w, (rawCounts.get(w) ?? 0) + 1);
  }

  // 2. Words as symbol-id sequences. Symbols: the byte alphabet first.
  const pieces: string[] = [...BYTE_SYMBOLS];
  const idOf = new Map<string, number>(pieces.map((p, i) => [p, i]));
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [raw, count] of rawCounts) {
    words.push(Array.from(toByteLevel(raw), (ch) => idOf.get(ch)!));
    counts.push(count);
  }

  // 3. Pair statistics: how often each pair occurs (weighted) and in which words.
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const heap = new PairHeap();
  for (let w = 0; w < words.length; w++) {
    const sym = words[w]!;
    for (let i = 0; i + 1 < sym.length; i++) {
      const key = pairKey(sym[i]!, sym[i + 1]!);
      pairCount.set(key, (pairCount.get(key) ?? 0) + counts[w]!);
      addWord(pairWords, key, w);
    }
  }
  for (const [key, count] of pairCount) heap.push(count, key);

  // 4. Merge the best pair until the vocabulary is full or no pair is frequent enough.
  const merges: string[] = [];
  const progress = new Progress({ label: "training BPE", total: targetMerged, enabled: opts.progress });
  let added = 0;
  while (added < targetMerged) {
    const top = heap.pop();
    if (!top) break;
    const [count, key] = top;
    if (pairCount.get(key) !== count) continue; // stale entry: a fresher one is in the heap
    if (count < minFrequency) break;
    const a = Math.floor(key / PAIR_SHIFT);
    const b = key - a * PAIR_SHIFT;
    const merged = pieces[a]! + pieces[b]!;
    let newId = idOf.get(merged);
    if (newId === undefined) {
      newId = pieces.length;
      pieces.push(merged);
      idOf.set(merged, newId);
      added++;
      progress.tick(1);
    }
    merges.push(`${pieces[a]!} ${pieces[b]!}`);

    const delta = new Map<number, number>();
    for (const w of pairWords.get(key) ?? []) {
      const sym = words[w]!;
      const next = applyMerge(sym, a, b, newId);
      if (next === sym) continue;
      // Pair counts of this word before and after the merge: only the difference changes the totals.
      for (let i = 0; i + 1 < sym.length; i++) {
        const k = pairKey(sym[i]!, sym[i + 1]!);
        delta.set(k, (delta.get(k) ?? 0) - counts[w]!);
      }
      for (let i = 0; i + 1 < next.length; i++) {
        const k = pairKey(next[i]!, next[i + 1]!);
        delta.set(k, (delta.get(k) ?? 0) + counts[w]!);
        if (next[i]! === newId || next[i + 1]! === newId) {
          addWord(pairWords, k, w);
        }
      }
      words[w] = next;
    }
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const c = (pairCount.get(k) ?? 0) + d;
      if (c > 0) {
        pairCount.set(k, c);
        heap.push(c, k);
      } else {
        pairCount.delete(k);
        pairWords.delete(k);
      }
    }
    pairCount.delete(key);
    pairWords.delete(key);
  }
  progress.finish();

  return buildTokenizerJson(pieces, merges, specials);
}

function addWord(pairWords: Map<number, Set<number>>, key: number, word: number): void {
  const set = pairWords.get(key);
  if (set) set.add(word);
  else pairWords.set(key, new Set([word]));
}

/** `sym` with every non-overlapping (a, b), left to right, replaced by `id`; the same array if none. */
function applyMerge(sym: number[], a: number, b: number, id: number): number[] {
  let out: number[] | undefined;
  for (let i = 0; i < sym.length; i++) {
    if (i + 1 < sym.length && sym[i] === a && sym[i + 1] === b) {
      out ??= sym.slice(0, i);
      out.push(id);
      i++;
    } else if (out) {
      out.push(sym[i]!);
    }
  }
  return out ?? sym;
}

function buildTokenizerJson(
  pieces: string[],
  merges: string[],
  specials: readonly string[],
): HfTokenizerJson {
  const vocab: Record<string, number> = {};
  pieces.forEach((p, i) => {
    vocab[p] = i;
  });
  const addedTokens = specials.map((content, i) => addedToken(pieces.length + i, content, true));
  for (const t of addedTokens) vocab[t.content] = t.id;
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: byteLevelBpeModel(vocab, merges),
  };
}

export function saveTokenizerJson(path: string, json: HfTokenizerJson): void {
  writeFileAtomic(path, `${JSON.stringify(json, null, 2)}\n`);
}

/** Max-heap on (count desc, key asc); stale entries are skipped by the caller. */
class PairHeap {
  private readonly counts: number[] = [];
  private readonly keys: number[] = [];

  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): void {
    const count = this.counts[i]!;
    const key = this.keys[i]!;
    this.counts[i] = this.counts[j]!;
    this.keys[i] = this.keys[j]!;
    this.counts[j] = count;
    this.keys[j] = key;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): [number, number] | undefined {
    const n = this.counts.length;
    if (n === 0) return undefined;
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    this.swap(0, n - 1);
    this.counts.pop();
    this.keys.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < n - 1 && this.above(l, best)) best = l;
      if (r < n - 1 && this.above(r, best)) best = r;
      if (best === i) break;
      this.swap(i, best);
      i = best;
    }
    return top;
  }
}
