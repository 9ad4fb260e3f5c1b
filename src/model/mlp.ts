import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { type LoraPair, linear } from "./lora.js";

export interface MlpWeights {
  gate: Tensor; // [D, F]
  up: Tensor; // [D, F]
  down: Tensor; // [F, D]
  lora: Partial<Record<"gate" | "up" | "down", LoraPair>>;
}

/** SwiGLU: down(silu(gate·x) ⊙ up·x); x [D, N] → [F, N] → [D, N]. */
export function mlp(c: Context, w: MlpWeights, x: Tensor): Tensor {
  const g = linear(c, x, w.gate, undefined, w.lora.gate);
  const u = linear(c, x, w.up, undefined, w.lora.up);
  return linear(c, c.swigluSplit(g, u), w.down, undefined, w.lora.down);
}
