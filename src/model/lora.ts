import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";

/** Projections LoRA can adapt, named as in PEFT's Llama target_modules (q_proj → "q", ...). */
export const LORA_TARGETS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export interface LoraOptions {
  rank: number;
  alpha: number;
  targets: readonly LoraTarget[];
}

/** llama.cpp tensor part for each target. */
export const LORA_TARGET_TENSOR: Readonly<Record<LoraTarget, string>> = {
  q: "attn_q",
  k: "attn_k",
  v: "attn_v",
  o: "attn_output",
  gate: "ffn_gate",
  up: "ffn_up",
  down: "ffn_down",
};

/** Adapter tensor names: blk.N.attn_q.lora_a [in, r] and blk.N.attn_q.lora_b [r, out] (ggml order). */
export const loraNames = (layer: number, target: LoraTarget): { a: string; b: string } => {
  const base = `blk.${layer}.${LORA_TARGET_TENSOR[target]}`;
  return { a: `${base}.lora_a`, b: `${base}.lora_b` };
};

export interface LoraPair {
  a: Tensor;
  b: Tensor;
  scale: number;
}

/**
 * y = W·x (+ bias) + (alpha/r)·B·(A·x). ggml_mul_mat(W, x) computes x·Wᵀ per token, so with W [in, out]
 * and x [in, N] the result is [out, N]; A [in, r] gives [r, N] and B [r, out] gives [out, N].
 */
export function linear(c: Context, x: Tensor, w: Tensor, bias?: Tensor, lora?: LoraPair): Tensor {
  let y = c.mulMat(w, x); // [out, N]
  if (bias) y = c.add(y, bias);
  if (lora) {
    const down = c.mulMat(lora.a, x); // [r, N]
    const up = c.mulMat(lora.b, down); // [out, N]
    y = c.add(y, lora.scale === 1 ? up : c.scale(up, lora.scale));
  }
  return y;
}
