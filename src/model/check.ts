import type { ControlledEvaluateInputItem, Token } from "node-llama-cpp";
import { Backend } from "../ggml/backend.js";
import { getLlamaRuntime } from "../runtime/llama.js";
import { forwardLogits, logSoftmaxRows } from "./infer.js";
import { loadLlamaGguf } from "./load.js";

export interface ModelCheckResult {
  tokens: number;
  vocabSize: number;
  /** Max |our log p − llama.cpp log p| over every position and every token llama.cpp gives p > 0. */
  maxAbsLogProbDiff: number;
  /** Fraction of positions where both pick the same most likely next token. */
  top1Agreement: number;
  /** Weight type used for our side: f16 when the file stores half-precision matrices (as llama.cpp computes). */
  weightType: "f32" | "f16";
}

export const DEFAULT_CHECK_TEXT =
  "The quick brown fox jumps over the lazy dog. Steering a language model means choosing the attributes of its answer.";

/**
 * Runs our forward pass and llama.cpp's (through node-llama-cpp) on the same tokens and compares the
 * next-token log-probabilities. llama.cpp returns probabilities, not raw logits, so log-probabilities
 * (logits up to a per-row constant) are what can be compared exactly.
 */
export async function checkModelAgainstLlamaCpp(
  path: string,
  opts: { text?: string; threads?: number; maxTokens?: number } = {},
): Promise<ModelCheckResult> {
  const llama = await getLlamaRuntime();
  const ref = await llama.loadModel({ modelPath: path });
  const backend = new Backend(opts.threads);
  try {
    const tokens = Array.from(ref.tokenize(opts.text ?? DEFAULT_CHECK_TEXT)).slice(
      0,
      opts.maxTokens ?? 64,
    ) as number[];
    // F32 KV cache and no flash attention: llama.cpp's defaults (F16 cache) round K and V, which is a
    // deployment choice, not the model's arithmetic
    const ctx = await ref.createContext({
      contextSize: Math.max(32, tokens.length + 8),
      threads: opts.threads,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
    });
    let refProbs: Array<Map<number, number> | undefined>;
    try {
      const seq = ctx.getSequence();
      const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
      const input: ControlledEvaluateInputItem[] = tokens.map((t) => [
        t as Token,
        { generateNext: { probabilities: true, options: sampling } },
      ]);
      const res = await seq.controlledEvaluate(input);
      refProbs = tokens.map((_, i) => res[i]?.next.probabilities as Map<number, number> | undefined);
    } finally {
      await ctx.dispose();
    }
    const probe = await loadLlamaGguf(backend, path, { trainBase: false, frozenType: "f32" });
    const halfPrecision = probe.halfPrecision;
    let loaded = probe;
    if (halfPrecision) {
      probe.model.free();
      loaded = await loadLlamaGguf(backend, path, { trainBase: false, frozenType: "f16" });
    }
    const V = loaded.config.vocabSize;
    const ours = logSoftmaxRows(forwardLogits(backend, loaded.model, tokens), V);
    loaded.model.free();
    let maxDiff = 0;
    let agree = 0;
    for (let t = 0; t < tokens.length; t++) {
      const probs = refProbs[t];
      if (!probs) throw new Error(`llama.cpp returned no probabilities at position ${t}`);
      let refTop = -1;
      let refBest = -1;
      for (const [tok, p] of probs) {
        if (p > refBest) {
          refBest = p;
          refTop = tok;
        }
        if (p > 0) maxDiff = Math.max(maxDiff, Math.abs(Math.log(p) - (ours[t * V + tok] as number)));
      }
      let ourTop = 0;
      for (let v = 1; v < V; v++)
        if ((ours[t * V + v] as number) > (ours[t * V + ourTop] as number)) ourTop = v;
      if (ourTop === refTop) agree++;
    }
    return {
      tokens: tokens.length,
      vocabSize: V,
      maxAbsLogProbDiff: maxDiff,
      top1Agreement: agree / tokens.length,
      weightType: halfPrecision ? "f16" : "f32",
    };
  } finally {
    backend.free();
    await ref.dispose();
  }
}
