import type { Rng } from "../util/rng.js";
import type { LlamaConfig } from "./config.js";
import { type LlamaLayerTensor, llamaTensorName } from "./tensor-names.js";

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

/** Every tensor of a Llama-family model with its ggml shape, in the order steerlm writes them. */
export function llamaTensorSpecs(cfg: LlamaConfig): TensorSpec[] {
  const d = cfg.hiddenSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  const matrix = (name: string, shape: number[]): TensorSpec => ({
    name,
    shape,
    init: "normal",
    decay: true,
  });
  const specs: TensorSpec[] = [matrix(llamaTensorName("token_embd"), [d, cfg.vocabSize])];
  for (let l = 0; l < cfg.numLayers; l++) {
    const m = (kind: LlamaLayerTensor, shape: number[]) =>
      specs.push(matrix(llamaTensorName(kind, l), shape));
    const v = (kind: LlamaLayerTensor, n: number, init: "one" | "zero") =>
      specs.push({ name: llamaTensorName(kind, l), shape: [n], init, decay: false });
    v("attn_norm", d, "one");
    m("attn_q", [d, q]);
    m("attn_k", [d, kv]);
    m("attn_v", [d, kv]);
    if (cfg.qkvBias) {
      v("attn_q.bias", q, "zero");
      v("attn_k.bias", kv, "zero");
      v("attn_v.bias", kv, "zero");
    }
    m("attn_output", [q, d]);
    v("ffn_norm", d, "one");
    m("ffn_gate", [d, cfg.ffnSize]);
    m("ffn_up", [d, cfg.ffnSize]);
    m("ffn_down", [cfg.ffnSize, d]);
  }
  specs.push({ name: llamaTensorName("output_norm"), shape: [d], init: "one", decay: false });
  if (!cfg.tiedEmbeddings) specs.push(matrix(llamaTensorName("output"), [d, cfg.vocabSize]));
  return specs;
}

/** Parameters of a model of this config (every tensor's values). */
export function countParameters(cfg: LlamaConfig): number {
  return llamaTensorSpecs(cfg).reduce((n, s) => n + numel(s.shape), 0);
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
