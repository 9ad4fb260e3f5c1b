import type { Rng } from "../util/rng.js";
import type { LlamaConfig } from "./config.js";

/**
 * Weights are addressed by llama.cpp's GGUF tensor names (token_embd.weight, blk.N.attn_q.weight, ...)
 * and shaped in ggml order (ne0 first): a linear layer from `in` to `out` is [in, out]. Any loader
 * (GGUF, safetensors later) only has to provide this interface.
 */
export interface WeightSource {
  /** Dequantised f32 data of a tensor in ggml order, or undefined when the source lacks it. */
  get(name: string): Float32Array | undefined | Promise<Float32Array | undefined>;
}

export interface TensorSpec {
  name: string;
  /** ggml order (ne0 first). */
  shape: number[];
  /** RMSNorm gains start at 1, biases at 0, matrices random. */
  init: "one" | "zero" | "normal";
  /** Matrices take weight decay; norms and biases do not. */
  decay: boolean;
}

export const blockTensor = (layer: number, part: string): string => `blk.${layer}.${part}`;

/** Every tensor of a Llama-family model with its ggml shape. */
export function llamaTensorSpecs(cfg: LlamaConfig): TensorSpec[] {
  const d = cfg.hiddenSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  const specs: TensorSpec[] = [
    { name: "token_embd.weight", shape: [d, cfg.vocabSize], init: "normal", decay: true },
  ];
  for (let l = 0; l < cfg.numLayers; l++) {
    const t = (part: string, shape: number[], init: TensorSpec["init"], decay: boolean) =>
      specs.push({ name: blockTensor(l, part), shape, init, decay });
    t("attn_norm.weight", [d], "one", false);
    t("attn_q.weight", [d, q], "normal", true);
    t("attn_k.weight", [d, kv], "normal", true);
    t("attn_v.weight", [d, kv], "normal", true);
    if (cfg.qkvBias) {
      t("attn_q.bias", [q], "zero", false);
      t("attn_k.bias", [kv], "zero", false);
      t("attn_v.bias", [kv], "zero", false);
    }
    t("attn_output.weight", [q, d], "normal", true);
    t("ffn_norm.weight", [d], "one", false);
    t("ffn_gate.weight", [d, cfg.ffnSize], "normal", true);
    t("ffn_up.weight", [d, cfg.ffnSize], "normal", true);
    t("ffn_down.weight", [cfg.ffnSize, d], "normal", true);
  }
  specs.push({ name: "output_norm.weight", shape: [d], init: "one", decay: false });
  if (!cfg.tiedEmbeddings)
    specs.push({ name: "output.weight", shape: [d, cfg.vocabSize], init: "normal", decay: true });
  return specs;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** The std of a new model's random matrices: GPT-2's and Llama's initializer range. */
export const INIT_STD = 0.02;

/** A tensor's initial values: N(0, std²) for "normal" (drawn from `rng`), else all ones or zeros. */
export function initTensor(spec: Pick<TensorSpec, "shape" | "init">, rng: Rng, std: number): Float32Array {
  const n = numel(spec.shape);
  return spec.init === "normal"
    ? rng.normalArray(n, std)
    : new Float32Array(n).fill(spec.init === "one" ? 1 : 0);
}

/** Random initialisation (N(0, std²) matrices, unit norms, zero biases), deterministic given the RNG. */
export function initLlamaWeights(cfg: LlamaConfig, rng: Rng, std = INIT_STD): Map<string, Float32Array> {
  return new Map(llamaTensorSpecs(cfg).map((s) => [s.name, initTensor(s, rng, std)]));
}

/** A WeightSource over an in-memory map. */
export function mapSource(m: ReadonlyMap<string, Float32Array>): WeightSource {
  return { get: (name) => m.get(name) };
}
