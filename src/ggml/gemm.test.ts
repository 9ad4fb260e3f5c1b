import { existsSync, readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { computeOnce } from "../../test/engine.js";
import { useKernels } from "../../test/kernel-modes.js";
import { f32ToBf16 } from "../gguf/quant.js";
import { Backend, Graph, getBytes, setData } from "./backend.js";
import { Context } from "./context.js";
import { amxF32Products, gemmScratch, loadKernels } from "./native-kernels.js";

// steerlm's GEMMs (native/gemm*.c) as Context.mulMat runs them: every kind of operand against a float64 host
// product, the splits of f32 operands on AMX bit for bit, a gradient added into its accumulator, long
// reductions, which transposes are read in place, and the packing scratch.

const CPU_HAS_AMX = existsSync("/proc/cpuinfo") && /\bamx_bf16\b/.test(readFileSync("/proc/cpuinfo", "utf8"));

describe("Context.mulMat on steerlm's GEMMs", () => {
  // out[m, n] = Σ_k a[k, m]·b[k, n]. bf16 products are exact in f32 and f32 products round once (on AMX, the
  // six products of split parts leave out at most 2⁻²³ + 2⁻³² of each, and add six terms a k), so the
  // difference from a float64 host sum is about the f32 accumulation's: K·2⁻²⁴ of Σ|products| holds
  const shapes: Array<{
    a: [number, number, number, number];
    b: [number, number, number, number];
    only?: "bf16" | "f32";
  }> = [
    { a: [64, 37, 1, 1], b: [64, 29, 1, 1] },
    { a: [256, 130, 1, 1], b: [256, 13, 1, 1] },
    { a: [32, 40, 3, 2], b: [32, 25, 6, 2] }, // batched, b broadcasting over a's ne2
    { a: [1024, 33, 1, 1], b: [1024, 50, 1, 1] },
    { a: [8, 64, 1, 1], b: [8, 31, 1, 1] }, // a LoRA rank as the reduction
    { a: [64, 40, 1, 1], b: [64, 200, 1, 1] }, // one row chunk: the columns are split between threads
    { a: [32, 300, 1, 1], b: [32, 100, 1, 1] }, // three row chunks (the last partial), columns split too
    { a: [40, 37, 1, 1], b: [40, 29, 1, 1] }, // words per row not a multiple of 16 (f32 40, bf16 20): packed in blocks of 16, then a tail
    { a: [9632, 33, 1, 1], b: [9632, 5, 1, 1] }, // longer than a block of K (AVX-512 1,024 words, AVX2 384; bf16 4,816 pairs): the later blocks accumulate
    { a: [128, 32, 2, 1], b: [128, 40, 4, 1] }, // one panel of a (attention's head size): a transposed b's full blocks read in place
    { a: [5000, 32, 1, 1], b: [5000, 24, 1, 1] }, // ... and so in several blocks of K
    { a: [40, 320, 1, 1], b: [40, 29, 1, 1] }, // a transposed Q8_0 (M in blocks of 32): three row chunks
    { a: [4500, 64, 1, 1], b: [4500, 7, 1, 1] }, // ... and K in several blocks (five on AVX-512, twelve on AVX2)
    // a bf16 a times an f32 b split on AMX, 200 columns: K in blocks of 432 pairs (split_kc), the second adding on
    { a: [1024, 40, 1, 1], b: [1024, 200, 1, 1] },
    // AMX: full 32 x 32 tiles and a partial one, the second block of K adding onto the output (bf16 only)
    { a: [4096, 64, 1, 1], b: [4096, 40, 1, 1], only: "bf16" },
    // f32 on AMX, also with a transposed b (from 128 rows of a and 128 columns of b): K padded from 100 to 128, a's
    // last chunk of rows a partial panel, b's last block of columns partial; then batched, b broadcasting
    { a: [100, 260, 1, 1], b: [100, 130, 1, 1], only: "f32" },
    { a: [64, 128, 2, 1], b: [64, 128, 4, 1], only: "f32" },
    // ... and a's rows in two chunks of the split (1,024 and 76), K's 100 pairs (padded to 112) in blocks of 64
    // and 48 where a job has more than 256 rows, but in blocks of 32, 32, 32, 16 for the second chunk's job on two
    // threads
    { a: [200, 1100, 1, 1], b: [200, 260, 1, 1], only: "f32" },
  ];
  /** f16 bits → value (normal numbers only: the inputs below are built that way). */
  const f16Value = (h: number) =>
    (h & 0x8000 ? -1 : 1) * 2 ** (((h >> 10) & 31) - 15) * (1 + (h & 1023) / 1024);
  const f16Bits = (i: number, seed: number) =>
    (((i * 7 + seed) % 2) << 15) | ((12 + ((i * 13 + seed) % 6)) << 10) | ((i * 389 + seed * 31) % 1024);
  /** Inputs as stored (f32, bf16 bits, f16 bits or Q8_0 blocks) and the float64 values the oracle multiplies. */
  const input = (type: "f32" | "bf16" | "f16" | "q8_0", n: number, seed: number) => {
    const f = Float32Array.from({ length: n }, (_, i) => Math.sin((i + seed) * 78.233) * 2);
    if (type === "f32")
      return { stored: f as Float32Array | Uint16Array | Uint8Array, values: Array.from(f) };
    if (type === "bf16") {
      const stored = f32ToBf16(f);
      return {
        stored,
        values: Array.from(new Float32Array(Uint32Array.from(stored, (b) => b << 16).buffer)),
      };
    }
    if (type === "f16") {
      const stored = Uint16Array.from({ length: n }, (_, i) => f16Bits(i, seed));
      return { stored, values: Array.from(stored, f16Value) };
    }
    // Q8_0: per 32 values an f16 scale, then 32 int8
    const stored = new Uint8Array((n / 32) * 34);
    const dv = new DataView(stored.buffer);
    const values: number[] = [];
    for (let blk = 0; blk < n / 32; blk++) {
      const h = f16Bits(blk, seed) & 0x7fff;
      dv.setUint16(blk * 34, h, true);
      for (let j = 0; j < 32; j++) {
        const q = (((blk * 32 + j) * 37 + seed) % 255) - 127;
        dv.setInt8(blk * 34 + 2 + j, q);
        values.push(f16Value(h) * q);
      }
    }
    return { stored, values };
  };

  // type of a; b is bf16 with a bf16 a, else f32 (f16 and Q8_0 are frozen bases widened in the kernel)
  // "bf16×f32": a bf16 frozen base times f32 activations
  // "AVX2 kernels": native/gemm_avx2.c (bf16 x bf16 then falls back to ggml); "portable kernels" are ggml's.
  // On AMX, "kernels" runs bf16 x bf16 on the tiles, and bf16 x f32 there too as three exact bf16 products
  // (where K is a multiple of 32 and b's rows K-contiguous), and f32 x f32 as six products of both operands'
  // parts (from 128 rows of a and 128 columns of b); "AVX-512 kernels" runs them without AMX
  for (const kind of ["bf16", "f32", "f16", "q8_0", "bf16×f32"] as const)
    for (const mode of [
      "kernels",
      ...(kind === "bf16" || kind === "bf16×f32" || kind === "f32" ? (["AVX-512 kernels"] as const) : []),
      "AVX2 kernels",
      "ggml fallback",
    ] as const)
      for (const threads of [1, 2])
        it(`${kind}: matches a float64 host product (${mode}, ${threads} thread${threads > 1 ? "s" : ""})`, () => {
          useKernels(mode);
          // "kernels" runs the bf16 products on AMX tiles where the CPU has them and Linux (5.16 on) lends
          // them; the capped modes never do
          const onTiles = kind === "bf16" || kind === "bf16×f32" || kind === "f32";
          const amx = onTiles && mode !== "ggml fallback" && loadKernels()?.amx();
          if (mode !== "kernels") expect(amx).toBe(false);
          else if (onTiles && CPU_HAS_AMX && !amx)
            console.warn("this CPU has AMX but Linux lends no tiles: the AMX GEMM is not tested here");
          const backend = new Backend(threads);
          // "transposed": a is `transpose(w)` of a w stored [M, K] (the backward's Wᵀ), which the kernels
          // pack from w's rows (Q8_0: from blocks of M) and the fallback materialises (ggml cannot copy a
          // transposed Q8_0, which then gets a transposed copy of its own: frozen-transposes.ts). "bᵀ": b is
          // the transposed view of an f32 [N, K] (the backward's dyᵀ, attention's Pᵀ), which the f32-b
          // kernels read in place and the fallback materialises
          const layouts = kind === "q8_0" && mode === "ggml fallback" ? ["rows"] : ["rows", "transposed"];
          for (const { a: ane, b: bne, only } of shapes)
            for (const layout of kind === "bf16"
              ? layouts
              : [...layouts, ...layouts.map((l) => `${l}, bᵀ`)]) {
              const type = kind === "bf16×f32" ? "bf16" : kind;
              const t = layout.startsWith("transposed");
              // Q8_0 stores w's rows in blocks of 32, and a transposed view needs rows of two blocks or more
              const q8Rows = t ? ane[1] % 32 || ane[1] === 32 : ane[0] % 32;
              if ((kind === "bf16" && ane[0] % 2) || (kind === "q8_0" && q8Rows) || (only && kind !== only))
                continue;
              const btype = kind === "bf16" ? "bf16" : "f32";
              const bt = layout.endsWith("bᵀ");
              const s = new Context(4);
              const a = s.newTensor(type, t ? [ane[1], ane[0], ane[2], ane[3]] : ane, "a");
              const b = s.newTensor(btype, bt ? [bne[1], bne[0], bne[2], bne[3]] : bne, "b");
              const buf = backend.allocTensors(s);
              const ad = input(
                type,
                ane.reduce((x, y) => x * y, 1),
                1,
              );
              const bd = input(
                btype,
                bne.reduce((x, y) => x * y, 1),
                7,
              );
              setData(a, ad.stored);
              setData(b, bd.stored);
              const c = new Context(32, 32);
              const out = c.mulMat(t ? c.transpose(a) : a, bt ? c.transpose(b) : b);
              const alloc = computeOnce(backend, c, 32, out);
              const [K, M, A2] = ane;
              const [, N, B2, B3] = bne;
              expect(out.ne).toEqual([M, N, B2, B3]);
              const bytes = getBytes(out);
              const got = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
              let worst = 0;
              for (let i3 = 0; i3 < B3; i3++)
                for (let i2 = 0; i2 < B2; i2++)
                  for (let n = 0; n < N; n++)
                    for (let m = 0; m < M; m++) {
                      const batch = (i3 * A2 + Math.floor(i2 / (B2 / A2))) * M * K;
                      const bo = (i3 * B2 + i2) * N * K;
                      let sum = 0;
                      let mag = 0;
                      for (let k = 0; k < K; k++) {
                        const p =
                          ad.values[batch + (t ? k * M + m : m * K + k)]! *
                          bd.values[bo + (bt ? k * N + n : n * K + k)]!;
                        sum += p;
                        mag += Math.abs(p);
                      }
                      const o = got[((i3 * B2 + i2) * N + n) * M + m]!;
                      worst = Math.max(worst, Math.abs(o - sum) / (mag + 1e-30));
                    }
              // steerlm's kernels widen f16/bf16/Q8_0 exactly; ggml's own paths round the f32 operand to f16
              // (2⁻¹¹), bf16 (2⁻⁹) or Q8_0 blocks (~1/254 of a block's largest value)
              const exact = mode !== "ggml fallback" || kind === "f32" || kind === "bf16";
              const tol = exact
                ? (K + 1) * 2 ** -24
                : { f16: 2 ** -10, "bf16×f32": 2 ** -8, q8_0: 1e-2 }[kind];
              expect(worst, JSON.stringify({ ane, bne, layout })).toBeLessThan(tol);
              alloc.free();
              c.free();
              buf.free();
              s.free();
            }
          backend.free();
        });
});

describe("Context.readsTransposed", () => {
  it("reads a Q8_0 weight's transpose in place against f32 where its rows hold two blocks or more", () => {
    useKernels("kernels");
    const s = new Context(4);
    // a row of one block: the transposed view has the strides of rows (34 bytes both), so Wᵀ is copied
    const one = s.newTensor("q8_0", [32, 64], "one");
    const two = s.newTensor("q8_0", [64, 32], "two");
    expect(Context.readsTransposed(one, "f32")).toBe(false);
    expect(Context.readsTransposed(two, "f32")).toBe(true);
    expect(Context.readsTransposed(two, "bf16")).toBe(false);
    expect(Context.readsTransposed(two, "f32", true)).toBe(false); // plain ggml ops
    useKernels("ggml fallback");
    expect(Context.readsTransposed(two, "f32")).toBe(false);
    useKernels("kernels");
    s.free();
  });

  it("refuses the transposes nothing can read, instead of computing with misread blocks", () => {
    useKernels("kernels");
    const s = new Context(16);
    const one = s.newTensor("q8_0", [32, 64], "one");
    const two = s.newTensor("q8_0", [64, 32], "two");
    expect(() => s.transpose(one)).toThrow("ggml transpose: q8_0 [32,64] has rows of one block");
    // ggml's own fallbacks would copy whole blocks: a bf16 b (no such kernel), or no kernels at all
    const twoT = s.transpose(two);
    const byBf16 = s.newTensor("bf16", [32, 8], "b16");
    expect(() => s.mulMat(twoT, byBf16)).toThrow("ggml mul_mat: a transposed q8_0 [32,64] is read only");
    const byF32 = s.newTensor("f32", [32, 8], "b32");
    expect(s.mulMat(twoT, byF32).ne).toEqual([64, 8, 1, 1]);
    useKernels("ggml fallback");
    expect(() => s.mulMat(twoT, byF32)).toThrow("ggml mul_mat: a transposed q8_0 [32,64] is read only");
    useKernels("kernels");
    s.free();
  });
});

describe("steerlm's GEMMs split on AMX", () => {
  // On AMX an f32 operand is split into three bf16 parts (hi, mid, lo) whose sum is exactly it: b against a bf16
  // a (three products, each exact in f32), and both a and b of an f32 product (six of the nine products). Where
  // the other operand holds one power of two a column, each output is one element of the split operand scaled:
  // exact whatever the path, and wrong in its low bits if any part were lost, or inf where ±FLT_MAX's parts
  // were summed largest first (the float64 oracle above allows K·2⁻²⁴ of Σ|products|, which a dropped lo part
  // still meets). K = 4,160: several AMX blocks of K, the last row of a picking from the short last one; K = 100:
  // f32 × f32 pads K to 128 with zeros, and K = 1,100 to 1,120 in blocks of 128 (the last 76 of 96); N = 300 on 2
  // threads: b's columns in two parts. An f32 a runs split from 128 rows of a and
  // 128 columns of b. "12-bit": both operands' values have 12 significant bits (so hi and mid, no lo), the one-hot
  // operand's not powers of two: each output is one product of 24 bits, exact in f32, and wrong if any of the
  // products of hi and mid parts (hi·hi, hi·mid, mid·hi, mid·mid) were lost.
  afterAll(() => useKernels("kernels"));
  /** x rounded to 12 significant bits */
  const bits12 = (x: number) => {
    const unit = 2 ** (Math.floor(Math.log2(Math.abs(x))) - 11);
    return x === 0 ? 0 : Math.round(x / unit) * unit;
  };
  /** full 24-bit significands over a wide range of exponents, and ±FLT_MAX (which rounded to bf16 is inf) */
  const dense = (n: number) =>
    Float32Array.from({ length: n }, (_, i) =>
      i % 97 === 5 ? (-1) ** i * 3.4028234663852886e38 : Math.sin(i * 1.618) * 2 ** ((i % 41) - 20),
    );
  const cases = [
    {
      kind: "bf16 a",
      shapes: [
        [64, 37, 29],
        [4160, 40, 300],
      ],
      bt: [false],
    },
    {
      kind: "f32 a",
      shapes: [
        [100, 260, 130],
        [1100, 520, 300],
      ],
      bt: [false, true],
    },
    {
      kind: "f32 b",
      shapes: [
        [100, 260, 130],
        [1100, 520, 300],
      ],
      bt: [false, true],
    },
    { kind: "f32 a, 12-bit", shapes: [[100, 260, 130]], bt: [false, true] },
  ] as const;
  for (const { kind, shapes, bt: bLayouts } of cases)
    for (const mode of ["kernels", "AVX-512 kernels"] as const)
      it(`carries every bit of the split operand into the product (${kind} one-hot, ${mode})`, () => {
        useKernels(mode);
        const amx = loadKernels()?.amx() ?? false;
        if (mode === "kernels" && CPU_HAS_AMX && !amx)
          console.warn("this CPU has AMX but Linux lends no tiles: the split products are not tested here");
        const backend = new Backend(2);
        for (const [K, M, N] of shapes)
          for (const transposed of [false, true])
            for (const bt of bLayouts) {
              // the one-hot operand's column j holds scale(j) at k = pick(j): a's columns are its M rows of W
              const oneHotA = kind !== "f32 b";
              const [hot, wide] = oneHotA ? [M, N] : [N, M];
              const pick = (j: number) => (j === hot - 1 ? K - 1 : (j * 97 + 13) % K);
              const twelve = kind === "f32 a, 12-bit";
              const scale = (j: number) => (twelve ? bits12(1 + ((j * 0.377) % 1)) : 1) * 2 ** -(j % 5);
              const hotValues = new Float32Array(K * hot); // [k, j] K-contiguous
              for (let j = 0; j < hot; j++) hotValues[j * K + pick(j)] = scale(j);
              const dv = dense(K * wide); // [k, j] K-contiguous
              if (twelve)
                for (let i = 0; i < dv.length; i++) dv[i] = i % 97 === 5 ? 2 ** 100 : bits12(dv[i]!);
              const [av, bv] = oneHotA ? [hotValues, dv] : [dv, hotValues];
              const s = new Context(4);
              const type = kind === "bf16 a" ? "bf16" : "f32";
              // stored [M, K] (rows of W) where a is read transposed, [N, K]'s transpose where b is
              const a = s.newTensor(type, transposed ? [M, K] : [K, M], "a");
              const b = s.newTensor("f32", bt ? [N, K] : [K, N], "b");
              const buf = backend.allocTensors(s);
              const lay = (v: Float32Array, rows: number, t: boolean) => {
                if (!t) return v;
                const out = new Float32Array(v.length);
                for (let j = 0; j < rows; j++) for (let k = 0; k < K; k++) out[k * rows + j] = v[j * K + k]!;
                return out;
              };
              const aStored = lay(av, M, transposed);
              setData(a, type === "bf16" ? f32ToBf16(aStored) : aStored);
              setData(b, lay(bv, N, bt));
              const c = new Context(8, 8);
              const out = c.mulMat(transposed ? c.transpose(a) : a, bt ? c.transpose(b) : b);
              const before = amxF32Products();
              const alloc = computeOnce(backend, c, 8, out);
              const split = amx && (type === "bf16" || (M >= 128 && N >= 128));
              expect(amxF32Products() - before, "products run split on AMX").toBe(split ? 1 : 0);
              const bytes = getBytes(out);
              const got = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
              const want = Float32Array.from({ length: M * N }, (_, i) => {
                const [n, m] = [Math.floor(i / M), i % M];
                return oneHotA ? bv[n * K + pick(m)]! * scale(m) : av[m * K + pick(n)]! * scale(n);
              });
              expect(got, `K ${K}, transposed ${transposed}, bᵀ ${bt}`).toEqual(want);
              alloc.free();
              c.free();
              buf.free();
              s.free();
            }
        backend.free();
      });
  // a weight's gradient dW = xᵀ·dy added straight into its accumulator (Context.accumulate → gemm_f32_into), both
  // operands transposed views as the backward pass makes them: on AMX split, else the FMAs
  for (const mode of ["kernels", "AVX-512 kernels"] as const)
    it(`adds an f32 product into a gradient accumulator in place (${mode})`, () => {
      useKernels(mode);
      const amx = loadKernels()?.amx() ?? false;
      const [K, M, N] = [300, 260, 130];
      const xv = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37)); // x [M, K]: M contiguous
      const dyv = Float32Array.from({ length: N * K }, (_, i) => Math.cos(i * 0.11)); // dy [N, K]
      const a0 = Float32Array.from({ length: M * N }, (_, i) => Math.sin(i * 1.7) * 3);
      const backend = new Backend(2);
      const s = new Context(4);
      const x = s.newTensor("f32", [M, K], "x");
      const dy = s.newTensor("f32", [N, K], "dy");
      const acc = s.newTensor("f32", [M, N], "acc");
      const buf = backend.allocTensors(s);
      setData(x, xv);
      setData(dy, dyv);
      setData(acc, a0);
      const c = new Context(8, 8);
      const out = c.accumulate(acc, c.mulMat(c.transpose(x), c.transpose(dy)));
      const before = amxF32Products();
      const alloc = computeOnce(backend, c, 8, out);
      expect(amxF32Products() - before, "products run split on AMX").toBe(amx ? 1 : 0);
      const bytes = getBytes(acc);
      const got = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      let worst = 0;
      for (let n = 0; n < N; n++)
        for (let m = 0; m < M; m++) {
          let sum = a0[n * M + m]!;
          let mag = Math.abs(sum);
          for (let k = 0; k < K; k++) {
            const p = xv[k * M + m]! * dyv[k * N + n]!;
            sum += p;
            mag += Math.abs(p);
          }
          worst = Math.max(worst, Math.abs(got[n * M + m]! - sum) / mag);
        }
      expect(worst).toBeLessThan((K + 2) * 2 ** -24);
      alloc.free();
      c.free();
      buf.free();
      s.free();
      backend.free();
    });
});

