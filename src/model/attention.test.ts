import { afterAll, describe, expect, it } from "vitest";
import { computeOnce } from "../../test/engine.js";
import { CPU_HAS_AVX512, useKernels } from "../../test/kernel-modes.js";
import { Backend, getF32, setData } from "../ggml/backend.js";
import { Context } from "../ggml/context.js";
import type { RopeMode } from "../ggml/forward-context.js";
import { loadKernels } from "../ggml/native-kernels.js";
import type { Tensor } from "../ggml/tensor.js";
import { Rng } from "../util/rng.js";
import { attentionValues } from "./attention.js";

// steerlm's attention kernels (native/attention.c): causal attention with RoPE and its three gradients in one
// node each, against a float64 host reference of softmax(RoPE(q)·RoPE(k)ᵀ·scale + mask)·v. The graph of
// products and softmax that the model builds where they do not apply is checked against ggml's autograd and
// finite differences (src/train/gradcheck.test.ts) and against llama.cpp's logits (check.test.ts).
afterAll(() => useKernels("kernels"));

interface Case {
  HD: number;
  H: number;
  KV: number;
  T: number;
  B: number;
  /** Real tokens of each sequence [B·T]: the rest is padding (on either side). */
  real: (s: number, t: number) => boolean;
  mode: RopeMode;
  /** Changes to attentionValues' mask: rows the kernels cannot take as one span of keys. */
  edit?: (mask: Float32Array, T: number) => void;
}

const BASE = 10000;

const cases: Case[] = [
  // two blocks of 32 queries, the second with 5 rows (a tail of one row group), keys padded from 37 to 48;
  // GQA 2:1; the second sequence left-padded by 3 and right-padded by 2
  { HD: 32, H: 4, KV: 2, T: 37, B: 2, real: (s, t) => s === 0 || (t >= 3 && t < 35), mode: "normal" },
  // one head group per kv head, fewer keys than a vector, head dim 16 and 64; RoPE's two pairings
  { HD: 16, H: 3, KV: 3, T: 5, B: 1, real: () => true, mode: "neox" },
  { HD: 64, H: 2, KV: 1, T: 40, B: 1, real: (_s, t) => t < 38, mode: "neox" },
  { HD: 32, H: 2, KV: 2, T: 20, B: 1, real: () => true, mode: "normal" },
  // three blocks of queries (32, 32, 6), keys in three panels of 32 on AMX; GQA 3:1; a padded sequence
  { HD: 64, H: 3, KV: 1, T: 70, B: 2, real: (s, t) => s === 0 || (t >= 4 && t < 66), mode: "neox" },
  // wider heads on the tiles: fewer tokens than a panel of keys, and a sequence of exactly two panels
  { HD: 128, H: 2, KV: 1, T: 17, B: 2, real: (s, t) => s === 0 || t >= 2, mode: "neox" },
  { HD: 96, H: 2, KV: 2, T: 64, B: 1, real: () => true, mode: "normal" },
  // SmolLM's 9 heads on 3 kv heads: on two threads a thread's range of query heads (5:4) ends inside a kv head's
  { HD: 64, H: 9, KV: 3, T: 33, B: 1, real: () => true, mode: "normal" },
  // ... and (5:4 of 9 units) inside a sequence's: a range that goes on into the next sequence, padded
  { HD: 64, H: 3, KV: 1, T: 21, B: 3, real: (s, t) => s !== 1 || t >= 5, mode: "neox" },
  // rows that are no span of zeros: a hole in the causal run, a finite bias, a hole at the row's start
  {
    HD: 64,
    H: 2,
    KV: 2,
    T: 45,
    B: 1,
    real: () => true,
    mode: "normal",
    edit: (mask, T) => {
      for (let q = 3; q < T; q += 5) mask[q * T + q - 2] = Number.NEGATIVE_INFINITY;
      for (let q = 4; q < T; q += 7) mask[q * T + 1] = -0.75;
      mask[40 * T] = Number.NEGATIVE_INFINITY;
    },
  },
];

/**
 * RoPE's rotation of each row of HD dims (`inverse`: by -θ) at its token's position, in float64 from the angles
 * native/rope.c makes in f32 (θ = pos, then θ·base^(-2/HD) pair after pair).
 */
function rope(
  x: ArrayLike<number>,
  heads: number,
  cs: Case,
  positions: Int32Array,
  inverse: boolean,
): Float64Array {
  const { HD, mode } = cs;
  const out = Float64Array.from(x);
  const step = Math.fround(BASE ** (-2 / HD));
  for (let n = 0; n < positions.length; n++) {
    let theta = Math.fround(positions[n]!);
    for (let i = 0; i < HD / 2; i++) {
      const [c, sn] = [Math.cos(theta), (inverse ? -1 : 1) * Math.sin(theta)];
      const [j0, j1] = mode === "neox" ? [i, i + HD / 2] : [2 * i, 2 * i + 1];
      for (let h = 0; h < heads; h++) {
        const at = (n * heads + h) * HD;
        const [x0, x1] = [x[at + j0]!, x[at + j1]!];
        out[at + j0] = x0 * c - x1 * sn;
        out[at + j1] = x0 * sn + x1 * c;
      }
      theta = Math.fround(theta * step);
    }
  }
  return out;
}

