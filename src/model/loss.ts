import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import type { Tape } from "./tape.js";

/**
 * Masked mean next-token cross-entropy without V×N one-hot labels.
 *   p = softmax(logits) [V, N]; viewed as [1, V·N] so get_rows can pick p[target_n, n] with the flat
 *   index n·V + target_n (computed on the host) → [1, N]; loss = -Σ_n mask_n·log(p + 1e-30) / n_valid.
 * The gradient is mask_n·(p − onehot)/n_valid per row: masked rows contribute exactly zero (the spike's
 * zeroed-label construction did not). The 1e-30 only matters where p underflows, where log would be -inf.
 * flatIdx i32 [N]; mask f32 [1, N]; negInvCount f32 [1] = -1/n_valid. `logProbs` receives the per-position
 * log p(target) [1, N] (meaningful where the mask is set) for forward-only use. The softmax takes the
 * logits' memory unless `keepLogits` (a caller that reads them afterwards).
 */
export function maskedCrossEntropy(
  c: Context,
  logits: Tensor,
  flatIdx: Tensor,
  mask: Tensor,
  negInvCount: Tensor,
  tape?: Tape,
  outs: { logProbs?: (t: Tensor) => void; keepLogits?: boolean } = {},
): Tensor {
  const [V, N] = logits.ne;
  const sm = c.softMaxExt(logits, null, 1, !outs.keepLogits);
  // For ggml's autograd (a plainOps graph) the +1e-30 sits between softmax and the reshape on purpose: with
  // a view taken directly of soft_max's output, it returns wrong gradients (found by the FD check). Elsewhere
  // the N picked values get it, not all V·N (the same f32 sums; a pass over the logits' size saved).
  const autograd = c.options.plainOps === true;
  const p = autograd ? c.scaleBias(sm, 1, 1e-30) : sm; // [V, N]
  const picked = c.getRows(c.reshape(p, [1, V * N]), flatIdx); // [1, N]
  const logp = c.log(autograd ? picked : c.scaleBias(picked, 1, 1e-30)); // [1, N]
  outs.logProbs?.(logp);
  const loss = c.mul(c.sum(c.mul(logp, mask)), negInvCount);
  if (tape?.propagate(loss, [logits])) {
    tape.record(() => {
      // d loss / d logits = w_n·(softmax − onehot(target_n)), w_n = mask_n / n_valid
      const wrow = c.scale(c.mul(mask, negInvCount), -1); // [1, N]
      tape.addGrad(logits, c.crossEntropyBack(sm, wrow, flatIdx));
    });
  }
  return loss;
}

/**
 * Masked mean squared error: Σ mask·(pred − target)² / n_valid. pred/target/mask [K, B]; missing labels
 * (-100 in the data) have mask 0 and target 0. invCount f32 [1] = 1/n_valid.
 */
export function maskedMse(
  c: Context,
  pred: Tensor,
  target: Tensor,
  mask: Tensor,
  invCount: Tensor,
  tape?: Tape,
): Tensor {
  const d = c.mul(c.sub(pred, target), mask);
  const loss = c.mul(c.sum(c.sqr(d)), invCount);
  if (tape?.propagate(loss, [pred])) {
    tape.record(() => tape.addGrad(pred, c.scale(c.mul(d, invCount), 2))); // 2·mask·(pred − t)/n
  }
  return loss;
}
