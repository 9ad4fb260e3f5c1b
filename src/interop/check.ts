/**
 * `steerlm model check <hf-dir>`: steerlm's forward pass on the Hugging Face weights against llama.cpp's on
 * the converted GGUF. Our side reads the checkpoint as it is (no q/k permutation) and rotates halves like
 * HF's `rotate_half` (NEOX style); llama.cpp reads the permuted GGUF and rotates adjacent pairs. Agreement
 * therefore checks the converter's layout as well as both engines' arithmetic.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ControlledEvaluateInputItem, Token } from "node-llama-cpp";
import { Backend } from "../ggml/backend.js";
import type { ModelCheckResult } from "../model/check.js";
import { DEFAULT_CHECK_TEXT } from "../model/check.js";
import { forwardLogits, logSoftmaxRows } from "../model/infer.js";
import { LlamaModel } from "../model/model.js";
import type { WeightSource } from "../model/weights.js";
import { getLlamaRuntime } from "../runtime/llama.js";
import { SteerlmError } from "../util/errors.js";
import { convertHfToGguf, type HfModel, openHfModel } from "./convert.js";
import { readSafetensorsF32 } from "./safetensors.js";

/**
 * Smallest normal float32. llama.cpp's probabilities are float32: below this they are denormals with few
 * significant bits (log p ≈ -87 and lower), so their logarithms are not comparable at 1e-3. Peaked
 * distributions (deep random models, trained models) routinely have such tails.
 */
const FLT_MIN = 2 ** -126;

export interface HfCheckOptions {
  text?: string;
  threads?: number;
  maxTokens?: number;
}

/** The checkpoint's tensors under GGUF names, in HF's own row order (for NEOX-style RoPE). */
export function hfWeightSource(model: HfModel): WeightSource {
  const byName = new Map(model.plan.map((e) => [e.gguf, e]));
  return {
    get: (name) => {
      const e = byName.get(name);
      return e === undefined ? undefined : readSafetensorsF32(e.source);
    },
  };
}

export async function checkHfModelAgainstLlamaCpp(
  dir: string,
  opts: HfCheckOptions = {},
): Promise<ModelCheckResult> {
  const hf = await openHfModel(dir);
  if (hf.spec.ropeScaling !== null) {
    throw new SteerlmError(
      `${hf.spec.source}: RoPE scaling "${hf.spec.ropeScaling.type}" is converted for llama.cpp but steerlm's forward pass does not implement it`,
      "`steerlm model convert` still works; only the comparison is unavailable",
    );
  }
  const work = mkdtempSync(join(tmpdir(), "steerlm-check-"));
  const backend = new Backend(opts.threads);
  try {
    const gguf = join(work, "model.gguf");
    await convertHfToGguf(dir, gguf, { type: "f32" });
    const { tokens, refProbs } = await llamaCppProbabilities(gguf, opts);
    const model = await LlamaModel.create(backend, hf.spec.config, hfWeightSource(hf), {
      ropeMode: "neox",
      trainBase: false,
      frozenType: "f32",
    });
    const V = hf.spec.config.vocabSize;
    let ours: Float64Array;
    try {
      ours = logSoftmaxRows(forwardLogits(backend, model, tokens), V);
    } finally {
      model.free();
    }
    let maxDiff = 0;
    let agree = 0;
    for (let t = 0; t < tokens.length; t++) {
      const probs = refProbs[t] as Map<number, number>;
      let refTop = -1;
      let refBest = -1;
      for (const [tok, p] of probs) {
        if (p > refBest) [refBest, refTop] = [p, tok];
        if (p >= FLT_MIN) maxDiff = Math.max(maxDiff, Math.abs(Math.log(p) - (ours[t * V + tok] as number)));
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
      weightType: "f32",
    };
  } finally {
    backend.free();
    rmSync(work, { recursive: true, force: true });
  }
}

/** llama.cpp's next-token distribution after every token of the sample (full vocabulary, temperature 1). */
async function llamaCppProbabilities(
  gguf: string,
  opts: HfCheckOptions,
): Promise<{ tokens: number[]; refProbs: Array<Map<number, number>> }> {
  const llama = await getLlamaRuntime();
  const ref = await llama.loadModel({ modelPath: gguf });
  try {
    const tokens = Array.from(ref.tokenize(opts.text ?? DEFAULT_CHECK_TEXT)).slice(
      0,
      opts.maxTokens ?? 64,
    ) as number[];
    if (tokens.length === 0) throw new SteerlmError("the sample text has no tokens");
    // F32 KV cache, no flash attention: llama.cpp's F16 cache would round K/V (a deployment choice).
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