/** o, dq, dk, dv in float64, from the same f32 inputs and mask; dO the upstream gradient. */
function oracle(
  cs: Case,
  raw: { q: Float32Array; k: Float32Array },
  v: Float32Array,
  mask: Float32Array,
  dO: Float32Array,
  positions: Int32Array,
) {
  const { HD, H, KV, T, B } = cs;
  const q = rope(raw.q, H, cs, positions, false);
  const k = rope(raw.k, KV, cs, positions, false);
  const N = T * B;
  const r = H / KV;
  const scale = 1 / Math.sqrt(HD);
  const o = new Float64Array(HD * H * N);
  const dq = new Float64Array(HD * H * N);
  const dk = new Float64Array(HD * KV * N);
  const dv = new Float64Array(HD * KV * N);
  const qi = (n: number, h: number, d: number) => (n * H + h) * HD + d;
  const ki = (n: number, g: number, d: number) => (n * KV + g) * HD + d;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / r);
      for (let i = 0; i < T; i++) {
        const n = b * T + i;
        const s = new Float64Array(T).fill(Number.NEGATIVE_INFINITY);
        for (let j = 0; j < T; j++) {
          const m = mask[(b * T + i) * T + j] as number;
          if (m === Number.NEGATIVE_INFINITY) continue;
          let dot = 0;
          for (let d = 0; d < HD; d++) dot += q[qi(n, h, d)]! * k[ki(b * T + j, g, d)]!;
          s[j] = dot * scale + m;
        }
        const top = Math.max(...s);
        const p = Array.from(s, (x) => Math.exp(x - top));
        const sum = p.reduce((a, x) => a + x, 0);
        for (let j = 0; j < T; j++) p[j]! /= sum;
        const dp = new Float64Array(T);
        let dsum = 0;
        for (let j = 0; j < T; j++) {
          for (let d = 0; d < HD; d++) {
            o[qi(n, h, d)]! += p[j]! * v[ki(b * T + j, g, d)]!;
            dp[j]! += dO[qi(n, h, d)]! * v[ki(b * T + j, g, d)]!;
            dv[ki(b * T + j, g, d)]! += p[j]! * dO[qi(n, h, d)]!;
          }
          dsum += p[j]! * dp[j]!;
        }
        for (let j = 0; j < T; j++) {
          const ds = p[j]! * (dp[j]! - dsum) * scale;
          for (let d = 0; d < HD; d++) {
            dq[qi(n, h, d)]! += ds * k[ki(b * T + j, g, d)]!;
            dk[ki(b * T + j, g, d)]! += ds * q[qi(n, h, d)]!;
          }
        }
      }
    }
  // the gradients of the inputs before RoPE: the inverse rotation
  return { o, dq: rope(dq, H, cs, positions, true), dk: rope(dk, KV, cs, positions, true), dv };
}

/** max |got − want| ÷ max |want| */
function relError(got: Float32Array, want: Float64Array): number {
  let err = 0;
  let top = 1e-30;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i]! - want[i]!));
    top = Math.max(top, Math.abs(want[i]!));
  }
  return err / top;
}

