import { type KernelFn, userdataBits, userdataWord } from "./ffi.js";
import { gemmKernel, hasTransposedView, isTransposedView, readsTransposed } from "./gemm-choice.js";
import { GraphContext } from "./graph-context.js";
import { ptrOf } from "./handles.js";
import { dtypeCode, GGML_ROPE_TYPE } from "./native.js";
import { fail } from "./shape-error.js";
import { blockBytes, type DType, type Shape4, sameShape, type Tensor } from "./tensor.js";

/** How RoPE rotates: "normal" adjacent pairs (2i, 2i+1), "neox" halves (i, i+d/2). */
export type RopeMode = "normal" | "neox";

/**
 * The ops a forward graph is built from, on a GraphContext (graph-context.ts: the context's memory and how
 * nodes are made). Each op method validates its operands against the assertions ggml makes, calls ggml, then
 * reads the result's true shape back. `Context` (context.ts) adds the backward and optimiser ops.
 */
export class ForwardContext extends GraphContext {
  // ---- element-wise ----
  #binary(op: "ggml_add" | "ggml_sub" | "ggml_mul" | "ggml_div", a: Tensor, b: Tensor): Tensor {
    if (a.type !== "f32" || b.type !== "f32") fail(op, `f32 operands required, got ${a.type} and ${b.type}`);
    for (let i = 0; i < 4; i++) {
      if (a.ne[i]! % b.ne[i]! !== 0) {
        fail(op, `cannot broadcast ${b.shapeText} to ${a.shapeText}`);
      }
    }
    return this.wrap(this.native.base[op](this.ctxPtr, ptrOf(a), ptrOf(b)));
  }
  add(a: Tensor, b: Tensor): Tensor {
    return this.#binary("ggml_add", a, b);
  }
  sub(a: Tensor, b: Tensor): Tensor {
    return this.#binary("ggml_sub", a, b);
  }
  /**
   * a·b, b broadcast over a. A single value is tiled to one row of a first: ggml broadcasts it with one call
   * of its vector loop per element (6.8M calls for m10's gradients), a row with one per row (same products).
   */
  mul(a: Tensor, b: Tensor): Tensor {
    const ne0 = a.ne[0] as number;
    if (b.nelements !== 1 || ne0 === 1) return this.#binary("ggml_mul", a, b);
    const row = this.made(b, `row/${ne0}`, () => this.repeat(b, this.newTensor(b.type, [ne0])));
    return this.#binary("ggml_mul", a, row);
  }
  div(a: Tensor, b: Tensor): Tensor {
    return this.#binary("ggml_div", a, b);
  }
  scale(a: Tensor, s: number): Tensor {
    return this.wrap(this.native.base.ggml_scale(this.ctxPtr, ptrOf(a), s));
  }
  /** s·a + b */
  scaleBias(a: Tensor, s: number, b: number): Tensor {
    return this.wrap(this.native.base.ggml_scale_bias(this.ctxPtr, ptrOf(a), s, b));
  }
  sqr(a: Tensor): Tensor {
    return this.wrap(this.native.base.ggml_sqr(this.ctxPtr, ptrOf(a)));
  }
  sqrt(a: Tensor): Tensor {
    return this.wrap(this.native.base.ggml_sqrt(this.ctxPtr, ptrOf(a)));
  }
  log(a: Tensor): Tensor {
    return this.wrap(this.native.base.ggml_log(this.ctxPtr, ptrOf(a)));
  }
  /** Sum of all elements: a scalar. */
  sum(a: Tensor): Tensor {
    return this.wrap(this.native.base.ggml_sum(this.ctxPtr, ptrOf(a)));
  }
  /** No backward: only for optimiser bookkeeping. */
  clamp(a: Tensor, min: number, max: number): Tensor {
    return this.wrap(this.native.base.ggml_clamp(this.ctxPtr, ptrOf(a), min, max));
  }
  silu(a: Tensor): Tensor {
    return this.wrap(this.native.base.ggml_silu(this.ctxPtr, ptrOf(a)));
  }
  /** silu(gate) ⊙ up; the split form is the one with a backward pass. */
  swigluSplit(gate: Tensor, up: Tensor): Tensor {
    if (!sameShape(gate, up)) fail("swiglu_split", `shapes differ: ${gate.shapeText} vs ${up.shapeText}`);
    if (!gate.contiguous || !up.contiguous) fail("swiglu_split", "operands must be contiguous");
    return this.wrap(this.native.base.ggml_swiglu_split(this.ctxPtr, ptrOf(gate), ptrOf(up)));
  }
  /** Tiles `a` to the shape of `like`. */
  repeat(a: Tensor, like: Tensor): Tensor {
    for (let i = 0; i < 4; i++) {
      if (like.ne[i]! % a.ne[i]! !== 0) {
        fail("repeat", `cannot repeat ${a.shapeText} to ${like.shapeText}`);
      }
    }
    return this.wrap(this.native.base.ggml_repeat(this.ctxPtr, ptrOf(a), ptrOf(like)));
  }

  // ---- linear algebra ----
  /**
   * ggml_mul_mat(a, b) = b·aᵀ: a [K, M, ...], b [K, N, ...] → [M, N, ...]; b's dims 2,3 may broadcast a's.
   * `a` may be a transposed view (`transpose(w)`, M contiguous): steerlm's GEMM packs it from w's rows
   * where `Context.readsTransposed` says so; otherwise it is materialised first, every time. So may an f32
   * `b` (N contiguous), which the f32-b GEMMs pack in place: the backward's xᵀ, dyᵀ and Pᵀ.
   */
  mulMat(a: Tensor, b: Tensor): Tensor {
    if (a.ne[0] !== b.ne[0]) fail("mul_mat", `inner dims differ: a ${a.shapeText} vs b ${b.shapeText}`);
    if (b.ne[2]! % a.ne[2]! !== 0 || b.ne[3]! % a.ne[3]! !== 0) {
      fail("mul_mat", `cannot broadcast a ${a.shapeText} over b ${b.shapeText}`);
    }
    const fn = this.options.plainOps ? null : gemmKernel(a, b);
    if (fn) {
      const out = this.custom("f32", [a.ne[1], b.ne[1], b.ne[2], b.ne[3]], [a, b], fn);
      if (fn === this.kernels?.gemmF32) this.recordProduct(out, a, b);
      return out;
    }
    if (isTransposedView(b)) return this.mulMat(a, this.transposed(this.transpose(b)));
    if (isTransposedView(a) && a.type === "q8_0")
      // ggml copies blocks, it cannot move values between them
      fail("mul_mat", `a transposed q8_0 ${a.shapeText} is read only by steerlm's GEMM, against an f32 b`);
    if (isTransposedView(a))
      return this.mulMat(a.type === "f32" ? this.transposed(this.transpose(a)) : this.cont(a), b);
    return this.wrap(this.native.base.ggml_mul_mat(this.ctxPtr, ptrOf(a), ptrOf(b)));
  }

  /**
   * Whether mulMat reads `transpose(w)` in place against a `bType` operand (steerlm's GEMM, f32/f16/bf16/
   * Q8_0 with f32, bf16 with bf16): where not, a frozen weight's transpose is better made once.
   */
  static readsTransposed(w: Tensor, bType: "f32" | "bf16", plainOps = false): boolean {
    return !plainOps && readsTransposed(w, bType);
  }

  /** x/√(mean(x²) + eps) by rows: steerlm's kernel (native/rmsnorm.c) on a contiguous x, else ggml's. */
  rmsNorm(a: Tensor, eps: number): Tensor {
    if (a.type !== "f32") fail("rms_norm", "f32 input required");
    const k = this.kernels;
    if (k?.rmsNorm && a.contiguous)
      return this.custom("f32", a.ne as Shape4, [a], k.rmsNorm, undefined, userdataWord(eps));
    return this.wrap(this.native.base.ggml_rms_norm(this.ctxPtr, ptrOf(a), eps));
  }
  /**
   * rms_norm(a) ⊙ gain, gain f32 [ne0(a)]: one pass with steerlm's kernel where `normGainFused` says so
   * (Context.rmsNormGainBack is then its gradient), else the norm and a broadcast multiply (same values).
   */
  rmsNormGain(a: Tensor, gain: Tensor, eps: number): Tensor {
    const fn = this.kernels?.rmsNormGain;
    if (fn && this.normGainFused(a, gain))
      return this.custom("f32", a.ne as Shape4, [a, gain], fn, undefined, userdataWord(eps));
    return this.mul(this.rmsNorm(a, eps), gain);
  }
  /** Whether rmsNormGain(a, gain) runs as one kernel node, and its gradient as another. */
  normGainFused(a: Tensor, gain: Tensor): boolean {
    const k = this.kernels;
    return (
      !!k?.rmsNormGain &&
      !!k.rmsNormGainBack &&
      [a, gain].every((t) => t.type === "f32" && t.contiguous) &&
      gain.nelements === a.ne[0]
    );
  }
  /** Rows of `a` [E, R, ...] picked by i32 `idx` [n, ne2(a)] → [E, n, ...]. */
  getRows(a: Tensor, idx: Tensor): Tensor {
    if (idx.type !== "i32") fail("get_rows", "indices must be i32");
    if (a.ne[2] !== idx.ne[1] || a.ne[3] !== idx.ne[2] || idx.ne[3] !== 1) {
      fail("get_rows", `index shape ${idx.shapeText} does not fit data ${a.shapeText}`);
    }
    return this.wrap(this.native.base.ggml_get_rows(this.ctxPtr, ptrOf(a), ptrOf(idx)));
  }
  /**
   * softmax(a·scale + mask) over ne0; mask [ne0, ≥ne1, ne2|1, ne3|1]. One custom node with steerlm's kernel
   * (native/softmax.c), else ggml's soft_max_ext: the same values to float rounding. `inplace`: the result
   * takes a's memory (the kernel's), for scores nothing else reads; ggml's allocator decides that for its own.
   */
  softMaxExt(a: Tensor, mask: Tensor | null, scale: number, inplace = false): Tensor {
    if (!a.contiguous) fail("soft_max_ext", "input must be contiguous");
    if (mask) {
      if (mask.type !== "f32" || !mask.contiguous) fail("soft_max_ext", "mask must be contiguous f32");
      if (
        mask.ne[0] !== a.ne[0] ||
        mask.ne[1]! < a.ne[1]! ||
        a.ne[2]! % mask.ne[2]! !== 0 ||
        a.ne[3]! % mask.ne[3]! !== 0
      ) {
        fail("soft_max_ext", `mask ${mask.shapeText} does not fit scores ${a.shapeText}`);
      }
    }
    const k = this.kernels;
    if (k?.softMax && a.type === "f32") {
      const word = userdataWord(scale);
      if (inplace) return this.customInplace(a, mask ? [mask] : [], k.softMax, word);
      return this.custom("f32", a.ne as Shape4, mask ? [a, mask] : [a], k.softMax, undefined, word);
    }
    return this.wrap(
      this.native.base.ggml_soft_max_ext(this.ctxPtr, ptrOf(a), mask ? ptrOf(mask) : null, scale, 0),
    );
  }
  /**
   * Causal attention softmax(RoPE(q)·RoPE(k)ᵀ·scale + mask)·v as one node (native/attention.c): q [HD, H, N],
   * k and v [HD, KV, N] (query head h reads kv head ⌊h / (H/KV)⌋), q and k before RoPE (over all HD dims),
   * mask f32 [T, T, 1, B] with N = T·B that hides every key after its query (attentionValues). The node holds
   * o [HD·H, N], then each row's log-sum-exp [H, N], which `Context.attentionBack` reads. null where the kernel
   * does not apply (no AVX-512, a head dim not a multiple of 16, other layouts): the caller builds the graph of
   * rope, products and softmax instead.
   */
  fusedAttention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor,
    scale: number,
    rope: RopeSpec,
  ): Tensor | null {
    const fn = this.kernels?.attention?.[rope.mode];
    if (!fn || !fusedAttentionFits(q, k, v, mask, rope)) return null;
    const [HD, H, N] = q.ne as Shape4;
    const table = this.ropeTable(rope.positions, HD, rope.base);
    return this.custom(
      "f32",
      [HD * H * N + H * N, 1, 1, 1],
      [q, k, v, mask, table],
      fn,
      undefined,
      userdataWord(scale),
    );
  }
  /** RoPE over a [headDim, heads, tokens]; positions i32 [tokens]. */
  rope(a: Tensor, positions: Tensor, nDims: number, mode: RopeMode, base: number): Tensor {
    if (positions.type !== "i32" || positions.ne[0] !== a.ne[2] || positions.nelements !== a.ne[2]) {
      fail("rope_ext", `positions ${positions.shapeText} must be i32 of length ne2 of ${a.shapeText}`);
    }
    if (nDims % 2 !== 0 || nDims > a.ne[0]) fail("rope_ext", `bad rotary dims ${nDims} for ${a.shapeText}`);
    return this.ropeOp(false, a, positions, nDims, mode, base);
  }
  /**
   * RoPE (`back`: its inverse, the gradient). With steerlm's kernels (native/rope.c) a rotation by a table of
   * cos and sin made once per (positions, dims, base) and shared by every rope of the graph; else ggml's
   * rope_ext / rope_ext_back, which share one signature: no frequency factors (null), no context extension
   * (n_ctx_orig 0, freq_scale 1, ext_factor 0, attn_factor 1, beta_fast/slow 0). Same values to float rounding.
   */
  protected ropeOp(
    back: boolean,
    a: Tensor,
    positions: Tensor,
    nDims: number,
    mode: RopeMode,
    base: number,
  ): Tensor {
    const k = this.kernels;
    if (k?.rope && k.ropeTable && a.type === "f32" && a.contiguous && a.ne[3] === 1) {
      const table = this.ropeTable(positions, nDims, base);
      const flags = (mode === "neox" ? 1 : 0) | (back ? 2 : 0);
      return this.custom("f32", a.ne as Shape4, [a, table], k.rope, undefined, userdataBits(flags));
    }
    const fn = back ? "ggml_rope_ext_back" : "ggml_rope_ext";
    const rope = this.native.base[fn];
    return this.wrap(
      rope(
        this.ctxPtr,
        ptrOf(a),
        ptrOf(positions),
        null,
        nDims,
        GGML_ROPE_TYPE[mode],
        0,
        base,
        1,
        0,
        1,
        0,
        0,
      ),
    );
  }

  /** RoPE's table of cos and sin [nDims, tokens] (native/rope.c), made once a graph for each (positions, dims, base). */
  protected ropeTable(positions: Tensor, nDims: number, base: number): Tensor {
    const makeTable = this.kernels?.ropeTable;
    if (!makeTable) fail("rope_table", "steerlm's kernels are not loaded");
    const ne: Shape4 = [nDims, positions.ne[0] as number, 1, 1];
    return this.made(positions, `rope/${nDims}/${base}`, () =>
      this.custom("f32", ne, [positions], makeTable, undefined, userdataWord(base)),
    );
  }

  // ---- layout ----
  reshape(a: Tensor, ne: readonly number[]): Tensor {
    const [n0, n1 = 1, n2 = 1, n3 = 1] = ne;
    if (!a.contiguous) fail("reshape", `input ${a.shapeText} is not contiguous (use cont first)`);
    if (n0 === undefined || n0 * n1 * n2 * n3 !== a.nelements) {
      fail("reshape", `cannot reshape ${a.shapeText} to [${ne.join(",")}]`);
    }
    return this.wrap(this.native.base.ggml_reshape_4d(this.ctxPtr, ptrOf(a), n0, n1, n2, n3));
  }
  /** ggml semantics: source axis i moves to position axes[i]. */
  permute(a: Tensor, axes: readonly [number, number, number, number]): Tensor {
    if ([...axes].sort().join() !== "0,1,2,3") fail("permute", `not a permutation: ${axes.join(",")}`);
    return this.wrap(this.native.base.ggml_permute(this.ctxPtr, ptrOf(a), ...axes));
  }
  cont(a: Tensor): Tensor {
    return this.wrap(this.native.base.ggml_cont(this.ctxPtr, ptrOf(a)));
  }

  /** a (f32) with `p0` zeros appended along ne0. */
  padDim0(a: Tensor, p0: number): Tensor {
    if (a.type !== "f32") fail("pad", `f32 required, got ${a.type}`);
    return this.wrap(this.native.base.ggml_pad(this.ctxPtr, ptrOf(a), p0, 0, 0, 0));
  }

  /**
   * A view of `ne` (1–2 dims) starting `offset` elements into contiguous `a`: a run of whole columns,
   * e.g. positions [s, s+n) of a [D, N] activation. It shares a's memory (no copy).
   */
  range(a: Tensor, ne: readonly [number, number?], offset: number): Tensor {
    const [n0, n1 = 1] = ne;
    if (!a.contiguous || a.type === "q8_0")
      fail("view", `input ${a.shapeText} must be contiguous, unquantised`);
    if (offset < 0 || offset + n0 * n1 > a.nelements) {
      fail("view", `[${ne.join(",")}] at ${offset} does not fit in ${a.shapeText}`);
    }
    const es = blockBytes(a.type);
    return this.wrap(
      this.native.base.ggml_view_3d(this.ctxPtr, ptrOf(a), n0, n1, 1, n0 * es, n0 * n1 * es, offset * es),
    );
  }
  /** a and b joined along `dim` (their other dims must agree). */
  concat(a: Tensor, b: Tensor, dim: number): Tensor {
    if (a.type !== b.type || a.ne.some((d, i) => i !== dim && d !== b.ne[i])) {
      fail("concat", `cannot join ${b.shapeText} to ${a.shapeText} along ${dim}`);
    }
    return this.wrap(this.native.base.ggml_concat(this.ctxPtr, ptrOf(a), ptrOf(b), dim));
  }

  /** a converted to `type` (any layout in, contiguous out). */
  cast(a: Tensor, type: DType): Tensor {
    return this.wrap(this.native.base.ggml_cast(this.ctxPtr, ptrOf(a), dtypeCode(type)));
  }

  /** Copies a (any layout) into dst (same element count); returns dst's view. */
  copy(a: Tensor, dst: Tensor): Tensor {
    if (a.nelements !== dst.nelements) fail("cpy", `cannot copy ${a.shapeText} into ${dst.shapeText}`);
    return this.wrap(this.native.base.ggml_cpy(this.ctxPtr, ptrOf(a), ptrOf(dst)));
  }

  /** Transposed view (swaps ne0 and ne1); mul_mat needs `cont` of it as its first operand. */
  transpose(a: Tensor): Tensor {
    if (!hasTransposedView(a))
      fail("transpose", `${a.type} ${a.shapeText} has rows of one block: no strides describe its transpose`);
    return this.wrap(this.native.base.ggml_transpose(this.ctxPtr, ptrOf(a)));
  }
  /**
   * steerlm's fused copy kernel (native/relayout.c): `a` (f32, any strides) written contiguously as
   * `type`, ne0 zero-padded to `ne0`. Only called when the kernels are loaded.
   */
  #relayout(a: Tensor, type: "f32" | "bf16", ne0: number, fn: KernelFn): Tensor {
    const [, n1, n2, n3] = a.ne;
    return this.custom(type, [ne0, n1, n2, n3], [a], fn);
  }

  /**
   * A materialised transpose of an f32 tensor: [n0, n1, …] → [n1, n0, …]. With steerlm's kernels, one
   * cache-blocked pass. Without them: ggml's same-type copy (cont → dup_bytes) calls memcpy once per
   * 4-byte element of a strided source, so a contiguous input is transposed as the concat of two
   * transposed halves (concat reads any strides in a plain loop). Exact either way: values only move.
   */
  transposed(a: Tensor): Tensor {
    const [n0, n1, n2, n3] = a.ne;
    const k = this.kernels;
    if (k && a.type === "f32") return this.#relayout(this.transpose(a), "f32", n1, k.relayout);
    if (a.type !== "f32" || !a.contiguous || n1 < 2) return this.cont(this.transpose(a));
    const b = this.native.base;
    const m = n2 * n3;
    const h = Math.floor(n1 / 2);
    // one 3-d view per half of ne1: [n0, len, m]
    const half = (start: number, len: number) =>
      this.wrap(b.ggml_view_3d(this.ctxPtr, ptrOf(a), n0, len, m, n0 * 4, n0 * n1 * 4, start * n0 * 4));
    // 2-d: [len, 1, n0] so that concat's threads split over n0 rows; else [len, n0, m]
    const axes: [number, number, number, number] = m === 1 ? [2, 0, 1, 3] : [1, 0, 2, 3];
    const p1 = this.permute(half(0, h), axes);
    const p2 = this.permute(half(h, n1 - h), axes);
    const cat = this.wrap(b.ggml_concat(this.ctxPtr, ptrOf(p1), ptrOf(p2), 0));
    return this.reshape(cat, [n1, n0, n2, n3]);
  }

  /**
   * A GEMM operand made from f32 `a`: converted to `type`, transposed first when `transpose`, and ne0
   * zero-padded to a multiple of `multiple` (exact for a reduction: the padding adds zeros). One pass
   * with steerlm's kernels; transpose, pad and cast as separate ggml ops without them (same values).
   * Made once per graph for each (tensor, form): q, k and v read the same input.
   */
  operand(a: Tensor, type: "f32" | "bf16", transpose: boolean, multiple = 1): Tensor {
    if (a.type !== "f32") fail("operand", `f32 input required, got ${a.type}`);
    return this.made(a, `operand/${type}/${transpose}/${multiple}`, () => {
      const n0 = (transpose ? a.ne[1] : a.ne[0]) as number;
      const padded = Math.ceil(n0 / multiple) * multiple;
      const k = this.kernels;
      if (k) return this.#relayout(transpose ? this.transpose(a) : a, type, padded, k.relayout);
      let t = transpose ? this.transposed(a) : a;
      if (padded > n0) t = this.padDim0(t.contiguous ? t : this.cont(t), padded - n0);
      return type === "f32" ? (t.contiguous ? t : this.cont(t)) : this.cast(t, type);
    });
  }
}

/** RoPE as attention's kernels apply it to q and k: each token's position, the pairing, the base θ. */
export interface RopeSpec {
  positions: Tensor;
  mode: RopeMode;
  base: number;
}

/** The layouts steerlm's attention kernels read (ForwardContext.fusedAttention). */
export function fusedAttentionFits(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, rope: RopeSpec): boolean {
  const [HD, H, N, one] = q.ne as Shape4;
  const [T, Tq, mone, B] = mask.ne as Shape4;
  return (
    [q, k, v, mask].every((t) => t.type === "f32" && t.contiguous) &&
    one === 1 &&
    HD % 16 === 0 &&
    sameShape(k, v) &&
    k.ne[0] === HD &&
    k.ne[2] === N &&
    k.ne[3] === 1 &&
    H % (k.ne[1] as number) === 0 &&
    Tq === T &&
    mone === 1 &&
    T * B === N &&
    rope.positions.type === "i32" &&
    rope.positions.nelements === N
  );
}
