import { afterAll, describe, expect, it } from "vitest";
import { computeOnce } from "../../test/engine.js";
import { ALL_KERNEL_MODES, useKernels } from "../../test/kernel-modes.js";
import { Backend, getF32, setData } from "./backend.js";
import { Context, type RopeMode } from "./context.js";

// Context.rope and ropeBack: steerlm's kernels (native/rope.c: one table of angles per graph, the rotation
// vectorised where the rotated dims allow, else scalar) against ggml's rope_ext and rope_ext_back, which
// llama.cpp serves the exported models with.
afterAll(() => useKernels("kernels"));

interface Case {
  /** [head dim, heads, tokens] and the rotated dims. */
  ne: [number, number, number];
  nDims: number;
}
const cases: Case[] = [
  { ne: [32, 4, 40], nDims: 32 }, // both modes vectorised (m10's heads)
  { ne: [64, 3, 9], nDims: 32 }, // partial rotation: dims past 32 copied
  { ne: [48, 2, 5], nDims: 48 }, // neox halves of 24: 8 lanes even on AVX-512; pairs on 16 where AVX-512 is
  { ne: [12, 2, 3], nDims: 8 }, // pairs on 8 lanes, neox scalar
  { ne: [20, 2, 3], nDims: 12 }, // scalar both ways on every CPU, dims past 12 copied
];
const BASE = 10000;

/** rope then ropeBack of the same data and positions, in one graph (the table made once). */
function run(backend: Backend, cs: Case, mode: RopeMode, x: Float32Array, pos: Int32Array): Float32Array[] {
  const [d, h, t] = cs.ne;
  const s = new Context(4);
  const a = s.newTensor("f32", [d, h, t], "x");
  const p = s.newTensor("i32", [t], "pos");
  const buf = backend.allocTensors(s);
  setData(a, x);
  setData(p, pos);
  const c = new Context(16, 16);
  const fwd = c.rope(a, p, cs.nDims, mode, BASE);
  const back = c.ropeBack(a, p, cs.nDims, mode, BASE);
  c.setOutput(fwd);
  c.setOutput(back);
  const alloc = computeOnce(backend, c, 16, c.add(fwd, back));
  const out = [getF32(fwd), getF32(back)];
  alloc.free();
  c.free();
  buf.free();
  s.free();
  return out;
}

describe("Context.rope and ropeBack", () => {
  for (const kernels of ALL_KERNEL_MODES.filter((m) => m !== "ggml fallback"))
    for (const threads of [1, 2])
      it(`match ggml's rope_ext and rope_ext_back (${kernels}, ${threads} thread${threads > 1 ? "s" : ""})`, () => {
        const backend = new Backend(threads);
        for (const cs of cases)
          for (const mode of ["normal", "neox"] as const) {
            const [d, h, t] = cs.ne;
            const x = Float32Array.from({ length: d * h * t }, (_, i) => Math.sin(i * 0.61) * 3);
            // out of order, and one far position (large angles)
            const pos = Int32Array.from({ length: t }, (_, i) => ((i * 37) % 4096) + (i === 2 ? 100_000 : 0));
            useKernels("ggml fallback");
            const want = run(backend, cs, mode, x, pos);
            useKernels(kernels);
            const got = run(backend, cs, mode, x, pos);
            const label = JSON.stringify({ ...cs, mode });
            for (const k of [0, 1]) {
              let worst = 0;
              for (let i = 0; i < x.length; i++)
                worst = Math.max(worst, Math.abs(got[k]![i]! - want[k]![i]!));
              // ggml may fuse x0·cos − x1·sin into one FMA: an ulp or two of |x| ≤ 3
              expect(worst, `${k ? "ropeBack" : "rope"} ${label}`).toBeLessThan(3e-6);
            }
            // the copied dims past nDims are the input's, bit for bit
            for (let r = 0; r < h * t; r++)
              for (let i = cs.nDims; i < d; i++) expect(got[0]![r * d + i]).toBe(x[r * d + i]);
          }
        backend.free();
      });
});
