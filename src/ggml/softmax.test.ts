import { afterAll, describe, expect, it } from "vitest";
import { computeOnce } from "../../test/engine.js";
import { ALL_KERNEL_MODES, useKernels } from "../../test/kernel-modes.js";
import { Backend, getF32, setData } from "./backend.js";
import { Context } from "./context.js";

// Context.softMaxExt: softmax(a·scale + mask) by rows. steerlm's kernel (native/softmax.c; its AVX-512 path
// and its portable one) and ggml's soft_max_ext, each against float64 on one and two threads.
afterAll(() => useKernels("kernels"));

const FLT_MIN = 2 ** -126;

interface Case {
  ne: [number, number, number, number];
  /** The mask's shape (null: none): ne0 equal, ne1 at least a's, dims 2 and 3 broadcast. */
  mask: [number, number, number, number] | null;
  scale: number;
  /** Largest |score| before the scale. */
  amp: number;
  /** The mask's value at (i0, i1, i2, i3). */
  value: (i0: number, i1: number, i2: number, i3: number) => number;
}

const cases: Case[] = [
  // rows of 37 (two vectors and a tail of 5); -inf, a finite bias and 0; one mask row without any finite
  // score: NaN, as ggml gives
  {
    ne: [37, 5, 3, 2],
    mask: [37, 7, 1, 2],
    scale: 0.3,
    amp: 20,
    value: (i0, i1, _i2, i3) =>
      i1 === 3 && i3 === 1
        ? -Infinity
        : i0 > 0 && (i0 * 7 + i1) % 5 === 0
          ? -Infinity
          : (i0 + i1) % 5 === 1
            ? -2.5
            : 0,
  },
  // attention's causal mask over 128 positions, per sequence, with scores far apart (e^-x underflows to 0)
  {
    ne: [128, 128, 4, 2],
    mask: [128, 128, 1, 2],
    scale: 1 / Math.sqrt(32),
    amp: 400,
    value: (i0, i1, _i2, i3) => (i0 <= i1 && !(i3 === 1 && i0 === 0 && i1 > 0) ? 0 : -Infinity),
  },
  { ne: [16, 3, 1, 1], mask: null, scale: 1, amp: 3, value: () => 0 },
];

function oracle(cs: Case, a: Float32Array, mask: Float32Array | null): number[] {
  const [n0, n1, n2, n3] = cs.ne;
  const out: number[] = [];
  for (let i3 = 0; i3 < n3; i3++)
    for (let i2 = 0; i2 < n2; i2++)
      for (let i1 = 0; i1 < n1; i1++) {
        const row = ((i3 * n2 + i2) * n1 + i1) * n0;
        const m = cs.mask;
        const mrow = m ? (((i3 % m[3]) * m[2] + (i2 % m[2])) * m[1] + i1) * n0 : 0;
        const x = Array.from(
          { length: n0 },
          (_, i) => Math.fround(a[row + i]! * cs.scale) + (mask ? mask[mrow + i]! : 0),
        );
        const top = Math.max(...x);
        const e = x.map((v) => Math.exp(v - top));
        const sum = e.reduce((s, v) => s + v, 0);
        out.push(...e.map((v) => v / sum));
      }
  return out;
}

describe("Context.softMaxExt", () => {
  for (const mode of ALL_KERNEL_MODES)
    for (const threads of [1, 2])
      it(`matches float64 (${mode}, ${threads} thread${threads > 1 ? "s" : ""})`, () => {
        useKernels(mode);
        const backend = new Backend(threads);
        for (const cs of cases) {
          const n = cs.ne.reduce((x, y) => x * y, 1);
          const ad = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * cs.amp);
          const m = cs.mask;
          let md: Float32Array | null = null;
          if (m) {
            md = new Float32Array(m.reduce((x, y) => x * y, 1));
            for (let i3 = 0; i3 < m[3]; i3++)
              for (let i2 = 0; i2 < m[2]; i2++)
                for (let i1 = 0; i1 < m[1]; i1++)
                  for (let i0 = 0; i0 < m[0]; i0++)
                    md[((i3 * m[2] + i2) * m[1] + i1) * m[0] + i0] = cs.value(i0, i1, i2, i3);
          }
          // in place: the result in a's own memory (attention's scores, the loss's logits)
          for (const inplace of [false, true]) {
            const s = new Context(4);
            const a = s.newTensor("f32", cs.ne, "a");
            const mask = m ? s.newTensor("f32", m, "mask") : null;
            const buf = backend.allocTensors(s);
            setData(a, ad);
            if (mask && md) setData(mask, md);
            const c = new Context(8, 8);
            const out = c.softMaxExt(a, mask, cs.scale, inplace);
            const alloc = computeOnce(backend, c, 8, out);
            expect(out.ne).toEqual(cs.ne);
            const got = getF32(out);
            const want = oracle(cs, ad, md);
            let worst = 0;
            let nans = 0;
            for (let i = 0; i < want.length; i++) {
              if (Number.isNaN(want[i])) {
                nans++;
                expect(got[i], `element ${i} of a row without a finite score`).toBeNaN();
              } else worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
            }
            expect(nans > 0).toBe(cs === cases[0]);
            // steerlm's kernels run with subnormals flushed to 0 (Intel's ~150-cycle assists; native/kernels.h)
            if (mode !== "ggml fallback")
              expect(got.filter((v) => v !== 0 && Math.abs(v) < FLT_MIN).length, "subnormal outputs").toBe(0);
            // probabilities ≤ 1: a few f32 roundings of the exponent and the sum
            expect(worst, JSON.stringify({ ne: cs.ne, inplace })).toBeLessThan(2e-6);
            alloc.free();
            c.free();
            buf.free();
            s.free();
          }
        }
        backend.free();
      });
});
