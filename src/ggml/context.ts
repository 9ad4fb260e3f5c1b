import { userdataWord } from "./ffi.js";
import { ForwardContext, fusedAttentionFits, type RopeMode, type RopeSpec } from "./forward-context.js";
import { ptrOf } from "./handles.js";
import { fail } from "./shape-error.js";
import { type Shape4, sameShape, type Tensor } from "./tensor.js";

export type { RopeMode } from "./forward-context.js";

/**
 * A ggml context for training graphs: the forward ops (ForwardContext) and the ops of an explicit backward
 * pass and of the optimiser. Each backward op is the gradient of one forward op; where steerlm has a fused
 * kernel for it (native/), one pass, else ggml's ops that compute the same values.
 */
export class Context extends ForwardContext {
  /** a += b in place (a keeps its memory: used for static gradient accumulators). */
  addInplace(a: Tensor, b: Tensor): Tensor {
    if (!sameShape(a, b)) fail("add_inplace", `shapes differ: ${a.shapeText} vs ${b.shapeText}`);
    return this.op((ggml, ctx) => ggml.ggml_add_inplace(ctx, ptrOf(a), ptrOf(b)));
  }
  /**
   * acc += g in place, for a static gradient accumulator. Where g is an f32 product of steerlm's GEMM, the
   * product is computed into acc instead (native gemm_f32_into): no product tensor, no add pass. g must then
   * have no other consumer, or ggml computes it a second time.
   */
  accumulate(acc: Tensor, g: Tensor): Tensor {
    const k = this.kernels;
    const ab = this.productOf(g);
    if (!k?.gemmF32Into || !ab || !sameShape(acc, g) || acc.type !== "f32" || !acc.contiguous)
      return this.addInplace(acc, g);
    return this.customInplace(acc, ab, k.gemmF32Into);
  }
  scaleInplace(a: Tensor, s: number): Tensor {
    return this.op((ggml, ctx) => ggml.ggml_scale_inplace(ctx, ptrOf(a), s));
  }
  /** d(rms_norm(x))/dx applied to dy: steerlm's kernel (native/rmsnorm.c), else ggml's. */
  rmsNormBack(dy: Tensor, x: Tensor, eps: number): Tensor {
    if (!sameShape(dy, x)) fail("rms_norm_back", `shapes differ: ${dy.shapeText} vs ${x.shapeText}`);
    const k = this.kernels;
    if (k?.rmsNormBack && [dy, x].every((t) => t.type === "f32" && t.contiguous))
      return this.custom("f32", x.ne as Shape4, [dy, x], k.rmsNormBack, undefined, userdataWord(eps));
    return this.op((ggml, ctx) => ggml.ggml_rms_norm_back(ctx, ptrOf(dy), ptrOf(x), eps));
  }
  /**
   * [dx, dgain] of y = rmsNormGain(x, gain) from dy, in one node (native/rmsnorm.c) where normGainFused: dx
   * as rmsNormBack(dy ⊙ gain, x), dgain = Σ over rows of dy ⊙ rms_norm(x), summed in RMS_GAIN_PARTS runs of
   * rows that a repeat_back adds up.
   */
  rmsNormGainBack(dy: Tensor, x: Tensor, gain: Tensor, eps: number): [Tensor, Tensor] {
    const fn = this.kernels?.rmsNormGainBack;
    if (!fn || !this.normGainFused(x, gain) || !sameShape(dy, x) || dy.type !== "f32" || !dy.contiguous)
      fail(
        "rms_norm_gain_back",
        `no fused kernel for dy ${dy.shapeText}, x ${x.shapeText}, gain ${gain.shapeText}`,
      );
    const n = x.ne[0] as number;
    const rows = x.nelements / n;
    const all = this.custom(
      "f32",
      [n, rows + RMS_GAIN_PARTS, 1, 1],
      [dy, x, gain],
      fn,
      undefined,
      userdataWord(eps),
    );
    const dx = this.reshape(this.range(all, [n, rows], 0), x.ne as Shape4);
    const dgain = this.repeatBack(this.range(all, [n, RMS_GAIN_PARTS], n * rows), gain);
    return [dx, dgain];
  }
  ropeBack(dy: Tensor, positions: Tensor, nDims: number, mode: RopeMode, base: number): Tensor {
    if (positions.type !== "i32" || positions.nelements !== dy.ne[2]) {
      fail("rope_ext_back", `positions ${positions.shapeText} must be i32 of length ne2 of ${dy.shapeText}`);
    }
    return this.ropeOp(true, dy, positions, nDims, mode, base);
  }
  /**
   * The gradients [dq, dk, dv] of `fused` = fusedAttention(q, k, v, mask, scale, rope) from dO [HD·H, N], in
   * one node (native/attention.c) and, under GQA, a sum of each kv head's shares of dk and of dv (two
   * repeat_back nodes), shaped as q, k and v: gradients of the inputs before RoPE.
   */
  attentionBack(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor,
    rope: RopeSpec,
    fused: Tensor,
    dO: Tensor,
    scale: number,
  ): [Tensor, Tensor, Tensor] {
    const fn = this.kernels?.attentionBack?.[rope.mode];
    const [HD, H, N] = q.ne as Shape4;
    const KV = k.ne[1] as number;
    if (!fn || !fusedAttentionFits(q, k, v, mask, rope))
      fail(
        "attention_back",
        `no attention kernel for q ${q.shapeText}, k ${k.shapeText}, mask ${mask.shapeText}`,
      );
    if (dO.type !== "f32" || !dO.contiguous || dO.nelements !== HD * H * N)
      fail("attention_back", `dO ${dO.shapeText} must be contiguous f32 [${HD * H}, ${N}]`);
    if (fused.nelements !== HD * H * N + H * N)
      fail("attention_back", `${fused.shapeText} is not the forward's node`);
    const table = this.ropeTable(rope.positions, HD, rope.base);
    // dq, then each query head's share of dk and of dv (the kernel's units are query heads)
    const all = this.custom(
      "f32",
      [HD * N * 3 * H, 1, 1, 1],
      [q, k, v, mask, table, fused, dO],
      fn,
      undefined,
      userdataWord(scale),
    );
    const part = (i: number) => this.reshape(this.range(all, [HD * H * N], i * HD * H * N), [HD, H, N]);
    return [part(0), this.sumHeadGroups(part(1), KV), this.sumHeadGroups(part(2), KV)];
  }
  /**
   * [HD, KV, N] from per-query-head gradients t [HD, H, N]: the sum of the H/KV heads that read each kv head
   * (query head h reads kv head h / (H/KV)); t itself where H = KV.
   */
  sumHeadGroups(t: Tensor, KV: number): Tensor {
    const [HD, H, N] = t.ne as Shape4;
    if (H === KV) return t;
    if (H % KV !== 0) fail("repeat_back", `${H} query heads do not share ${KV} kv heads evenly`);
    const like = this.newTensor("f32", [HD, 1, KV, N]);
    return this.reshape(this.repeatBack(this.reshape(t, [HD, H / KV, KV, N]), like), [HD, KV, N]);
  }
  /** Gradient of soft_max_ext's input (scale included) from dy and the softmax output y. */
  softMaxBack(dy: Tensor, y: Tensor, scale: number): Tensor {
    if (!sameShape(dy, y)) fail("soft_max_ext_back", `shapes differ: ${dy.shapeText} vs ${y.shapeText}`);
    return this.op((ggml, ctx) => ggml.ggml_soft_max_ext_back(ctx, ptrOf(dy), ptrOf(y), scale, 0));
  }
  /**
   * The gradients of swigluSplit(g, u) = silu(g) ⊙ u from da: [dg, du]. steerlm's kernel computes both in
   * one pass into one [n, 2] tensor (two views of it); else ggml's mul, silu_back, silu and mul.
   */
  swigluBack(da: Tensor, g: Tensor, u: Tensor): [Tensor, Tensor] {
    if (!sameShape(da, g) || !sameShape(g, u))
      fail("swiglu_back", `shapes differ: da ${da.shapeText}, g ${g.shapeText}, u ${u.shapeText}`);
    const k = this.kernels;
    const fits = [da, g, u].every((t) => t.type === "f32" && t.contiguous);
    if (!k?.swigluBack || !fits) return [this.siluBack(this.mul(da, u), g), this.mul(da, this.silu(g))];
    const n = g.nelements;
    const both = this.custom("f32", [n, 2, 1, 1], [da, g, u], k.swigluBack);
    const half = (i: number) => this.reshape(this.range(both, [n], i * n), g.ne as Shape4);
    return [half(0), half(1)];
  }
  /** silu'(x) ⊙ dy. */
  siluBack(dy: Tensor, x: Tensor): Tensor {
    if (!sameShape(dy, x)) fail("silu_back", `shapes differ: ${dy.shapeText} vs ${x.shapeText}`);
    return this.op((ggml, ctx) => ggml.ggml_silu_back(ctx, ptrOf(dy), ptrOf(x)));
  }
  /** Scatter-add of row gradients dy [E, n] into a zero tensor shaped like `like` [E, R]. */
  getRowsBack(dy: Tensor, idx: Tensor, like: Tensor): Tensor {
    const matrix = (t: Tensor) => t.ne[2] === 1 && t.ne[3] === 1;
    if (
      !matrix(dy) ||
      !matrix(like) ||
      idx.type !== "i32" ||
      idx.nelements !== idx.ne[0] ||
      dy.ne[0] !== like.ne[0]
    ) {
      fail(
        "get_rows_back",
        `dy ${dy.shapeText}, indices ${idx.shapeText}, data ${like.shapeText} do not fit`,
      );
    }
    return this.op((ggml, ctx) => ggml.ggml_get_rows_back(ctx, ptrOf(dy), ptrOf(idx), ptrOf(like)));
  }
  /**
   * The masked cross-entropy's gradient from its softmax: sm [V, N] ⊙ w [1, N], minus w[n] at column n's
   * target; flatIdx i32 [N] holds n·V + target_n. One pass with steerlm's kernel (native/loss.c); else
   * ggml's mul, get_rows_back (the one-hot) and sub, which compute the same bits.
   */
  crossEntropyBack(sm: Tensor, w: Tensor, flatIdx: Tensor): Tensor {
    const [V, N] = sm.ne as Shape4;
    if (sm.type !== "f32" || !sm.contiguous || sm.ne[2] !== 1 || sm.ne[3] !== 1)
      fail("cross_entropy_back", `softmax ${sm.shapeText} must be a contiguous f32 matrix`);
    if (w.type !== "f32" || !w.contiguous || w.nelements !== N || w.ne[0] !== 1)
      fail("cross_entropy_back", `weights ${w.shapeText} must be f32 [1, ${N}]`);
    if (flatIdx.type !== "i32" || flatIdx.nelements !== N)
      fail("cross_entropy_back", `targets ${flatIdx.shapeText} must be i32 [${N}]`);
    const k = this.kernels;
    if (k?.crossEntropyBack) return this.custom("f32", [V, N, 1, 1], [sm, w, flatIdx], k.crossEntropyBack);
    const onehot = this.reshape(this.getRowsBack(w, flatIdx, this.reshape(sm, [1, V * N])), [V, N]);
    return this.sub(this.mul(sm, w), onehot);
  }
  /** Sums a over the dimensions it was repeated along to reach b's shape. */
  repeatBack(a: Tensor, like: Tensor): Tensor {
    for (let i = 0; i < 4; i++) {
      if (a.ne[i]! % like.ne[i]! !== 0)
        fail("repeat_back", `cannot reduce ${a.shapeText} to ${like.shapeText}`);
    }
    return this.op((ggml, ctx) => ggml.ggml_repeat_back(ctx, ptrOf(a), ptrOf(like)));
  }

