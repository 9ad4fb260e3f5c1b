import { afterAll, describe, expect, it } from "vitest";
import { computeOnce } from "../../test/engine.js";
import { ALL_KERNEL_MODES, useKernels } from "../../test/kernel-modes.js";
import { Backend, Graph, getF32, setData } from "./backend.js";
import { Context } from "./context.js";
import type { Tensor } from "./tensor.js";

// steerlm's fused element-wise kernels (native/loss.c, adamw.c, swiglu.c) beside the ggml ops they replace:
// each mode against a host reference, on one and two threads.
afterAll(() => useKernels("kernels"));

describe("Context.crossEntropyBack", () => {
  // sm ⊙ w minus w at each column's target, in f32: one kernel pass, or ggml's mul, get_rows_back and sub.
  // Both must give the bits of the host's f32 arithmetic (a product, then at the target the one-hot's
  // 0 + w subtracted).
  for (const mode of ALL_KERNEL_MODES)
    for (const threads of [1, 2])
      it(`equals the host's f32 result bit for bit (${mode}, ${threads} thread${threads > 1 ? "s" : ""})`, () => {
        useKernels(mode);
        const backend = new Backend(threads);
        for (const [V, N] of [
          [37, 29],
          [300, 3],
        ] as const) {
          const smd = Float32Array.from({ length: V * N }, (_, i) => Math.abs(Math.sin(i * 4.1)) / 7);
          // a masked column (w = 0) and a negative zero among the weights
          const wd = Float32Array.from({ length: N }, (_, n) => (n === 1 ? 0 : n === 2 ? -0 : -1 / (n + 3)));
          const targets = Array.from({ length: N }, (_, n) => (n * 17 + 5) % V);
          const idx = Int32Array.from(targets, (t, n) => n * V + t);
          const s = new Context(4);
          const sm = s.newTensor("f32", [V, N], "sm");
          const w = s.newTensor("f32", [1, N], "w");
          const flat = s.newTensor("i32", [N], "idx");
          const buf = backend.allocTensors(s);
          setData(sm, smd);
          setData(w, wd);
          setData(flat, idx);
          const c = new Context(16, 16);
          const out = c.crossEntropyBack(sm, w, flat);
          const alloc = computeOnce(backend, c, 16, out);
          const want = new Float32Array(V * N);
          for (let n = 0; n < N; n++)
            for (let v = 0; v < V; v++) {
              const p = Math.fround(smd[n * V + v]! * wd[n]!);
              // the one-hot holds 0 + w: +0 where w is -0
              want[n * V + v] = v === targets[n] ? Math.fround(p - (0 + wd[n]!)) : p;
            }
          expect(out.ne).toEqual([V, N, 1, 1]);
          expect(getF32(out), JSON.stringify({ V, N })).toEqual(want);
          alloc.free();
          c.free();
          buf.free();
          s.free();
        }
        backend.free();
      });
});

describe("the optimiser's passes (Context.sumSquares, Context.adamwFromAccumulator)", () => {
  // Σ g² and AdamW with the gradient acc·scale, then acc cleared: one kernel pass each (native/adamw.c),
  // or ggml's sum of sqr, mul, opt_step_adamw and scale by 0. Both against a float64 host reference.
  const n = 1037; // not a multiple of 16: the vector loops' scalar tails, and uneven thread shares
  const hp = {
    lr: 1e-2,
    b1: 0.9,
    b2: 0.999,
    eps: 1e-8,
    wd: 0.1,
    bc1: 1 / (1 - 0.9 ** 3),
    bc2: 1 / (1 - 0.999 ** 3),
  };
  const wd0 = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37));
  const gd = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 1.91) * (1 + (i % 5)));
  const md = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 2.3) * 0.1);
  const vd = Float32Array.from({ length: n }, (_, i) => 0.01 + Math.abs(Math.cos(i * 0.7)) * 0.05);
  const scale = 0.25;
  for (const mode of ALL_KERNEL_MODES)
    for (const threads of [1, 2])
      it(`match float64 and clear the gradient (${mode}, ${threads} thread${threads > 1 ? "s" : ""})`, () => {
        useKernels(mode);
        const backend = new Backend(threads);
        const s = new Context(8);
        const [w, acc, m, v] = ["w", "acc", "m", "v"].map((name) =>
          s.newTensor("f32", [n], name),
        ) as Tensor[];
        s.setParam(w as Tensor); // ggml's opt_step_adamw takes parameters only
        const pars = s.newTensor("f32", [7], "pars");
        const sc = s.newTensor("f32", [1], "scale");
        const buf = backend.allocTensors(s);
        for (const [t, d] of [
          [w, wd0],
          [acc, gd],
          [m, md],
          [v, vd],
        ] as const)
          setData(t as Tensor, d);
        setData(pars, Float32Array.of(hp.lr, hp.b1, hp.b2, hp.eps, hp.wd, hp.bc1, hp.bc2));
        setData(sc, Float32Array.of(scale));
        const c = new Context(16, 16);
        const sq = c.sumSquares(acc as Tensor);
        c.setOutput(sq);
        const g = new Graph(c, 16);
        g.expand(sq);
        for (const node of c.adamwFromAccumulator(
          w as Tensor,
          acc as Tensor,
          sc,
          m as Tensor,
          v as Tensor,
          pars,
        ))
          g.expand(node);
        const alloc = backend.newAllocator();
        alloc.alloc(g);
        backend.compute(g);
        let ss = 0;
        for (const x of gd) ss += x * x;
        expect(getF32(sq)[0]).toBeCloseTo(ss, Math.max(0, 5 - Math.ceil(Math.log10(ss))));
        const [gw, gm, gv] = [getF32(w as Tensor), getF32(m as Tensor), getF32(v as Tensor)];
        // the hyperparameters as the f32 graph holds them (1 - β in f32 is not 1 - β); errors are bounded by
        // the terms' sizes, since m's two terms can cancel
        const f = Math.fround;
        const [b1, b2, c1, c2] = [f(hp.b1), f(hp.b2), f(1 - f(hp.b1)), f(1 - f(hp.b2))];
        const [lr, bc1, bc2, eps, keep] = [
          f(hp.lr),
          f(hp.bc1),
          f(hp.bc2),
          f(hp.eps),
          f(1 - f(hp.lr) * f(hp.wd)),
        ];
        for (let i = 0; i < n; i++) {
          const gi = gd[i]! * scale;
          const mi = md[i]! * b1 + gi * c1;
          const vi = vd[i]! * b2 + gi * gi * c2;
          const wi = wd0[i]! * keep - (lr * mi * bc1) / (Math.sqrt(vi * bc2) + eps);
          expect(Math.abs(gm[i]! - mi), `m[${i}]`).toBeLessThanOrEqual(
            3e-7 * (Math.abs(md[i]! * b1) + Math.abs(gi * c1)),
          );
          expect(Math.abs(gv[i]! - vi), `v[${i}]`).toBeLessThanOrEqual(3e-7 * Math.abs(vi) + 1e-12);
          expect(Math.abs(gw[i]! - wi), `w[${i}]`).toBeLessThanOrEqual(
            6e-7 * (Math.abs(wd0[i]! * keep) + Math.abs(wi - wd0[i]! * keep)),
          );
        }
        expect(getF32(acc as Tensor).every((x) => x === 0)).toBe(true);
        alloc.free();
        c.free();
        buf.free();
        s.free();
        backend.free();
      });
});

