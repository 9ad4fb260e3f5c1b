import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { type LoraPair, linear } from "./lora.js";
import type { Tape } from "./tape.js";

export interface MlpWeights {
  gate: Tensor; // [D, F]
  up: Tensor; // [D, F]
  down: Tensor; // [F, D]
  lora: Partial<Record<"gate" | "up" | "down", LoraPair>>;
  /** Run the GEMMs in bfloat16. */
  bf16: boolean;
}

/** SwiGLU: down(silu(gate·x) ⊙ up·x); x [D, N] → [F, N] → [D, N]. */
export function mlp(c: Context, w: MlpWeights, x: Tensor, tape?: Tape): Tensor {
  const g = linear(c, x, w.gate, undefined, w.lora.gate, tape, w.bf16);
  const u = linear(c, x, w.up, undefined, w.lora.up, tape, w.bf16);
  const act = c.swigluSplit(g, u);
  if (tape?.propagate(act, [g, u])) {
    tape.record(() => {
      const da = tape.grad(act);
      if (!da) return;
      const [dg, du] = c.swigluBack(da, g, u);
      tape.addGrad(g, dg);
      tape.addGrad(u, du);
    });
  }
  return linear(c, act, w.down, undefined, w.lora.down, tape, w.bf16);
}
