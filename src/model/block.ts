import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { type AttentionInputs, type AttentionWeights, attention } from "./attention.js";
import type { LlamaConfig } from "./config.js";
import { type MlpWeights, mlp } from "./mlp.js";

export interface BlockWeights {
  attnNorm: Tensor; // [D]
  ffnNorm: Tensor; // [D]
  attn: AttentionWeights;
  mlp: MlpWeights;
}

/** Pre-norm transformer block: x + attn(norm(x)), then + mlp(norm(·)). x [D, N] → [D, N]. */
export function block(
  c: Context,
  cfg: LlamaConfig,
  w: BlockWeights,
  x: Tensor,
  inp: AttentionInputs,
): Tensor {
  const h = c.mul(c.rmsNorm(x, cfg.rmsNormEps), w.attnNorm);
  const x1 = c.add(x, attention(c, cfg, w.attn, h, inp));
  const h2 = c.mul(c.rmsNorm(x1, cfg.rmsNormEps), w.ffnNorm);
  return c.add(x1, mlp(c, w.mlp, h2));
}
