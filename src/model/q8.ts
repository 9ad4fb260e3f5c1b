import { f16BitsToF32, quantizeQ8_0 } from "../gguf/quant.js";
import { GGML_TYPES } from "../gguf/types.js";

// a block: an f16 scale, then QK int8
const { blockSize: QK, bytesPerBlock: BLOCK } = GGML_TYPES.Q8_0;

/**
 * Q8_0 blocks of Wᵀ from W's Q8_0 blocks ([cols, rows] in ggml order, cols = ne0 fastest). ggml can neither
 * transpose a quantised tensor nor copy a strided view into one, so the backward pass's Wᵀ for a frozen
 * Q8_0 weight is made on the host once: W's values (exactly, scale × int8) transposed and requantised. Its
 * blocks then run along W's output dimension, so `rows` must be a multiple of 32 too.
 *
 * It works 32 of W's columns at a time (one block of each row: 32 rows of Wᵀ, quantised together), so the
 * host holds the two block arrays and a 32-row strip of f32, never W's values whole: an 8B model's
 * transposes once left gigabytes of f32 garbage behind (its setup peaked 4.7 GB above its steps).
 */
export function transposeQ8_0(w: Uint8Array, cols: number, rows: number): Uint8Array {
  if (cols % QK !== 0 || rows % QK !== 0)
    throw new RangeError(`Q8_0 transposes need both sides a multiple of ${QK}, got ${cols}×${rows}`);
  const perRow = cols / QK;
  if (w.length !== rows * perRow * BLOCK)
    throw new RangeError(`expected ${rows * perRow * BLOCK} bytes of ${cols}×${rows} Q8_0, got ${w.length}`);
  const view = new DataView(w.buffer, w.byteOffset, w.byteLength);
  const out = new Uint8Array(w.length);
  const strip = new Float32Array(QK * rows); // rows k0 .. k0+31 of Wᵀ, each `rows` values long
  for (let b = 0; b < perRow; b++) {
    for (let r = 0; r < rows; r++) {
      const o = (r * perRow + b) * BLOCK;
      const d = f16BitsToF32(view.getUint16(o, true));
      for (let j = 0; j < QK; j++) strip[j * rows + r] = d * view.getInt8(o + 2 + j);
    }
    out.set(quantizeQ8_0(strip), b * rows * BLOCK); // 32 rows of Wᵀ, rows / 32 blocks each
  }
  return out;
}
