import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { linear } from "./lora.js";
import { maskedCrossEntropy } from "./loss.js";
import type { Tape } from "./tape.js";

/**
 * Logit values one chunk may hold (2^24 f32 = 64 MiB a copy; softmax, its gradient and the logits make
 * about four). smol135 at 256 tokens (49152 × 256) fits in one; Qwen2.5-0.5B's 151,936-word vocabulary at
 * 512 tokens takes 5 chunks instead of ~1.2 GB of full-sequence logits, softmax and gradient.
 */
export const LOGIT_CHUNK_VALUES = 2 ** 24;

/** Positions per chunk of the output projection and cross-entropy for N positions and V words. */
export function logitChunk(N: number, V: number, values = LOGIT_CHUNK_VALUES): number {
  return Math.ceil(N / Math.ceil((N * V) / values));
}

/** The loss's per-position inputs; flatIdx holds (n mod chunk)·V + target_n (see prepareBatch). */
export interface LmLossInputs {
  flatIdx: Tensor;
  mask: Tensor;
  negInvCount: Tensor;
}

export interface LmLossOutputs {
  /** Full logits [V, N] (forward-only use: they are the memory chunking saves). */
  logits?: (t: Tensor) => void;
  /** log p(target) per position [1, N]. */
  logProbs?: (t: Tensor) => void;
}

/**
 * Output projection + masked cross-entropy, `chunk` positions at a time, so that a large vocabulary never
 * holds logits, softmax and their gradient for the whole sequence. Exact: the loss is the sum of the chunks'
 * sums (same terms, another summation order) and each position's gradient is its own. With a tape, each
 * chunk's backward (d hidden, d W) is built and scheduled right after its forward: the loss's gradient
 * does not depend on anything upstream, so the chunk's [V, chunk] tensors die before the next chunk.
 * One chunk builds exactly the unchunked graph. hidden [D, N], w [D, V].
 */
export function lmLoss(
  c: Context,
  hidden: Tensor,
  w: Tensor,
  bf16: boolean,
  chunk: number,
  inp: LmLossInputs,
  tape?: Tape,
  outs: LmLossOutputs = {},
): Tensor {
  const [D, N] = hidden.ne;
  if (chunk >= N) {
    const logits = linear(c, hidden, w, undefined, undefined, tape, bf16);
    outs.logits?.(logits);
    return maskedCrossEntropy(c, logits, inp.flatIdx, inp.mask, inp.negInvCount, tape, {
      logProbs: outs.logProbs,
      keepLogits: outs.logits !== undefined,
    });
  }
  const live = tape !== undefined && (tape.live(hidden) || tape.trains(w));
  const losses: Tensor[] = [];
  const logits: Tensor[] = [];
  const logProbs: Tensor[] = [];
  const dHidden: Tensor[] = [];
  const dW: Tensor[] = [];
  for (let s = 0; s < N; s += chunk) {
    const n = Math.min(chunk, N - s);
    const h = c.range(hidden, [D, n], s * D);
    const sub = live ? tape?.child() : undefined;
    if (sub && tape?.live(hidden)) sub.markLive(h);
    const z = linear(c, h, w, undefined, undefined, sub, bf16);
    if (outs.logits) logits.push(z);
    const idx = c.range(inp.flatIdx, [n], s);
    const mask = c.range(inp.mask, [1, n], s);
    const loss = maskedCrossEntropy(c, z, idx, mask, inp.negInvCount, sub, {
      logProbs: (t) => logProbs.push(t),
      keepLogits: outs.logits !== undefined,
    });
    losses.push(loss);
    if (!sub || !tape) continue;
    sub.backward();
    tape.schedule(loss);
    const dh = sub.grad(h);
    if (dh) {
      tape.schedule(dh);
      dHidden.push(dh);
    }
    const dw = sub.paramGrads.get(w);
    if (dw) {
      tape.schedule(dw);
      dW.push(dw);
    }
  }
  const sum = (ts: Tensor[]) => ts.slice(1).reduce((a, b) => c.add(a, b), ts[0] as Tensor);
  const join = (ts: Tensor[]) => ts.slice(1).reduce((a, b) => c.concat(a, b, 1), ts[0] as Tensor);
  if (outs.logits) outs.logits(join(logits));
  if (outs.logProbs) outs.logProbs(join(logProbs));
  const loss = sum(losses);
  if (live && tape?.propagate(loss, [hidden], [w])) {
    tape.record(() => {
      if (dHidden.length > 0) tape.addGrad(hidden, join(dHidden));
      if (dW.length > 0) tape.addParamGrad(w, () => sum(dW));
    });
  }
  return loss;
}
