import type { Context, RopeMode } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import { bf16Operand } from "./bf16.js";
import type { LlamaConfig } from "./config.js";
import { type LoraPair, linear } from "./lora.js";
import type { Tape } from "./tape.js";

/** Tensors of one attention layer (q/k/v biases only for Qwen2-style configs). */
export interface AttentionWeights {
  wq: Tensor;
  wk: Tensor;
  wv: Tensor;
  wo: Tensor;
  bq?: Tensor;
  bk?: Tensor;
  bv?: Tensor;
  lora: Partial<Record<"q" | "k" | "v" | "o", LoraPair>>;
  /** Run the projections' GEMMs in bfloat16. */
  bf16: boolean;
}

/** Per-batch inputs every attention layer reads. */
export interface AttentionInputs {
  /** i32 [T·B]: RoPE position of each token. */
  positions: Tensor;
  /** f32 [T, T, 1, B]: 0 where query (ne1) may attend key (ne0), -inf elsewhere (causal + padding). */
  kqMask: Tensor;
  seqLen: number;
  batch: number;
  ropeMode: RopeMode;
}

/**
 * The values of `positions` and `kqMask` for B sequences of T tokens, `real` [B·T] marking the real ones
 * (the rest padding, on either side): a token's position counts the real tokens before it; a query attends
 * the real keys up to itself, and itself always (a padding query's softmax row then stays finite). `last`:
 * each sequence's last real token (t), -1 where it has none.
 */
export function attentionValues(
  real: Uint8Array,
  B: number,
  T: number,
): { positions: Int32Array; kqMask: Float32Array; last: Int32Array } {
  const positions = new Int32Array(B * T);
  const kqMask = new Float32Array(B * T * T).fill(Number.NEGATIVE_INFINITY);
  const last = new Int32Array(B).fill(-1);
  for (let s = 0; s < B; s++) {
    let seen = 0;
    for (let t = 0; t < T; t++) {
      positions[s * T + t] = seen;
      if (real[s * T + t]) {
        seen++;
        last[s] = t;
      }
    }
    for (let q = 0; q < T; q++) {
      const row = s * T * T + q * T;
      for (let k = 0; k <= q; k++) if (real[s * T + k]) kqMask[row + k] = 0;
      kqMask[row + q] = 0;
    }
  }
  return { positions, kqMask, last };
}

/**
 * Grouped-query causal self-attention. Shapes (ggml order), N = T·B, HD = head dim:
 *   x [D, N] → q [HD, H, N], k/v [HD, KV, N] → RoPE(q, k) → scores [T_k, T_q, H, B] → out [H·HD, N] → [D, N].
 */
export function attention(
  c: Context,
  cfg: LlamaConfig,
  w: AttentionWeights,
  x: Tensor,
  inp: AttentionInputs,
  tape?: Tape,
): Tensor {
  const ql = linear(c, x, w.wq, w.bq, w.lora.q, tape, w.bf16); // [H·HD, N]
  const kl = linear(c, x, w.wk, w.bk, w.lora.k, tape, w.bf16); // [KV·HD, N]
  const vl = linear(c, x, w.wv, w.bv, w.lora.v, tape, w.bf16); // [KV·HD, N]
  const merged = attentionCore(c, cfg, ql, kl, vl, inp, tape, w.bf16);
  return linear(c, merged, w.wo, undefined, w.lora.o, tape, w.bf16);
}

/**
 * RoPE + softmax(q·kᵀ/√HD + mask)·v from the projected q, k, v; returns [H·HD, N]. steerlm's kernel where it
 * runs, else a graph of rope, products and softmax.
 */
