import type { Context } from "../ggml/context.js";
import type { DType, Tensor } from "../ggml/tensor.js";
import { bf16Operand, bf16Reduces } from "./bf16.js";
import type { Tape } from "./tape.js";
import { blockTensor } from "./tensor-names.js";

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
  const base = blockTensor(layer, LORA_TARGET_TENSOR[target]);
  return { a: `${base}.lora_a`, b: `${base}.lora_b` };
};

export interface LoraPair {
  a: Tensor;
  b: Tensor;
  scale: number;
}

/**
 * The type of W's partner (x in W·x, dy in dx = Wᵀ·dy) for a W of `wType` in a product reducing over
 * `reduction` (W's inputs forward, its outputs for dx): bf16 under bf16 compute for an f32 W (rounded to a
 * bf16 operand, padded where needed) and for a bf16 W whose reduction is a bf16 one (read as stored); else f32,
 * against which steerlm's GEMM widens an f16, bf16 or Q8_0 W exactly. The trainer's frozen transposes
 * (train/frozen-transposes.ts) follow it.
 */
export function partnerType(wType: DType, bf16: boolean, reduction: number): "f32" | "bf16" {
  return bf16 && (wType === "f32" || (wType === "bf16" && bf16Reduces(reduction))) ? "bf16" : "f32";
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
  // bf16: the large GEMMs read bfloat16 operands (bf16.ts). A weight stored in a low-precision type is used as
  // is, against x as partnerType says
  const low = (b: Tensor, transpose = false) => bf16Operand(c, b, transpose);
  let y =
    partnerType(w.type, bf16, w.ne[0]!) === "f32"
      ? c.mulMat(w, x)
      : c.mulMat(w.type === "f32" ? low(w) : w, low(x)); // [out, N]
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
      // dW reduces over the tokens: both operands transposed, f32 ones views the GEMM packs in place (in
      // bf16, copies with the tokens padded as bf16.ts says)
      tape.addParamGrad(w, () =>
        bf16
          ? c.mulMat(tape.transposed(x, true), low(dy, true))
          : c.mulMat(tape.transposed(x), c.transpose(dy)),
      );
      tape.addParamGrad(bias, () => c.repeatBack(dy, bias as Tensor));
      let dx: Tensor | undefined;
      if (tape.live(x)) {
        // dx reduces over W's outputs: Wᵀ is a transposed view that steerlm's GEMM packs from W's rows (the
        // trainer caches the transpose of a frozen W it cannot read so). Against an f32 dy a low-precision W
        // is widened exactly (the gradient of an f32 base holding the same values); a bf16 dy is for the
        // bf16 × bf16 GEMM
        const cached = tape.frozenTransposes.get(w);
        if (partnerType(w.type, bf16, w.ne[1]!) === "f32")
          dx = c.mulMat(cached ?? c.transpose(w), dy); // [in, N]
        else if (w.type === "f32") dx = c.mulMat(cached ?? tape.transposed(w, true), low(dy));
        else dx = c.mulMat(cached ?? c.transpose(w), low(dy));
      }
      if (lora && u) {
        const uu = u;
        const dz = lora.scale === 1 ? dy : c.scale(dy, lora.scale);
        tape.addParamGrad(lora.b, () => c.mulMat(c.transpose(uu), c.transpose(dz)));
        const du = c.mulMat(c.transpose(lora.b), dz); // [r, N]
        tape.addParamGrad(lora.a, () => c.mulMat(tape.transposed(x), c.transpose(du)));
        if (dx) dx = c.accumulate(dx, c.mulMat(c.transpose(lora.a), du));
      }
      if (dx) tape.addGrad(x, dx, true);
    });
  }
  return y;
}
