import { afterAll, describe, expect, it } from "vitest";
import { computeOnce } from "../../test/engine.js";
import { ALL_KERNEL_MODES, useKernels } from "../../test/kernel-modes.js";
import { f32ToBf16Bits } from "../gguf/quant.js";
import { Backend, getBytes, setData } from "./backend.js";
import { Context } from "./context.js";
import { kernelsPath, loadKernels } from "./native-kernels.js";
import type { Tensor } from "./tensor.js";

// Context.operand: f32 (any strides) → contiguous f32/bf16, optionally transposed, ne0 zero-padded. With
// steerlm's kernels (native/relayout.c) it is one custom op; without them, ggml's transpose/pad/cast. Both
// must give exactly the host result: a strided read, then round-to-nearest-even bf16 as ggml rounds.

interface Case {
  ne: [number, number, number, number];
  /** Permutation applied before the operand (a strided view), as ggml_permute axes. */
  permute?: [number, number, number, number];
  transpose: boolean;
  type: "f32" | "bf16";
  multiple: number;
}

const cases: Case[] = [];
for (const ne of [
  [37, 53, 1, 1],
  [16, 16, 1, 1],
  [64, 48, 1, 1],
  [33, 130, 2, 1],
  [32, 17, 3, 2],
] as const)
  for (const type of ["f32", "bf16"] as const)
    for (const transpose of [false, true])
      for (const multiple of [1, 32]) cases.push({ ne: [...ne], transpose, type, multiple });
// attention's head-major views: [HD, H, T, B] permuted to [HD, T, H, B]
for (const transpose of [false, true])
  cases.push({ ne: [32, 4, 40, 2], permute: [0, 2, 1, 3], transpose, type: "bf16", multiple: 32 });

/** Host oracle: reads view element (i0..i3) of `data` laid out as ne, through the permutation. */
function expected(cs: Case, data: Float32Array): { ne: number[]; values: number[] } {
  const [n0, n1, n2] = cs.ne;
  const st = [1, n0, n0 * n1, n0 * n1 * n2];
  // ggml_permute: source axis i becomes the view's axis axes[i]
  const vne = [0, 0, 0, 0];
  const vst = [0, 0, 0, 0];
  const axes = cs.permute ?? [0, 1, 2, 3];
  for (let i = 0; i < 4; i++) {
    vne[axes[i]!] = cs.ne[i]!;
    vst[axes[i]!] = st[i]!;
  }
  if (cs.transpose) {
    [vne[0], vne[1]] = [vne[1]!, vne[0]!];
    [vst[0], vst[1]] = [vst[1]!, vst[0]!];
  }
  const d0 = Math.ceil(vne[0]! / cs.multiple) * cs.multiple;
  const values: number[] = [];
  for (let i3 = 0; i3 < vne[3]!; i3++)
    for (let i2 = 0; i2 < vne[2]!; i2++)
      for (let i1 = 0; i1 < vne[1]!; i1++)
        for (let i0 = 0; i0 < d0; i0++) {
          const v =
            i0 < vne[0]! ? (data[i0 * vst[0]! + i1 * vst[1]! + i2 * vst[2]! + i3 * vst[3]!] as number) : 0;
          values.push(cs.type === "bf16" ? f32ToBf16Bits(v) : v);
        }
  return { ne: [d0, vne[1]!, vne[2]!, vne[3]!], values };
}

/** Values that round differently to bf16: both signs, a NaN, an infinity, -0 and an exact tie. */
function testData(n: number): Float32Array {
  const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 1000 + i / 7);
  data[3] = Number.NaN;
  data[5] = Number.POSITIVE_INFINITY;
  data[6] = -0;
  data[7] = 1 + 2 ** -8; // halfway between two bf16 values: rounds to even
  return data;
}

function run(backend: Backend, cs: Case, data: Float32Array): { ne: readonly number[]; values: number[] } {
  const s = new Context(4);
  const x = s.newTensor("f32", cs.ne, "x");
  const buf = backend.allocTensors(s);
  setData(x, data);
  const c = new Context(64, 64);
  const src: Tensor = cs.permute ? c.permute(x, cs.permute) : x;
  const t = c.operand(src, cs.type, cs.transpose, cs.multiple);
  const alloc = computeOnce(backend, c, 64, t);
  const bytes = getBytes(t);
  const values =
    cs.type === "bf16"
      ? Array.from(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2))
      : Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
  alloc.free();
  c.free();
  buf.free();
  s.free();
  return { ne: t.ne, values };
}

describe("steerlm's native kernels", () => {
  afterAll(() => useKernels("kernels"));

  it("are built and load (npm install builds them; STEERLM_KERNELS=0 turns them off)", () => {
    if (process.env.STEERLM_KERNELS === "0") return;
    expect(loadKernels(), `no kernels at ${kernelsPath()}: run \`npm run build:native\``).not.toBeNull();
  });

  for (const mode of ALL_KERNEL_MODES)
    for (const threads of [1, 2])
      it(`Context.operand equals the host oracle (${mode}, ${threads} thread${threads > 1 ? "s" : ""})`, () => {
        useKernels(mode);
        const backend = new Backend(threads);
        for (const cs of cases) {
          const data = testData(cs.ne.reduce((a, b) => a * b, 1));
          const exp = expected(cs, data);
          const got = run(backend, cs, data);
          const label = JSON.stringify(cs);
          expect(got.ne, label).toEqual(exp.ne);
          expect(got.values, label).toEqual(exp.values);
        }
        backend.free();
      });
});

describe("steerlm's kernels and subnormals", () => {
  // Intel cores take a ~150-cycle microcode assist for every instruction that makes or reads a subnormal (the
  // f32 GEMM ran ~150x slower on subnormal operands): the kernels run with FTZ and DAZ set, and give
  // the thread its own mode back, so that ggml's ops after them still round gradually.
  const tiny = Math.fround(1e-20);
  for (const mode of ["kernels", "AVX2 kernels"] as const)
    it(`read a subnormal as 0 and leave ggml's ops as they were (${mode})`, () => {
      useKernels(mode);
      const backend = new Backend(1);
      const [K, M, N] = [64, 40, 24];
      const s = new Context(4);
      const a = s.newTensor("f32", [K, M, 1, 1], "a");
      const b = s.newTensor("f32", [K, N, 1, 1], "b");
      const x = s.newTensor("f32", [M, N, 1, 1], "x");
      const buf = backend.allocTensors(s);
      setData(
        a,
        Float32Array.from({ length: K * M }, (_, i) => (i % 3 ? 2 ** -130 : 0)),
      );
      setData(
        b,
        Float32Array.from({ length: K * N }, (_, i) => 1 + (i % 5)),
      );
      setData(x, new Float32Array(M * N).fill(tiny));
      const c = new Context(8, 8);
      // the GEMM runs first (ggml visits src[0] first), then ggml's mul on the same thread
      const out = c.add(c.mulMat(a, b), c.mul(x, x));
      const alloc = computeOnce(backend, c, 8, out);
      const bytes = getBytes(out);
      const got = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      const want = Math.fround(tiny * tiny); // a subnormal: ggml's mul rounds gradually
      expect(want).toBeGreaterThan(0);
      expect(want).toBeLessThan(2 ** -126);
      expect(new Set(got)).toEqual(new Set([want]));
      alloc.free();
      c.free();
      buf.free();
      s.free();
      backend.free();
    });
});
