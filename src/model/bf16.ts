import type { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";

/**
 * bf16 compute: the GEMMs read bfloat16 operands and accumulate in f32. ggml's bf16 GEMM needs a reduction
 * that is a multiple of 32 (else it falls back to a loop slower than f32), so operands made for it are
 * zero-padded along the reduction (exact: the padding adds zeros), and a stored weight is read as bf16 only
 * where its reduction already is one.
 */
const BF16_REDUCTION = 32;

export function bf16Reduces(k: number): boolean {
  return k % BF16_REDUCTION === 0;
}

/** f32 `t` (any layout) as a bf16 GEMM operand, transposed first when `transpose`, its reduction padded. */
export function bf16Operand(c: Context, t: Tensor, transpose = false): Tensor {
  return c.operand(t, "bf16", transpose, BF16_REDUCTION);
}