  // ---- optimiser ----
  /** Σ a² as f32 [1]: steerlm's kernel (one read, summed in double), else ggml's sum of sqr. */
  sumSquares(a: Tensor): Tensor {
    const k = this.kernels;
    if (k?.sumSquares && a.type === "f32" && a.contiguous)
      return this.custom("f32", [1, 1, 1, 1], [a], k.sumSquares, 1);
    return this.sum(this.sqr(a));
  }
  /**
   * AdamW (ggml's opt_step_adamw, `params` its 7 values) on w with the gradient acc·scale[0], then acc
   * cleared for the next accumulation. The nodes to expand, in order: steerlm's one-pass kernel, else
   * ggml's mul, opt_step_adamw and a scale by 0.
   */
  adamwFromAccumulator(
    w: Tensor,
    acc: Tensor,
    scale: Tensor,
    m: Tensor,
    v: Tensor,
    params: Tensor,
  ): Tensor[] {
    const k = this.kernels;
    const all = [w, acc, m, v];
    if (
      k?.adamw &&
      all.every((t) => t.type === "f32" && t.contiguous) &&
      scale.nelements === 1 &&
      scale.type === "f32"
    ) {
      checkAdamw(w, acc, m, v, params);
      return [this.custom("f32", [1, 1, 1, 1], [w, acc, m, v, params, scale], k.adamw)];
    }
    return [this.adamwStep(w, this.mul(acc, scale), m, v, params), this.scaleInplace(acc, 0)];
  }
  /** In-place AdamW on `w`; `params` holds [alpha, beta1, beta2, eps, wd, 1/(1-beta1^t), 1/(1-beta2^t)]. */
  adamwStep(w: Tensor, grad: Tensor, m: Tensor, v: Tensor, params: Tensor): Tensor {
    checkAdamw(w, grad, m, v, params);
    return this.op((ggml, ctx) =>
      ggml.ggml_opt_step_adamw(ctx, ptrOf(w), ptrOf(grad), ptrOf(m), ptrOf(v), ptrOf(params)),
    );
  }
}

/**
 * Runs of rows whose gain gradients rmsNormGainBack's kernel sums apart, thread by thread: any count of threads,
 * up to 16 of them busy.
 */
const RMS_GAIN_PARTS = 16;

/** What ggml's opt_step_adamw and steerlm's AdamW kernel both take: f32 w, grad, m, v of one shape; 7 params. */
function checkAdamw(w: Tensor, grad: Tensor, m: Tensor, v: Tensor, params: Tensor): void {
  if (!sameShape(w, grad) || !sameShape(w, m) || !sameShape(w, v)) {
    fail("opt_step_adamw", `weight ${w.shapeText}, grad ${grad.shapeText}, m, v must share a shape`);
  }
  if (w.type !== "f32" || grad.type !== "f32") fail("opt_step_adamw", "f32 weights and grads required");
  if (params.nelements !== 7 || params.type !== "f32") fail("opt_step_adamw", "params must be 7 f32 values");
}