describe("steerlm's GEMM on a very long reduction", () => {
  // K = 140,000 f32 (a large vocabulary's d h = Eᵀ·d z): the reduction runs in blocks of 1,024 words (AVX2 384), each
  // later block accumulating onto the output, so that packed scratch stays a few MB; a as stored and as the
  // transposed view of a [M, K] matrix
  it("still equals the float64 host product (1 and 2 threads, a as rows and transposed)", () => {
    useKernels("kernels");
    const [K, M, N] = [140_000, 33, 120];
    const ad = Float32Array.from({ length: K * M }, (_, i) => Math.sin(i * 0.37));
    const bd = Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.11));
    const want = new Float64Array(M * N);
    const mag = new Float64Array(M * N);
    for (let n = 0; n < N; n++)
      for (let m = 0; m < M; m++) {
        let sum = 0;
        let abs = 0;
        for (let k = 0; k < K; k++) {
          const p = ad[m * K + k]! * bd[n * K + k]!;
          sum += p;
          abs += Math.abs(p);
        }
        want[n * M + m] = sum;
        mag[n * M + m] = abs;
      }
    const adT = new Float32Array(K * M);
    for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) adT[k * M + m] = ad[m * K + k]!;
    for (const [threads, transposed] of [
      [1, false],
      [2, false],
      [1, true],
      [2, true],
    ] as const) {
      const backend = new Backend(threads);
      const s = new Context(4);
      const a = s.newTensor("f32", transposed ? [M, K] : [K, M], "a");
      const b = s.newTensor("f32", [K, N], "b");
      const buf = backend.allocTensors(s);
      setData(a, transposed ? adT : ad);
      setData(b, bd);
      const c = new Context(8, 8);
      const out = c.mulMat(transposed ? c.transpose(a) : a, b);
      const alloc = computeOnce(backend, c, 8, out);
      const bytes = getBytes(out);
      const got = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      let worst = 0;
      for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / mag[i]!);
      expect(worst, `${threads} threads, transposed ${transposed}`).toBeLessThan((K + 1) * 2 ** -24);
      alloc.free();
      c.free();
      buf.free();
      s.free();
      backend.free();
    }
  });
});

