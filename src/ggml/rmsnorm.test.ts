import { afterAll, describe, expect, it } from "vitest";
import { computeOnce } from "../../test/engine.js";
import { ALL_KERNEL_MODES, CPU_HAS_AVX512, useKernels } from "../../test/kernel-modes.js";
import { Backend, getF32, setData } from "./backend.js";
import { Context } from "./context.js";

// Context.rmsNorm and Context.rmsNormBack: steerlm's kernels (native/rmsnorm.c; the AVX-512 path and the
// portable one) and ggml's rms_norm / rms_norm_back, each against float64 on one and two threads.
afterAll(() => useKernels("kernels"));

const EPS = 1e-5;
// rows of 37 (two vectors of 16 and a tail), of 256 (the two-accumulator loop); one row of zeros
const shapes: Array<[number, number, number, number]> = [
  [37, 5, 2, 1],
  [256, 9, 1, 1],
];

function data(n: number, seed: number, zeroRow: number): Float32Array {
  const d = Float32Array.from({ length: n }, (_, i) => Math.sin((i + seed) * 0.731) * (1 + (i % 7)));
  d.fill(0, zeroRow, zeroRow + 37);
  return d;
}

/**
 * A row's terms in float64: r = 1/√(Σx²/n + eps), c0 = -Σx·dy/(Σx² + n·eps) and the same over |x·dy| (the
 * bound of the terms where Σ x·dy cancels); dy times the gain g where there is one.
 */
function rowTerms(xd: Float32Array, dyd: Float32Array, g: Float32Array | null, row: number, n: number) {
  let sxx = 0;
  let sxdy = 0;
  let sabs = 0;
  for (let i = 0; i < n; i++) {
    const [xi, di] = [xd[row * n + i]!, dyd[row * n + i]! * (g ? g[i]! : 1)];
    sxx += xi * xi;
    sxdy += xi * di;
    sabs += Math.abs(xi * di);
  }
  return { r: 1 / Math.sqrt(sxx / n + EPS), c0: -sxdy / (sxx + n * EPS), cAbs: sabs / (sxx + n * EPS) };
}

describe("Context.rmsNorm and rmsNormBack", () => {
  for (const mode of ALL_KERNEL_MODES)
    for (const threads of [1, 2])
      it(`match float64 (${mode}, ${threads} thread${threads > 1 ? "s" : ""})`, () => {
        useKernels(mode);
        const backend = new Backend(threads);
        for (const ne of shapes) {
          const n = ne[0];
          const total = ne.reduce((x, y) => x * y, 1);
          const xd = data(total, 1, n * 2);
          const dyd = data(total, 5, n * 3);
          const s = new Context(4);
          const x = s.newTensor("f32", ne, "x");
          const dy = s.newTensor("f32", ne, "dy");
          const buf = backend.allocTensors(s);
          setData(x, xd);
          setData(dy, dyd);
          const c = new Context(8, 8);
          const y = c.rmsNorm(x, EPS);
          const dx = c.rmsNormBack(dy, x, EPS);
          c.setOutput(y); // kept: the add below could otherwise reuse y's memory
          c.setOutput(dx);
          const alloc = computeOnce(backend, c, 8, c.add(y, dx));
          const [gy, gdx] = [getF32(y), getF32(dx)];
          let worstY = 0;
          let worstDx = 0;
          for (let row = 0; row < total / n; row++) {
            const { r, c0, cAbs } = rowTerms(xd, dyd, null, row, n);
            for (let i = 0; i < n; i++) {
              const k = row * n + i;
              const [xi, di] = [xd[k]!, dyd[k]!];
              worstY = Math.max(worstY, Math.abs(gy[k]! - xi * r) / (Math.abs(xi) * r + 1e-30));
              // the bound of the terms: dy, and x times the sums' magnitude (Σ x·dy may cancel)
              const bound = (Math.abs(di) + Math.abs(xi) * cAbs) * r + 1e-30;
              worstDx = Math.max(worstDx, Math.abs(gdx[k]! - (di + xi * c0) * r) / bound);
            }
          }
          expect(worstY, `rms_norm ${ne}`).toBeLessThan(1e-6);
          expect(worstDx, `rms_norm_back ${ne}`).toBeLessThan(1e-5);
          alloc.free();
          c.free();
          buf.free();
          s.free();
        }
        backend.free();
      });
});

