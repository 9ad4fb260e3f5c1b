import type { Backend } from "../ggml/backend.js";
import { readGguf, readTensorF32 } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import type { LlamaConfig } from "./config.js";
import { readLlamaConfig } from "./llama-gguf.js";
import { LlamaModel, type ModelOptions } from "./model.js";
import type { WeightSource } from "./weights.js";

/** Weights straight from a GGUF file, dequantised to f32 by the GGUF reader. */
export function ggufWeightSource(file: GgufFile): WeightSource {
  const names = new Set(file.tensors.map((t) => t.name));
  return { get: (name) => (names.has(name) ? readTensorF32(file, name) : undefined) };
}

export interface LoadedModel {
  model: LlamaModel;
  config: LlamaConfig;
  file: GgufFile;
  /** True when the file's matrices are stored as F16/BF16/quantised (not F32). */
  halfPrecision: boolean;
}

/**
 * Loads a Llama/Qwen2 GGUF into the engine. RoPE style follows the architecture the way llama.cpp
 * does. Options pass through (LoRA, regression head, frozen weight type).
 */
export async function loadLlamaGguf(
  backend: Backend,
  path: string,
  opts: ModelOptions = {},
): Promise<LoadedModel> {
  const file = await readGguf(path);
  const config = readLlamaConfig(file);
  const matrices = file.tensors.filter((t) => t.shape.length === 2);
  // a Q8_0 file frozen under LoRA stays Q8_0 in memory (its values requantise to the same blocks) unless
  // the caller names another storage
  const q8 = matrices.some((t) => t.type === "Q8_0");
  const frozenType = opts.frozenType ?? (opts.lora && !opts.trainBase && q8 ? "q8_0" : undefined);
  const model = await LlamaModel.create(backend, config, ggufWeightSource(file), {
    ...opts,
    frozenType,
  });
  return { model, config, file, halfPrecision: matrices.some((t) => t.type !== "F32") };
}
