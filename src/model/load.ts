import type { Backend } from "../ggml/backend.js";
import { readGguf, readTensorF32 } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import type { LlamaConfig } from "./config.js";
import { readLlamaConfig } from "./llama-gguf.js";
import { type FrozenType, LlamaModel, LORA_FROZEN_DEFAULT, type ModelOptions } from "./model.js";
import type { WeightSource } from "./weights.js";

/** Weights straight from a GGUF file, dequantised to f32 by the GGUF reader. */
export function ggufWeightSource(file: GgufFile): WeightSource {
  const names = new Set(file.tensors.map((t) => t.name));
  return { get: (name) => (names.has(name) ? readTensorF32(file, name) : undefined) };
}

/** The storage of a GGUF's block matrices where the engine can keep it frozen as is, else F32. */
export function ggufMatrixType(file: GgufFile): "F32" | "F16" | "BF16" | "Q8_0" {
  // the attention/FFN matrices decide: llama.cpp's converters may keep token_embd or output in another type
  const t = file.tensors.find((x) => x.name.startsWith("blk.") && x.shape.length === 2)?.type;
  return t === "Q8_0" || t === "F16" || t === "BF16" ? t : "F32";
}

/** The frozen storage that holds a GGUF's matrices exactly as the file stores them (f32 for other types). */
export function ggufStorage(file: GgufFile): FrozenType {
  return ggufMatrixType(file).toLowerCase() as FrozenType;
}

/**
 * The frozen storage LoRA on a GGUF base gets by default: the file's own (Q8_0/F16/BF16), so a quantised
 * base stays quantised in memory (its values requantise to the same blocks); LORA_FROZEN_DEFAULT for F32.
 */
export function defaultFrozenType(file: GgufFile): FrozenType {
  const own = ggufStorage(file);
  return own === "f32" ? LORA_FROZEN_DEFAULT : own;
}

export interface LoadedModel {
  model: LlamaModel;
  config: LlamaConfig;
  file: GgufFile;
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
  const frozenType = opts.frozenType ?? (opts.lora && !opts.trainBase ? defaultFrozenType(file) : undefined);
  const model = await LlamaModel.create(backend, config, ggufWeightSource(file), {
    ...opts,
    frozenType,
  });
  return { model, config, file };
}