describe("steerlm's GEMM scratch", () => {
  // a graph runs on whichever libuv thread koffi's async call takes: buffers kept per thread grew by one
  // per thread (four after four training steps, 73 MB each for smol135); the pool holds what runs at once
  it("is one product's worth after many computes on the thread pool, and is freed by release", async () => {
    useKernels("kernels");
    gemmScratch.release();
    expect(gemmScratch.bytes()).toBe(0);
    const backend = new Backend(1);
    const s = new Context(4);
    const a = s.newTensor("f32", [2048, 256], "a");
    const b = s.newTensor("f32", [2048, 64], "b");
    const buf = backend.allocTensors(s);
    setData(
      a,
      Float32Array.from({ length: 2048 * 256 }, (_, i) => Math.sin(i)),
    );
    setData(
      b,
      Float32Array.from({ length: 2048 * 64 }, (_, i) => Math.cos(i)),
    );
    const c = new Context(8, 8);
    const out = c.mulMat(a, b);
    c.setOutput(out);
    const g = new Graph(c, 8);
    g.expand(out);
    const alloc = backend.newAllocator();
    alloc.alloc(g);
    await backend.computeAsync(g);
    const one = gemmScratch.bytes();
    expect(one).toBeGreaterThan(0);
    for (let i = 0; i < 12; i++) await backend.computeAsync(g);
    expect(gemmScratch.bytes()).toBe(one);
    gemmScratch.release();
    expect(gemmScratch.bytes()).toBe(0);
    alloc.free();
    c.free();
    buf.free();
    s.free();
    backend.free();
  });
});
