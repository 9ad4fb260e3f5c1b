import { quantizeQ8_0 } from "../gguf/quant.js";

/**
 * Q8_0 blocks of Wᵀ from W's f32 values ([cols, rows] in ggml order, cols = ne0 fastest). ggml can neither
 * transpose a quantised tensor nor copy a strided view into one, so the backward pass's Wᵀ for a frozen
 * Q8_0 weight is made on the host once: dequantised W → transpose → requantise. Its blocks then run along
 * W's output dimension, so `rows` must be a multiple of 32 too.
 */
export function transposeToQ8_0(w: Float32Array, cols: number, rows: number): Uint8Array {
  if (w.length !== cols * rows) throw new RangeError(`expected ${cols}×${rows} values, got ${w.length}`);
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) t[k * rows + r] = w[r * cols + k]!;
  return quantizeQ8_0(t);
}
