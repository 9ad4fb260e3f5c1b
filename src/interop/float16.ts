import { f32ToF16 } from "../gguf/quant.js";
import { InputError, type Place } from "../util/errors.js";

/**
 * Float32 weights as F16 bits for a file in F16. F16 tops out at 65504; BF16 and F32 weights can hold
 * larger values, which would silently become infinities (and NaN logits). Refuse instead, naming the tensor.
 */
export function f32ToF16Checked(data: Float32Array, place: Place): Uint16Array {
  const half = f32ToF16(data);
  for (let i = 0; i < half.length; i++) {
    if ((half[i]! & 0x7fff) === 0x7c00 && Number.isFinite(data[i])) {
      throw new InputError(
        `value ${data[i]} is outside the float16 range (±65504)`,
        place,
        "write it with --type bf16 or --type f32",
      );
    }
  }
  return half;
}
