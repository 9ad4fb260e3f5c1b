import { afterAll, describe, expect, it } from "vitest";
import { Backend, Graph, getF32, setData } from "../ggml/backend.js";
import { Context } from "../ggml/context.js";
import { dequantize, quantizeQ8_0 } from "../gguf/quant.js";
import { Rng } from "../util/rng.js";
import { transposeQ8_0 } from "./q8.js";

const backend = new Backend(1);
afterAll(() => backend.free());

/**
 * Values that Q8_0 holds exactly: k/16 with integer |k| ≤ 127 and one ±127 in every block of 32, so the
 * block scale is exactly 1/16. ggml's Q8_0×F32 GEMM rounds its f32 operand to Q8_0; with these inputs that
 * rounding is exact and the product must match float64 arithmetic on the dequantised weights.
 */
function exactQ8(rng: Rng, n: number): Float32Array {
  const v = Float32Array.from({ length: n }, () => (rng.int(0, 254) - 127) / 16);
  for (let b = 0; b < n; b += 32) v[b + rng.int(0, 31)] = rng.int(0, 1) ? 127 / 16 : -127 / 16;
  return v;
}

/** out[j, n] = Σ_k a[k, j]·b[k, n] (ggml's mul_mat: both operands share ne0). */
function mulMatRef(a: Float32Array, b: Float32Array, k: number, m: number, n: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let c = 0; c < n; c++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += a[j * k + i]! * b[c * k + i]!;
      out[c * m + j] = s;
    }
  return out;
}

describe("transposeQ8_0", () => {
  it("gives the bytes of W's values transposed and requantised whole, 32 columns at a time", () => {
    const rng = new Rng(9);
    for (const [cols, rows] of [
      [32, 32],
      [64, 160],
      [224, 96],
    ] as const) {
      // values of every scale, zero blocks and blocks with one nonzero value included
      const v = rng.normalArray(cols * rows, 0.5);
      for (let i = 0; i < 32; i++) v[i] = 0;
      for (let i = 33; i < 64; i++) v[i] = 0;
      const wq = quantizeQ8_0(v);
      const w = dequantize("Q8_0", wq, cols * rows);
      const t = new Float32Array(w.length);
      for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) t[k * rows + r] = w[r * cols + k]!;
      expect(transposeQ8_0(wq, cols, rows), `${cols}×${rows}`).toEqual(quantizeQ8_0(t));
    }
  });

  it("refuses sides that are not whole blocks and a wrong byte count", () => {
    expect(() => transposeQ8_0(new Uint8Array(34 * 3), 32, 3)).toThrow(/multiple of 32/);
    expect(() => transposeQ8_0(new Uint8Array(34), 32, 32)).toThrow(/expected 1088 bytes/);
  });
});

describe("Q8_0 frozen weight and its transpose in ggml", () => {
  it("W·x and Wᵀ·dy (host-made Q8_0 transpose) match float64 on the dequantised values", () => {
    const [IN, OUT, N] = [64, 96, 5];
    const rng = new Rng(4);
    const wq = quantizeQ8_0(rng.normalArray(IN * OUT, 0.2)); // W [IN, OUT] in ggml order
    const w = dequantize("Q8_0", wq, IN * OUT);
    const x = exactQ8(rng, IN * N);
    const dy = exactQ8(rng, OUT * N);

    const data = new Context(8);
    const tw = data.newTensor("q8_0", [IN, OUT], "w");
    const twt = data.newTensor("q8_0", [OUT, IN], "w.T");
    const tx = data.newTensor("f32", [IN, N], "x");
    const tdy = data.newTensor("f32", [OUT, N], "dy");
    const buf = backend.allocTensors(data);
    setData(tw, wq);
    setData(twt, transposeQ8_0(wq, IN, OUT));
    setData(tx, x);
    setData(tdy, dy);
    const ops = new Context(16, 16);
    const y = ops.mulMat(tw, tx); // [OUT, N]
    const dx = ops.mulMat(twt, tdy); // [IN, N]
    const g = new Graph(ops, 16);
    g.expand(y);
    g.expand(dx);
    const alloc = backend.newAllocator();
    alloc.alloc(g);
    backend.compute(g);

    // Wᵀ's blocks gather values from 32 different blocks of W, so requantising rounds once more: the
    // product must be exact against the transpose's own values, which stay within half a step of W's
    const wtq = dequantize("Q8_0", transposeQ8_0(wq, IN, OUT), IN * OUT);
    for (let o = 0; o < OUT; o++)
      for (let i = 0; i < IN; i++) {
        const b = Math.floor(o / 32) * 32;
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(w[(b + j) * IN + i]!));
        const err = Math.abs(wtq[i * OUT + o]! - w[o * IN + i]!);
        expect(err).toBeLessThanOrEqual((amax / 127) * 0.57);
      }
    for (const [got, want] of [
      [getF32(y), mulMatRef(w, x, IN, OUT, N)],
      [getF32(dx), mulMatRef(wtq, dy, OUT, IN, N)],
    ] as const) {
      let scale = 0;
      for (const v of want) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!) / scale).toBeLessThan(1e-5);
    }
    alloc.free();
    ops.free();
    buf.free();
    data.free();
  });
});
