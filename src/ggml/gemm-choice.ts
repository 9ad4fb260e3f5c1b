/** Which of steerlm's GEMM kernels runs a product, from its operands' types and layouts. */
import type { KernelFn } from "./ffi.js";
import { loadKernels, type NativeKernels } from "./native-kernels.js";
import { blockBytes, type DType, ggmlType, type Tensor } from "./tensor.js";

/** a transposed view: K strided, M contiguous (what `Context.transpose` makes of a K-contiguous matrix). */
export function isTransposedView(a: Tensor): boolean {
  return a.nb[0] > a.nb[1];
}

/**
 * Whether ggml's strides can describe `transpose(w)`. A block-quantised w needs rows of more than one block:
 * with one, the view's two strides are both the block's bytes, those of rows, and it would be read as rows.
 */
export function hasTransposedView(w: Tensor): boolean {
  const { blockSize } = ggmlType(w.type);
  return blockSize === 1 || w.ne[0] > blockSize;
}

/** The f32-b GEMM for a's type: a frozen base in f16, bf16 or Q8_0 is widened to f32 inside the kernel. */
function widenedKernel(k: NativeKernels, type: DType): KernelFn | null {
  const widened = { f32: k.gemmF32, f16: k.gemmF16, bf16: k.gemmBf16F32, q8_0: k.gemmQ8_0, i32: null };
  return widened[type];
}

/**
 * steerlm's packed GEMM for this product, when it applies: kernels built, CPU support (AVX-512,
 * AVX512-BF16 for bf16), a/b types bf16/bf16 (K even) or f32|f16|bf16|q8_0/f32, b K-contiguous or (f32) a
 * transposed view with N contiguous, and a K-contiguous or (f32/f16/bf16/q8_0 with an f32 b) a transposed
 * view with M contiguous. Exact: ggml's f16 and Q8_0 paths would also round the f32 operand to f16 / Q8_0,
 * the kernels widen a instead.
 */
export function gemmKernel(a: Tensor, b: Tensor): KernelFn | null {
  const k = loadKernels();
  const size = blockBytes(a.type);
  const bRows = b.nb[0] === blockBytes(b.type);
  if (!k || !(bRows || (b.type === "f32" && isTransposedView(b) && b.nb[1] === 4))) return null;
  if (isTransposedView(a) ? a.nb[1] !== size : a.nb[0] !== size) return null;
  if (a.type === "bf16" && b.type === "bf16") return a.ne[0]! % 2 === 0 ? k.gemmBf16 : null;
  return b.type === "f32" ? widenedKernel(k, a.type) : null;
}

/** Whether `gemmKernel` reads `transpose(w)` in place against a `bType` operand. */
export function readsTransposed(w: Tensor, bType: "f32" | "bf16"): boolean {
  const k = loadKernels();
  const type = w.type;
  if (!k || type === "i32" || !hasTransposedView(w)) return false;
  return (bType === "bf16" ? (type === "bf16" ? k.gemmBf16 : null) : widenedKernel(k, type)) !== null;
}