describe("Context.fusedAttention and Context.attentionBack", () => {
  /** o, lse, dq, dk and dv from the kernels, in the order they come out, as one array. */
  function kernelOutputs(cs: Case, threads: number, seed: number) {
    const { HD, H, KV, T, B } = cs;
    const N = T * B;
    const rng = new Rng(seed);
    const real = Uint8Array.from({ length: N }, (_, i) => (cs.real(Math.floor(i / T), i % T) ? 1 : 0));
    const { kqMask, positions } = attentionValues(real, B, T);
    cs.edit?.(kqMask, T);
    // scores up to ~±8 after the scale: some probabilities near 1, many near 0
    const rand = (n: number, amp: number) =>
      Float32Array.from({ length: n }, () => (rng.float() * 2 - 1) * amp);
    const data = {
      q: rand(HD * H * N, 1.5),
      k: rand(HD * KV * N, 1.5),
      v: rand(HD * KV * N, 1),
      dO: rand(HD * H * N, 1),
    };
    const backend = new Backend(threads);
    const s = new Context(8);
    const q = s.newTensor("f32", [HD, H, N], "q");
    const k = s.newTensor("f32", [HD, KV, N], "k");
    const v = s.newTensor("f32", [HD, KV, N], "v");
    const mask = s.newTensor("f32", [T, T, 1, B], "mask");
    const dO = s.newTensor("f32", [HD * H, N], "dO");
    const pos = s.newTensor("i32", [N], "positions");
    const buf = backend.allocTensors(s);
    for (const [t, d] of [
      [q, data.q],
      [k, data.k],
      [v, data.v],
      [mask, kqMask],
      [dO, data.dO],
    ] as [Tensor, Float32Array][])
      setData(t, d);
    setData(pos, positions);
    const ropeSpec = { positions: pos, mode: cs.mode, base: BASE };
    const c = new Context(32, 32);
    const fused = c.fusedAttention(q, k, v, mask, 1 / Math.sqrt(HD), ropeSpec) as Tensor;
    expect(fused).not.toBeNull();
    const [dq, dk, dv] = c.attentionBack(q, k, v, mask, ropeSpec, fused, dO, 1 / Math.sqrt(HD));
    const all = c.concat(
      c.concat(c.reshape(dq, [HD * H * N]), c.reshape(dk, [HD * KV * N]), 0),
      c.reshape(dv, [HD * KV * N]),
      0,
    );
    const out = c.concat(c.reshape(fused, [fused.nelements]), all, 0);
    const alloc = computeOnce(backend, c, 64, out);
    const got = getF32(out).slice();
    alloc.free();
    c.free();
    buf.free();
    s.free();
    backend.free();
    return { got, want: oracle(cs, { q: data.q, k: data.k }, data.v, kqMask, data.dO, positions) };
  }

  // "kernels" runs the products on AMX tiles where the CPU has them (head dims of 64 and more), both operands split
  // in three; "AVX-512 kernels" on the FMAs
  for (const threads of [1, 2])
    it(`match float64 with GQA, padding, masks of any shape and tails, on AMX tiles and the FMAs (${threads} thread${threads > 1 ? "s" : ""})`, () => {
      if (!CPU_HAS_AVX512) {
        console.warn(
          "this CPU has no AVX-512: the attention kernel is not tested here (the model uses the graph)",
        );
        return;
      }
      for (const [n, cs] of cases.entries()) {
        const { HD, H, KV, T, B } = cs;
        const N = T * B;
        const runs = (["kernels", "AVX-512 kernels"] as const).map((mode) => {
          useKernels(mode);
          expect(loadKernels()?.attention, "AVX-512 is here but the attention kernel is not").toBeTruthy();
          const tiles = mode === "kernels" && HD >= 64 && loadKernels()?.amx() === true;
          return { mode, tiles, ...kernelOutputs(cs, threads, 17 + n) };
        });
        for (const { mode, got, want } of runs) {
          const parts = { o: 0, dq: HD * H * N + H * N }; // lse [H, N] lies between o and dq
          const at = (start: number, len: number) => got.subarray(start, start + len);
          const dkAt = parts.dq + HD * H * N;
          const dvAt = dkAt + HD * KV * N;
          const label = `${mode} ${JSON.stringify({ HD, H, KV, T, B, mode: cs.mode, edited: !!cs.edit })}`;
          expect(relError(at(parts.o, HD * H * N), want.o), `o ${label}`).toBeLessThan(2e-6);
          expect(relError(at(parts.dq, HD * H * N), want.dq), `dq ${label}`).toBeLessThan(1e-5);
          expect(relError(at(dkAt, HD * KV * N), want.dk), `dk ${label}`).toBeLessThan(1e-5);
          expect(relError(at(dvAt, HD * KV * N), want.dv), `dv ${label}`).toBeLessThan(2e-6);
        }
        // the tiles round differently from the FMAs: outputs equal to the last bit would mean they did not run
        const [tiles, fmas] = runs as [(typeof runs)[0], (typeof runs)[0]];
        if (tiles.tiles)
          expect(
            tiles.got.some((x, i) => x !== fmas.got[i]),
            `AMX tiles ran for ${JSON.stringify({ HD, T })}`,
          ).toBe(true);
      }
      useKernels("kernels");
    });

  it("does not apply without AVX-512, or to a head dim that is not a multiple of 16: the model builds the graph", () => {
    for (const [mode, HD, applies] of [
      ["AVX2 kernels", 32, false],
      ["ggml fallback", 32, false],
      ["kernels", 8, false],
      ["kernels", 32, CPU_HAS_AVX512],
    ] as const) {
      useKernels(mode);
      const c = new Context(8);
      const q = c.newTensor("f32", [HD, 2, 6]);
      const kv = c.newTensor("f32", [HD, 1, 6]);
      const mask = c.newTensor("f32", [3, 3, 1, 2]);
      const ropeSpec = { positions: c.newTensor("i32", [6]), mode: "normal", base: BASE } as const;
      expect(c.fusedAttention(q, kv, kv, mask, 1, ropeSpec) !== null, `${mode}, head dim ${HD}`).toBe(
        applies,
      );
      c.free();
    }
  });
});
