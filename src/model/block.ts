import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { type AttentionInputs, type AttentionWeights, attention } from "./attention.js";
import type { LlamaConfig } from "./config.js";
import { type MlpWeights, mlp } from "./mlp.js";
import type { Tape } from "./tape.js";

export interface BlockWeights {
  attnNorm: Tensor; // [D]
  ffnNorm: Tensor; // [D]
  attn: AttentionWeights;
  mlp: MlpWeights;
}

/** RMSNorm(x) ⊙ gain; backward: d gain = Σ_N dy ⊙ n, dx = rms_norm_back(dy ⊙ gain, x). */
export function rmsNormGain(c: Context, x: Tensor, gain: Tensor, eps: number, tape?: Tape): Tensor {
  if (c.normGainFused(x, gain)) {
    // one node each way (native/rmsnorm.c): n is recomputed in the backward, not kept
    const y = c.rmsNormGain(x, gain, eps);
    if (tape?.propagate(y, [x], [gain])) {
      tape.record(() => {
        const dy = tape.grad(y);
        if (!dy) return;
        const [dx, dgain] = c.rmsNormGainBack(dy.contiguous ? dy : c.cont(dy), x, gain, eps);
        tape.addParamGrad(gain, () => dgain);
        if (tape.live(x)) tape.addGrad(x, dx);
      });
    }
    return y;
  }
  const n = c.rmsNorm(x, eps);
  const y = c.mul(n, gain);
  if (tape?.propagate(y, [x], [gain])) {
    tape.record(() => {
      const dy = tape.grad(y);
      if (!dy) return;
      tape.addParamGrad(gain, () => c.repeatBack(c.mul(dy, n), gain));
      if (tape.live(x)) tape.addGrad(x, c.rmsNormBack(c.mul(dy, gain), x, eps));
    });
  }
  return y;
}

/** a + b; the gradient passes to both. */
export function residual(c: Context, a: Tensor, b: Tensor, tape?: Tape): Tensor {
  const y = c.add(a, b);
  if (tape?.propagate(y, [a, b])) {
    tape.record(() => {
      const dy = tape.grad(y);
      if (!dy) return;
      tape.addGrad(a, dy);
      tape.addGrad(b, dy);
    });
  }
  return y;
}

/** Pre-norm transformer block: x + attn(norm(x)), then + mlp(norm(·)). x [D, N] → [D, N]. */
export function block(
  c: Context,
  cfg: LlamaConfig,
  w: BlockWeights,
  x: Tensor,
  inp: AttentionInputs,
  tape?: Tape,
): Tensor {
  const h = rmsNormGain(c, x, w.attnNorm, cfg.rmsNormEps, tape);
  const x1 = residual(c, x, attention(c, cfg, w.attn, h, inp, tape), tape);
  const h2 = rmsNormGain(c, x1, w.ffnNorm, cfg.rmsNormEps, tape);
  return residual(c, x1, mlp(c, w.mlp, h2, tape), tape);
}

/** Every tensor a block reads that could be trained (weights, biases, norms, adapters). */
function blockParams(w: BlockWeights): Tensor[] {
  const a = w.attn;
  const adapters = [...Object.values(a.lora), ...Object.values(w.mlp.lora)].flatMap((p) =>
    p ? [p.a, p.b] : [],
  );
  const biases = [a.bq, a.bk, a.bv].filter((b): b is Tensor => b !== undefined);
  return [
    w.attnNorm,
    w.ffnNorm,
    a.wq,
    a.wk,
    a.wv,
    a.wo,
    ...biases,
    w.mlp.gate,
    w.mlp.up,
    w.mlp.down,
    ...adapters,
  ];
}

/**
 * `block` whose activations are not kept for the backward pass: the forward runs without a tape (its
 * intermediates die as soon as the next op has read them) and the backward step rebuilds the block from
 * its input once the output's gradient exists, then runs the block's own backward. The same ops on the
 * same values, so the same gradients; one more forward per block, and only one block's activations live.
 */
export function recomputedBlock(
  c: Context,
  cfg: LlamaConfig,
  w: BlockWeights,
  x: Tensor,
  inp: AttentionInputs,
  tape: Tape,
): Tensor {
  const y = block(c, cfg, w, x, inp);
  if (tape.propagate(y, [x], blockParams(w))) {
    tape.record(() => {
      const dy = tape.grad(y);
      if (!dy) return;
      tape.schedule(dy); // ggml places nodes where first reached: the recomputation goes after dy
      const sub = tape.child();
      if (tape.live(x)) sub.markLive(x);
      const again = block(c, cfg, w, x, inp, sub);
      sub.seed(again, dy);
      sub.backward();
      const dx = sub.grad(x);
      if (dx) tape.addGrad(x, dx);
      for (const [p, g] of sub.paramGrads) tape.addParamGrad(p, () => g);
    });
  }
  return y;
}
