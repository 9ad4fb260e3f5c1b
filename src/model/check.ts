import type { ControlledEvaluateInputItem, Token } from "node-llama-cpp";
import { Backend } from "../ggml/backend.js";
import { loadLlamaModel } from "../gguf/llama-cpp.js";
import { readGguf } from "../gguf/reader.js";
import { SteerlmError } from "../util/errors.js";
import { forwardLogits, logSoftmaxRows } from "./infer.js";
import { ggufStorage, loadLlamaGguf } from "./load.js";
import type { FrozenType } from "./model.js";

export interface ModelCheckResult {
  tokens: number;
  vocabSize: number;
  /**
   * Max |our log p − llama.cpp log p| over every position and every token to which llama.cpp gives a
   * probability of at least the smallest normal float32 (see FLT_MIN).
   */
  maxAbsLogProbDiff: number;
  /** Fraction of positions where both pick the same most likely next token. */
  top1Agreement: number;
  /** How the engine held the file's matrices for the comparison: as stored. */
  weightType: FrozenType;
}

export interface CheckOptions {
  text?: string;
  threads?: number;
  maxTokens?: number;
}

export const DEFAULT_CHECK_TEXT =
  "The quick brown fox jumps over the lazy dog. Steering a language model means choosing the attributes of its answer.";

/**
 * Smallest normal float32 (1.17549435e-38). llama.cpp's probabilities are float32: below this they are
 * denormals with few significant bits (log p ≈ -87 and lower), so their logarithms are not comparable at
 * 1e-3. Peaked distributions (deep random models, trained models) routinely have such tails, so only
 * probabilities at or above this floor enter the log-probability comparison.
 */
export const FLT_MIN = 2 ** -126;

/**
 * Runs our forward pass and llama.cpp's (through node-llama-cpp) on the same tokens and compares the
 * next-token log-probabilities. llama.cpp returns probabilities, not raw logits, so log-probabilities
 * (logits up to a per-row constant) are what can be compared exactly.
 */
export async function checkModelAgainstLlamaCpp(
  path: string,
  opts: CheckOptions = {},
): Promise<ModelCheckResult> {
  const { tokens, refProbs } = await llamaCppProbabilities(path, opts);
  const backend = new Backend(opts.threads);
  try {
    // the file's own values as stored (an F16, BF16 or Q8_0 file read exactly, never rounded again)
    const weightType = ggufStorage(await readGguf(path));
    const loaded = await loadLlamaGguf(backend, path, { trainBase: false, frozenType: weightType });
    const V = loaded.config.vocabSize;
    let ours: Float64Array;
    try {
      ours = logSoftmaxRows(forwardLogits(backend, loaded.model, tokens), V);
    } finally {
      loaded.model.free();
    }
    return { ...compareLogProbs(ours, V, refProbs), weightType };
  } finally {
    backend.free();
  }
}

/** llama.cpp's next-token distribution after every token of the sample (full vocabulary, temperature 1). */
export async function llamaCppProbabilities(
  gguf: string,
  opts: CheckOptions,
): Promise<{ tokens: number[]; refProbs: Array<Map<number, number>> }> {
  const { model: ref } = await loadLlamaModel(gguf);
  try {
    const tokens = Array.from(ref.tokenize(opts.text ?? DEFAULT_CHECK_TEXT)).slice(
      0,
      opts.maxTokens ?? 64,
    ) as number[];
    if (tokens.length === 0) throw new SteerlmError("the sample text has no tokens");
    // F32 KV cache and no flash attention: llama.cpp's defaults (F16 cache) round K and V, which is a
    // deployment choice, not the model's arithmetic
    const ctx = await ref.createContext({
      contextSize: Math.max(32, tokens.length + 8),
      threads: opts.threads,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
    });
    try {
      const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
      const input: ControlledEvaluateInputItem[] = tokens.map((t) => [
        t as Token,
        { generateNext: { probabilities: true, options: sampling } },
      ]);
      const res = await ctx.getSequence().controlledEvaluate(input);
      const refProbs = tokens.map((_, i) => {
        const p = res[i]?.next.probabilities;
        if (!p) throw new Error(`llama.cpp returned no probabilities at position ${i}`);
        return p as Map<number, number>;
      });
      return { tokens, refProbs };
    } finally {
      await ctx.dispose();
    }
  } finally {
    await ref.dispose();
  }
}

/**
 * Compares our log-probabilities (`ours`: one row of `V` per position) with llama.cpp's probabilities:
 * the largest |Δ log p| over probabilities ≥ FLT_MIN, and how often both rank the same token first.
 */
export function compareLogProbs(
  ours: Float64Array,
  V: number,
  refProbs: ReadonlyArray<ReadonlyMap<number, number>>,
): Pick<ModelCheckResult, "tokens" | "vocabSize" | "maxAbsLogProbDiff" | "top1Agreement"> {
  let maxDiff = 0;
  let agree = 0;
  refProbs.forEach((probs, t) => {
    let refTop = -1;
    let refBest = -1;
    for (const [tok, p] of probs) {
      if (p > refBest) [refBest, refTop] = [p, tok];
      if (p >= FLT_MIN) maxDiff = Math.max(maxDiff, Math.abs(Math.log(p) - ours[t * V + tok]!));
    }
    let ourTop = 0;
    for (let v = 1; v < V; v++) if (ours[t * V + v]! > ours[t * V + ourTop]!) ourTop = v;
    if (ourTop === refTop) agree++;
  });
  return {
    tokens: refProbs.length,
    vocabSize: V,
    maxAbsLogProbDiff: maxDiff,
    top1Agreement: agree / refProbs.length,
  };
}
