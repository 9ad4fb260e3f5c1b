import { type Batch, predictsLabel } from "../train/batch.js";

/**
 * SteerLM 2.0's per-sample coefficients (HelpSteer2 paper). For each group of n samples y_1..y_n of one
 * (prompt x, values a), with target weights w'_i (from the data file) and the current model Q_θ:
 *
 *   w_i = softmax_i( log Q_θ(y_i|a,x) − log Q'(y_i|a,x) )      (the baseline, from the model now)
 *   c_i = w'_i − w_i                                          (sums to 0 over a group)
 *
 * and the gradient is −(1/G) Σ_groups Σ_i c_i ∇ log Q_θ(y_i|a,x), with c treated as a constant. When
 * Q_θ = Q' and the targets are uniform, w_i = 1/n = w'_i and the gradient is zero.
 */
export interface GroupCoefficients {
  /** The baseline weights w_i, per sequence. */
  w: Float64Array;
  /** c_i = w'_i − w_i, per sequence. */
  c: Float64Array;
}

/** w and c for consecutive groups of `n` sequences (all arrays in batch order, length G·n). */
export function groupCoefficients(
  logQTheta: ArrayLike<number>,
  logQ: ArrayLike<number>,
  target: ArrayLike<number>,
  n: number,
): GroupCoefficients {
  const len = logQTheta.length;
  if (logQ.length !== len || target.length !== len)
    throw new RangeError(`groupCoefficients: lengths ${len}, ${logQ.length}, ${target.length} differ`);
  if (!(Number.isInteger(n) && n >= 1 && len % n === 0))
    throw new RangeError(`groupCoefficients: ${len} sequences are not whole groups of ${n}`);
  const w = new Float64Array(len);
  const c = new Float64Array(len);
  for (let g = 0; g < len; g += n) {
    // softmax with the maximum subtracted: log-likelihoods of long responses are in the hundreds
    let max = Number.NEGATIVE_INFINITY;
    for (let i = g; i < g + n; i++) max = Math.max(max, logQTheta[i]! - logQ[i]!);
    if (!Number.isFinite(max))
      throw new RangeError(`groupCoefficients: no finite log-ratio in the group at ${g}`);
    let z = 0;
    for (let i = g; i < g + n; i++) {
      w[i] = Math.exp(logQTheta[i]! - logQ[i]! - max);
      z += w[i]!;
    }
    for (let i = g; i < g + n; i++) {
      w[i] = w[i]! / z;
      c[i] = target[i]! - w[i]!;
    }
  }
  return { w, c };
}

/** Labelled positions of a batch as the trainer counts them (n_valid, the loss's divisor: `predictsLabel`). */
export function labelledCount(batch: Batch, B: number, T: number): number {
  const labels = batch.labels;
  if (!labels) return 0;
  const real = batch.attention ?? new Uint8Array(B * T).fill(1);
  let n = 0;
  for (let s = 0; s < B; s++) for (let t = 0; t + 1 < T; t++) if (predictsLabel(labels, real, s * T + t)) n++;
  return n;
}

/**
 * Batch.lossWeights for coefficients c over G groups. The trainer's loss is −Σ_s λ_s Σ_t log p / n_valid,
 * so λ_s = c_s · n_valid / G makes it −(1/G) Σ_s c_s log Q_θ(y_s): the gradient above.
 */
export function lossWeights(c: ArrayLike<number>, nValid: number, groups: number): Float32Array {
  return Float32Array.from(c, (x) => (x * nValid) / groups);
}
