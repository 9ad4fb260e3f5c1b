import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import type { Tape } from "./tape.js";

/** Projections LoRA can adapt, named as in PEFT's Llama target_modules (q_proj → "q", ...). */
export const LORA_TARGETS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export interface LoraOptions {
  rank: number;
  alpha: number;
  targets: readonly LoraTarget[];
}

/** llama.cpp tensor part for each target. */
export const LORA_TARGET_TENSOR: Readonly<Record<LoraTarget, string>> = {
  q: "attn_q",
  k: "attn_k",
  v: "attn_v",
  o: "attn_output",
  gate: "ffn_gate",
  up: "ffn_up",
  down: "ffn_down",
};

/** Adapter tensor names: blk.N.attn_q.lora_a [in, r] and blk.N.attn_q.lora_b [r, out] (ggml order). */
export const loraNames = (layer: number, target: LoraTarget): { a: string; b: string } => {
  const base = `blk.${layer}.${LORA_TARGET_TENSOR[target]}`;
  return { a: `${base}.lora_a`, b: `${base}.lora_b` };
};

export interface LoraPair {
  a: Tensor;
  b: Tensor;
  scale: number;
}

/**
 * y = W·x (+ bias) + (alpha/r)·B·(A·x). ggml_mul_mat(W, x) computes x·Wᵀ per token, so with W [in, out]
 * and x [in, N] the result is [out, N]; A [in, r] gives [r, N] and B [r, out] gives [out, N].
 * Backward (with a tape), all as mul_mat(a, b) = b·aᵀ over the shared ne0:
 *   dx = mul_mat(Wᵀ [out,in], dy [out,N]);  dW = mul_mat(xᵀ [N,in], dyᵀ [N,out]) = [in, out];  db = Σ_N dy.
 */
export function linear(
  c: Context,
  x: Tensor,
  w: Tensor,
  bias?: Tensor,
  lora?: LoraPair,
  tape?: Tape,
  bf16 = false,
): Tensor {
  // bf16: the GEMMs read bfloat16 operands (cast here unless stored so) and accumulate in f32 — only where
  // the reduced dimension is a multiple of 32: otherwise ggml leaves its fast GEMM for a loop slower than f32
  const low = (k: number) => bf16 && k % 32 === 0;
  // a reduction that is not a multiple of 32 (e.g. an FFN of 688) is zero-padded to one, which is exact
  const padded = (a: Tensor, b: Tensor) => {
    const p = 32 - ((a.ne[0] as number) % 32);
    return c.mulMat(c.cast(c.padDim0(a, p), "bf16"), c.padDim0(b, p));
  };
  const gemm = (a: Tensor, b: Tensor, k: number) =>
    bf16 && !low(k) && a.type === "f32" && b.type === "f32" ? padded(a, b) : c.mulMat(a, b);
  let y = gemm(low(w.ne[0]) && w.type === "f32" ? c.cast(w, "bf16") : w, x, w.ne[0] as number); // [out, N]
  if (bias) y = c.add(y, bias);
  let u: Tensor | undefined;
  if (lora) {
    u = c.mulMat(lora.a, x); // [r, N]
    const up = c.mulMat(lora.b, u); // [out, N]
    y = c.add(y, lora.scale === 1 ? up : c.scale(up, lora.scale));
  }
  if (tape?.propagate(y, [x], [w, bias, lora?.a, lora?.b])) {
    tape.record(() => {
      const dy = tape.grad(y);
      if (!dy) return;
      const xt = () => tape.transposed(x, low(x.ne[1]));
      let dyT: Tensor | undefined;
      const dyt = () => {
        dyT ??= c.transposed(dy);
        return dyT;
      };
      tape.addParamGrad(w, () => c.mulMat(xt(), dyt()));
      tape.addParamGrad(bias, () => c.repeatBack(dy, bias as Tensor));
      let dx = tape.live(x) ? gemm(tape.transposedWeight(w, low(w.ne[1])), dy, w.ne[1] as number) : undefined;
      if (lora && u) {
        const uu = u;
        const dz = lora.scale === 1 ? dy : c.scale(dy, lora.scale);
        tape.addParamGrad(lora.b, () =>
          c.mulMat(c.transposed(uu), lora.scale === 1 ? dyt() : c.transposed(dz)),
        );
        const du = c.mulMat(c.transposed(lora.b), dz); // [r, N]
        tape.addParamGrad(lora.a, () => c.mulMat(tape.transposed(x), c.transposed(du)));
        if (dx) dx = c.add(dx, c.mulMat(c.transposed(lora.a), du));
      }
      if (dx) tape.addGrad(x, dx);
    });
  }
  return y;
}
