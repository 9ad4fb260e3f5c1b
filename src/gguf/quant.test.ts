import { describe, expect, it } from "vitest";
import { ggmlOracle } from "./ggml-oracle.js";
import {
  bf16BitsToF32,
  DECODABLE_TYPES,
  dequantize,
  f16BitsToF32,
  f32ToBf16,
  f32ToBf16Bits,
  f32ToF16,
  f32ToF16Bits,
  quantizeQ8_0,
} from "./quant.js";
import type { GgmlTypeName } from "./types.js";

/** Deterministic values with a spread of magnitudes, signs, exact halves and specials. */
function sample(n: number, seed = 1): Float32Array {
  const x = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = ((s / 2 ** 32 - 0.5) * 2 ** ((i % 40) - 20)) as number;
  }
  return x;
}

describe("F16 (round to nearest even)", () => {
  it("rounds the classic edge cases", () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff); // max half
    expect(f32ToF16Bits(65519.99)).toBe(0x7bff); // below the rounding midpoint to inf
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // midpoint rounds (to even) to inf
    expect(f32ToF16Bits(1e6)).toBe(0x7c00);
    expect(f32ToF16Bits(Number.NEGATIVE_INFINITY)).toBe(0xfc00);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(Number.NaN)))).toBe(true);
    // 1 + 2^-11 is exactly between 1 and the next half (1 + 2^-10): ties go to the even mantissa (1).
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00);
    // 1 + 3·2^-11 is between 1+2^-10 (odd) and 1+2^-9 (even): goes up.
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // exactly half of it: ties to even (0)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulps: ties to even (2)
    expect(f32ToF16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up out of the subnormals
  });

  it("matches ggml_fp32_to_fp16_row bit for bit, and decodes every half exactly", () => {
    const x = sample(4096);
    x.set([65520, 65519, 2 ** -25, 3 * 2 ** -25, 1e-9, -1e9, 0, -0], 0);
    expect(Array.from(f32ToF16(x))).toEqual(Array.from(ggmlOracle().toHalf("F16", x)));
    const all = new Uint16Array(65536).map((_, i) => i);
    const ours = dequantize("F16", new Uint8Array(all.buffer), 65536);
    const ref = ggmlOracle().toFloat("F16", new Uint8Array(all.buffer), 65536);
    expect(Buffer.from(ours.buffer).equals(Buffer.from(ref.buffer))).toBe(true);
  });
});

describe("BF16", () => {
  it("rounds to nearest even like ggml_fp32_to_bf16_row and decodes exactly", () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    const x = sample(4096, 7);
    expect(Array.from(f32ToBf16(x))).toEqual(Array.from(ggmlOracle().toHalf("BF16", x)));
    const bits = f32ToBf16(x);
    const back = dequantize("BF16", new Uint8Array(bits.buffer), x.length);
    for (let i = 0; i < x.length; i++) {
      expect(Math.abs(back[i]! - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -8);
    }
  });
});

describe("Q8_0", () => {
  it("produces ggml's exact bytes and stays within half a step of the input", () => {
    const x = sample(32 * 64, 3);
    const q = quantizeQ8_0(x);
    expect(Buffer.from(q).equals(Buffer.from(ggmlOracle().quantize("Q8_0", x, 256)))).toBe(true);
    const back = dequantize("Q8_0", q, x.length);
    for (let b = 0; b < x.length / 32; b++) {
      const block = x.subarray(b * 32, b * 32 + 32);
      const amax = Math.max(...Array.from(block, Math.abs));
      // step d = amax/127 (stored as f16, relative error ≤ 2^-11); rounding error ≤ d/2 plus 127·Δd.
      const bound = (amax / 127) * 0.5 + amax * 2 ** -11 + 1e-12;
      for (let j = 0; j < 32; j++) {
        expect(Math.abs(back[b * 32 + j]! - block[j]!)).toBeLessThanOrEqual(bound);
      }
    }
  });

  it("encodes an all-zero block as zeros", () => {
    expect(Array.from(quantizeQ8_0(new Float32Array(32)))).toEqual(new Array(34).fill(0));
  });
});

describe("dequantize matches ggml's to_float", () => {
  const types: GgmlTypeName[] = ["Q8_0", "Q4_0", "Q4_K", "Q6_K"];
  it.each(types)("%s", (type) => {
    expect(DECODABLE_TYPES).toContain(type);
    const x = sample(256 * 4, 11);
    const q = ggmlOracle().quantize(type, x, 512);
    const ours = dequantize(type, q, x.length);
    const ref = ggmlOracle().toFloat(type, q, x.length);
    expect(Buffer.from(ours.buffer).equals(Buffer.from(ref.buffer))).toBe(true);
  });
});