function attentionCore(
  c: Context,
  cfg: LlamaConfig,
  ql: Tensor,
  kl: Tensor,
  vl: Tensor,
  inp: AttentionInputs,
  tape: Tape | undefined,
  bf16: boolean,
): Tensor {
  const { seqLen: T, batch: B } = inp;
  const HD = cfg.headDim;
  const H = cfg.numHeads;
  const KV = cfg.numKvHeads;
  const N = T * B;
  const r = H / KV;
  const scale = 1 / Math.sqrt(HD);
  const kernel = kernelAttention(c, cfg, [ql, kl, vl], inp, scale, tape);
  if (kernel) return kernel;
  const vr = c.reshape(vl, [HD, KV, N]);
  const rope = (t: Tensor, heads: number) =>
    c.rope(c.reshape(t, [HD, heads, N]), inp.positions, HD, inp.ropeMode, cfg.ropeTheta);
  // GQA: query head h reads kv head floor(h / r) (repeat_interleave). Tiling [HD,1,KV,N] → [HD,r,KV,N]
  // and flattening (r, KV) puts head index j + r·kv, so query head h maps to kv = floor(h / r). ggml's
  // broadcasting mul_mat would avoid the copy, but its backward cannot broadcast with a batch dimension.
  const shapeR = r > 1 ? c.newTensor("f32", [HD, r, KV, N]) : undefined;
  const expand = (t: Tensor) =>
    shapeR ? c.reshape(c.repeat(c.reshape(t, [HD, 1, KV, N]), shapeR), [HD, H, N]) : t;
  const unrope = (t: Tensor) => c.ropeBack(t, inp.positions, HD, inp.ropeMode, cfg.ropeTheta);
  const q = rope(ql, H); // [HD, H, N]
  const kr = rope(kl, KV); // [HD, KV, N]
  const k = expand(kr); // [HD, H, N]
  const v = expand(vr); // [HD, H, N]
  // head-major copies: mul_mat on permuted views takes a slow generic path (measured 3.6× slower)
  const heads4 = (t: Tensor) => c.permute(c.reshape(t, [HD, H, T, B]), [0, 2, 1, 3]); // view [HD, T, H, B]
  const byHead = (t: Tensor) => c.cont(heads4(t));
  let p: Tensor; // [T_k, T_q, H, B]
  let o: Tensor; // [HD, T_q, H, B]
  let back: (dm: Tensor) => { dq4: Tensor; dk4: Tensor; dv4: Tensor };
  if (bf16) {
    // bf16 GEMM operands straight from the f32 views (one fused copy each), reductions padded (bf16.ts)
    const arg = (t: Tensor, transpose = false) => bf16Operand(c, t, transpose);
    const [qv, kv, vv] = [heads4(q), heads4(k), heads4(v)];
    p = c.softMaxExt(c.mulMat(arg(kv), arg(qv)), inp.kqMask, scale, true);
    o = c.mulMat(arg(vv, true), arg(p));
    back = (dm) => {
      const dov = heads4(dm);
      const ds = c.softMaxBack(c.mulMat(arg(vv), arg(dov)), p, scale);
      return {
        dv4: c.mulMat(arg(dov, true), arg(p, true)),
        dq4: c.mulMat(arg(kv, true), arg(ds)),
        dk4: c.mulMat(arg(qv, true), arg(ds, true)),
      };
    };
  } else {
    const q4 = byHead(q);
    const k4 = byHead(k);
    p = c.softMaxExt(c.mulMat(k4, q4), inp.kqMask, scale, true);
    // with a tape, vᵀ is a transposed view of v4 (a row copy the backward needs anyway), which mulMat reads
    // in place or materialises: one cont of a fully transposing permute copies element by element through
    // memcpy. Without a tape keep the plain permute: ggml's own autograd cannot differentiate concat.
    const v4 = tape ? byHead(v) : undefined; // [HD, T_k, H, B]
    const vt = v4 ? c.transpose(v4) : c.cont(c.permute(c.reshape(v, [HD, H, T, B]), [1, 2, 0, 3])); // [T, HD, H, B]
    o = c.mulMat(vt, p);
    const pp = p;
    back = (dm) => {
      const do4 = byHead(dm); // [HD, T_q, H, B]
      const dp = c.mulMat(v4 as Tensor, do4); // [T_k, T_q, H, B]
      const ds = c.softMaxBack(dp, pp, scale); // [T_k, T_q, H, B]
      return {
        // Pᵀ materialised, not a view: as a view it kept Qwen2.5-0.5B's LoRA step 780 MB fuller at its peak
        // (ggml's allocation order; dSᵀ below is a view at no cost)
        dv4: c.mulMat(c.transpose(do4), c.transposed(pp)), // [HD, T_k, H, B]
        dq4: c.mulMat(c.transpose(k4), ds), // [HD, T_q, H, B]
        dk4: c.mulMat(c.transpose(q4), c.transpose(ds)), // [HD, T_k, H, B]
      };
    };
  }
  const merged = c.reshape(c.cont(c.permute(o, [0, 2, 1, 3])), [HD * H, N]); // [H·HD, N]

  if (tape?.propagate(merged, [ql, kl, vl])) {
    tape.record(() => {
      const dm = tape.grad(merged);
      if (!dm) return;
      const { dq4, dk4, dv4 } = back(dm);
      // back to [HD, heads, N], undo the GQA tiling by summing the r copies, undo RoPE
      const heads = (t4: Tensor) => c.reshape(c.cont(c.permute(t4, [0, 2, 1, 3])), [HD, H, N]);
      const reduce = (t: Tensor) => c.sumHeadGroups(t, KV);
      if (tape.live(ql)) tape.addGrad(ql, c.reshape(unrope(heads(dq4)), [HD * H, N]));
      if (tape.live(kl)) tape.addGrad(kl, c.reshape(unrope(reduce(heads(dk4))), [HD * KV, N]));
      if (tape.live(vl)) tape.addGrad(vl, c.reshape(c.cont(reduce(heads(dv4))), [HD * KV, N]));
    });
  }
  return merged;
}

/**
 * attentionCore as one node a layer each way (native/attention.c), RoPE included: no scores in memory, no
 * head-major copies. It computes in f32 under bf16 compute too (more exact than the graph's bf16 products, and
 * faster). null where the kernel does not apply.
 */
function kernelAttention(
  c: Context,
  cfg: LlamaConfig,
  [ql, kl, vl]: readonly [Tensor, Tensor, Tensor],
  inp: AttentionInputs,
  scale: number,
  tape: Tape | undefined,
): Tensor | null {
  const [HD, H, KV, N] = [cfg.headDim, cfg.numHeads, cfg.numKvHeads, inp.seqLen * inp.batch];
  const rope = { positions: inp.positions, mode: inp.ropeMode, base: cfg.ropeTheta };
  const [q, k, v] = [c.reshape(ql, [HD, H, N]), c.reshape(kl, [HD, KV, N]), c.reshape(vl, [HD, KV, N])];
  const fused = c.fusedAttention(q, k, v, inp.kqMask, scale, rope);
  if (!fused) return null;
  const out = c.reshape(c.range(fused, [HD * H * N], 0), [HD * H, N]);
  if (tape?.propagate(out, [ql, kl, vl])) {
    tape.record(() => {
      const dm = tape.grad(out);
      if (!dm) return;
      const dmc = dm.contiguous ? dm : c.cont(dm);
      const [dq, dk, dv] = c.attentionBack(q, k, v, inp.kqMask, rope, fused, dmc, scale);
      if (tape.live(ql)) tape.addGrad(ql, c.reshape(dq, [HD * H, N]));
      if (tape.live(kl)) tape.addGrad(kl, c.reshape(dk, [HD * KV, N]));
      if (tape.live(vl)) tape.addGrad(vl, c.reshape(dv, [HD * KV, N]));
    });
  }
  return out;
}