describe("Context.rmsNormGain and rmsNormGainBack", () => {
  // one node each way with steerlm's kernels (AVX-512), against float64: y = x·r⊙g, dx = (dy⊙g + x·c)·r,
  // dg = Σ_rows dy⊙x·r. Fewer rows than the gain gradient's runs (some runs empty), and more (uneven runs).
  const gainShapes: Array<[number, number, number, number]> = [
    [37, 5, 2, 1],
    [64, 50, 1, 1],
  ];
  for (const threads of [1, 2])
    it(`match float64 (kernels, ${threads} thread${threads > 1 ? "s" : ""})`, () => {
      useKernels("kernels");
      if (!CPU_HAS_AVX512) {
        console.warn(
          "this CPU has no AVX-512: the fused norm is not tested here (the model uses the separate ops)",
        );
        return;
      }
      const backend = new Backend(threads);
      for (const ne of gainShapes) {
        const n = ne[0];
        const total = ne.reduce((x, y) => x * y, 1);
        const rows = total / n;
        const xd = data(total, 1, n * 2);
        const dyd = data(total, 5, n * 3);
        const gd = Float32Array.from({ length: n }, (_, i) => 0.5 + Math.cos(i * 1.3));
        const s = new Context(4);
        const x = s.newTensor("f32", ne, "x");
        const dy = s.newTensor("f32", ne, "dy");
        const g = s.newTensor("f32", [n], "g");
        const buf = backend.allocTensors(s);
        setData(x, xd);
        setData(dy, dyd);
        setData(g, gd);
        const c = new Context(16, 16);
        expect(c.normGainFused(x, g), "AVX-512 is here but the fused norm is not").toBe(true);
        const y = c.rmsNormGain(x, g, EPS);
        const [dx, dg] = c.rmsNormGainBack(dy, x, g, EPS);
        const out = c.concat(c.concat(c.reshape(y, [total]), c.reshape(dx, [total]), 0), dg, 0);
        const alloc = computeOnce(backend, c, 16, out);
        const got = getF32(out);
        const wantDg = new Float64Array(n);
        let worst = { y: 0, dx: 0 };
        for (let row = 0; row < rows; row++) {
          const { r, c0, cAbs } = rowTerms(xd, dyd, gd, row, n);
          for (let i = 0; i < n; i++) {
            const k = row * n + i;
            const [xi, di] = [xd[k]!, dyd[k]! * gd[i]!];
            wantDg[i]! += dyd[k]! * xi * r;
            const yErr = Math.abs(got[k]! - xi * r * gd[i]!) / (Math.abs(xi * gd[i]!) * r + 1e-30);
            const bound = (Math.abs(di) + Math.abs(xi) * cAbs) * r + 1e-30;
            const dxErr = Math.abs(got[total + k]! - (di + xi * c0) * r) / bound;
            worst = { y: Math.max(worst.y, yErr), dx: Math.max(worst.dx, dxErr) };
          }
        }
        let dgErr = 0;
        let dgTop = 1e-30;
        for (let i = 0; i < n; i++) {
          dgErr = Math.max(dgErr, Math.abs(got[2 * total + i]! - wantDg[i]!));
          dgTop = Math.max(dgTop, Math.abs(wantDg[i]!));
        }
        expect(worst.y, `y ${ne}`).toBeLessThan(1e-6);
        expect(worst.dx, `dx ${ne}`).toBeLessThan(1e-5);
        expect(dgErr / dgTop, `dgain ${ne}`).toBeLessThan(1e-5);
        alloc.free();
        c.free();
        buf.free();
        s.free();
      }
      backend.free();
    });

  it("is the norm and a multiply without AVX-512 (no fused gradient)", () => {
    useKernels("AVX2 kernels");
    const c = new Context(8);
    const x = c.newTensor("f32", [16, 3]);
    const g = c.newTensor("f32", [16]);
    expect(c.normGainFused(x, g)).toBe(false);
    expect(() => c.rmsNormGainBack(x, x, g, EPS)).toThrow(/no fused kernel/);
    c.free();
  });
});
