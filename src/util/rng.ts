/**
 * steerlm's one seeded RNG: xoshiro128**, seeded through splitmix32, so the same seed gives the same numbers
 * on every machine (Math.random is never used). Model init, the data order and SteerBench all draw from it.
 * Its whole state is four uint32s (`state`), so a run can be replayed from any point.
 */
import { at } from "./at.js";

export type RngState = [number, number, number, number];

/**
 * A generation's sampling seed derived from `key` alone (so a resumed or parallel job draws the same): 31
 * bits, a non-negative int32, which every engine takes (llama.cpp, vLLM, steerlm serve).
 */
export function samplingSeed(key: string): number {
  return new Rng(key).u32() >>> 1;
}

export class Rng {
  readonly #s = new Uint32Array(4);

  /** A number, a string (hashed with fnv1a) or a saved `state`. */
  constructor(seed: number | string | RngState = 0) {
    if (Array.isArray(seed)) {
      this.#s.set(seed);
    } else {
      // splitmix32 spreads a small seed over all four state words
      let x = typeof seed === "number" ? seed >>> 0 : fnv1a(seed);
      for (let i = 0; i < 4; i++) {
        x = (x + 0x9e3779b9) >>> 0;
        let z = x;
        z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
        z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
        this.#s[i] = (z ^ (z >>> 16)) >>> 0;
      }
    }
    // xoshiro must not start all-zero (splitmix32 never gives that; a hand-made state could)
    if (this.#s.every((v) => v === 0)) this.#s[0] = 1;
  }

  get state(): RngState {
    return [this.#s[0] ?? 0, this.#s[1] ?? 0, this.#s[2] ?? 0, this.#s[3] ?? 0];
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const s = this.#s;
    const s0 = s[0]!;
    const s1 = s[1]!;
    const s2 = s[2]!;
    const s3 = s[3]!;
    const r = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    const n2 = (s2 ^ s0) >>> 0;
    const n3 = (s3 ^ s1) >>> 0;
    s[1] = (s1 ^ n2) >>> 0;
    s[0] = (s0 ^ n3) >>> 0;
    s[2] = (n2 ^ t) >>> 0;
    s[3] = rotl(n3, 11);
    return r;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    return at(items, this.int(0, items.length - 1), "Rng.pick");
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  /** `k` distinct integers from [lo, hi], in random order. */
  distinct(k: number, lo: number, hi: number): number[] {
    const out: number[] = [];
    const seen = new Set<number>();
    while (out.length < k) {
      const v = this.int(lo, hi);
      if (!seen.has(v)) {
        seen.add(v);
        out.push(v);
      }
    }
    return out;
  }

  /** Standard normal (Box–Muller; no cached spare, so `state` is the whole state). */
  normal(): number {
    const u = 1 - this.float();
    const v = this.float();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Fills a new array with N(0, std²). */
  normalArray(n: number, std: number): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.normal() * std;
    return a;
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      const tmp = a[i]!;
      a[i] = a[j]!;
      a[j] = tmp;
    }
    return a;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** FNV-1a over UTF-16 code units: a stable, seed-independent hash (string seeds; SteerBench's splits). */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