describe("Context.swigluBack", () => {
  // dg = da·u·σ(g)·(1 + g·(1 − σ(g))), du = da·g·σ(g): one kernel pass with its own vectorised e^x
  // (native/swiglu.c), or ggml's mul, silu_back, silu and mul. Both against float64 on the host,
  // including gates where e^−g overflows or underflows f32.
  const [F, N] = [37, 29]; // 1,073 values: the vector loop's scalar tail, uneven thread shares
  const gd = Float32Array.from({ length: F * N }, (_, i) => Math.sin(i * 0.73) * 12);
  gd.set([100, -100, 88.5, -88.5, 104, -104, 0, -0, 1e-30, 20.5, -20.5], 0);
  const dad = Float32Array.from({ length: F * N }, (_, i) => Math.cos(i * 1.3) * 2);
  const ud = Float32Array.from({ length: F * N }, (_, i) => Math.sin(i * 2.9 + 1) * 3);
  for (const mode of ALL_KERNEL_MODES)
    for (const threads of [1, 2])
      it(`matches float64 (${mode}, ${threads} thread${threads > 1 ? "s" : ""})`, () => {
        useKernels(mode);
        const backend = new Backend(threads);
        const s = new Context(4);
        const [da, g, u] = ["da", "g", "u"].map((name) => s.newTensor("f32", [F, N], name)) as Tensor[];
        const buf = backend.allocTensors(s);
        setData(da as Tensor, dad);
        setData(g as Tensor, gd);
        setData(u as Tensor, ud);
        const c = new Context(16, 16);
        const [dg, du] = c.swigluBack(da as Tensor, g as Tensor, u as Tensor);
        c.setOutput(dg);
        c.setOutput(du);
        const graph = new Graph(c, 16);
        graph.expand(dg);
        graph.expand(du);
        const alloc = backend.newAllocator();
        alloc.alloc(graph);
        backend.compute(graph);
        expect(dg.ne).toEqual([F, N, 1, 1]);
        expect(du.ne).toEqual([F, N, 1, 1]);
        const [gotG, gotU] = [getF32(dg), getF32(du)];
        for (let i = 0; i < F * N; i++) {
          const x = gd[i]!;
          const sg = 1 / (1 + Math.exp(-x));
          const wantG = dad[i]! * ud[i]! * sg * (1 + x * (1 - sg));
          const wantU = dad[i]! * x * sg;
          // a few f32 roundings of terms bounded by |da·u|·(1 + |g|) and |da·g|
          expect(Math.abs(gotG[i]! - wantG), `dg[${i}] at g = ${x}`).toBeLessThanOrEqual(
            1e-6 * Math.abs(dad[i]! * ud[i]!) * (1 + Math.abs(x)),
          );
          expect(Math.abs(gotU[i]! - wantU), `du[${i}] at g = ${x}`).toBeLessThanOrEqual(
            1e-6 * Math.abs(dad[i]! * x) + 1e-38,
          );
        }
        alloc.free();
        c.free();
        buf.free();
        s.free();
        backend.free();
      });
});
