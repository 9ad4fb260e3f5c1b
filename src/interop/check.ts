/**
 * `steerlm model check <hf-dir>`: steerlm's forward pass on the Hugging Face weights against llama.cpp's on
 * the converted GGUF. Our side reads the checkpoint as it is (no q/k permutation) and rotates halves like
 * HF's `rotate_half` (NEOX style); llama.cpp reads the permuted GGUF and rotates adjacent pairs. Agreement
 * therefore checks the converter's layout as well as both engines' arithmetic.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Backend } from "../ggml/backend.js";
import {
  type CheckOptions,
  compareLogProbs,
  llamaCppProbabilities,
  type ModelCheckResult,
} from "../model/check.js";
import { forwardLogits, logSoftmaxRows } from "../model/infer.js";
import { LlamaModel } from "../model/model.js";
import type { WeightSource } from "../model/weights.js";
import { SteerlmError } from "../util/errors.js";
import { convertHfToGguf, type HfModel, openHfModel } from "./convert.js";
import { readSafetensorsF32 } from "./safetensors.js";

export type HfCheckOptions = CheckOptions;

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
    return { ...compareLogProbs(ours, V, refProbs), weightType: "f32" };
  } finally {
    backend.free();
    rmSync(work, { recursive: true, force: true });
  }
}
