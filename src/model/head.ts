import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { linear } from "./lora.js";
import type { Tape } from "./tape.js";

/** Regression head tensor names: weight [D, K], bias [K] (ggml order). */
export const HEAD_WEIGHT = "reg_head.weight";
export const HEAD_BIAS = "reg_head.bias";

/**
 * Attribute-model head: reads the final hidden state of each sequence's last non-padding token.
 * hidden [D, T·B], lastIdx i32 [B] (flat token index b·T + t_last) → predictions [K, B].
 */
export function regressionHead(
  c: Context,
  hidden: Tensor,
  lastIdx: Tensor,
  w: Tensor,
  b: Tensor,
  tape?: Tape,
): Tensor {
  const h = c.getRows(hidden, lastIdx); // [D, B]
  if (tape?.propagate(h, [hidden])) {
    tape.record(() => {
      const dh = tape.grad(h);
      if (dh) tape.addGrad(hidden, c.getRowsBack(dh, lastIdx, hidden));
    });
  }
  return linear(c, h, w, b, undefined, tape); // [K, B]
}
