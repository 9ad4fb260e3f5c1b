import type { Context, RopeMode } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import type { LlamaConfig } from "./config.js";
import { type LoraPair, linear } from "./lora.js";

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
 * Grouped-query causal self-attention. Shapes (ggml order), N = T·B, HD = head dim:
 *   x [D, N] → q [HD, H, N], k/v [HD, KV, N] → RoPE(q, k) → scores [T_k, T_q, H, B] → out [H·HD, N] → [D, N].
 */
export function attention(
  c: Context,
  cfg: LlamaConfig,
  w: AttentionWeights,
  x: Tensor,
  inp: AttentionInputs,
): Tensor {
  const { seqLen: T, batch: B } = inp;
  const HD = cfg.headDim;
  const H = cfg.numHeads;
  const KV = cfg.numKvHeads;
  const N = T * B;

  let q = c.reshape(linear(c, x, w.wq, w.bq, w.lora.q), [HD, H, N]);
  let k = c.reshape(linear(c, x, w.wk, w.bk, w.lora.k), [HD, KV, N]);
  let v = c.reshape(linear(c, x, w.wv, w.bv, w.lora.v), [HD, KV, N]);
  q = c.rope(q, inp.positions, HD, inp.ropeMode, cfg.ropeTheta);
  k = c.rope(k, inp.positions, HD, inp.ropeMode, cfg.ropeTheta);
  if (KV !== H) {
    // GQA: query head h reads kv head floor(h / (H/KV)) (repeat_interleave). Tile [HD,1,KV,N] → [HD,r,KV,N]:
    // flattening (r, KV) puts head index j + r·kv, so query head h maps to kv = floor(h / r). ggml's
    // broadcasting mul_mat would avoid the copy, but its backward cannot broadcast with a batch dimension.
    const r = H / KV;
    const shape = c.newTensor("f32", [HD, r, KV, N]);
    k = c.reshape(c.repeat(c.reshape(k, [HD, 1, KV, N]), shape), [HD, H, N]);
    v = c.reshape(c.repeat(c.reshape(v, [HD, 1, KV, N]), shape), [HD, H, N]);
  }
  const q4 = c.permute(c.reshape(q, [HD, H, T, B]), [0, 2, 1, 3]); // [HD, T, H, B]
  const k4 = c.permute(c.reshape(k, [HD, H, T, B]), [0, 2, 1, 3]); // [HD, T, H, B]
  let kq = c.mulMat(k4, q4); // [T_k, T_q, H, B]
  kq = c.softMaxExt(kq, inp.kqMask, 1 / Math.sqrt(HD));
  const vt = c.cont(c.permute(c.reshape(v, [HD, H, T, B]), [1, 2, 0, 3])); // [T, HD, H, B]
  const o = c.mulMat(vt, kq); // [HD, T_q, H, B]
  const merged = c.reshape(c.cont(c.permute(o, [0, 2, 1, 3])), [HD * H, N]); // [H·HD, N]
  return linear(c, merged, w.wo, undefined, w.lora.o);
}
