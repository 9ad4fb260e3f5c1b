import { describe, expect, it } from "vitest";
import {
  BETA_CONCENTRATION,
  BETA_EPSILON,
  betaMass,
  betaParams,
  regularizedIncompleteBeta as I,
  incompleteBeta,
  lnGamma,
  logLevelProbability,
  logPAttributes,
} from "../src/steerlm2/beta.js";

// Oracles that share no code with src/steerlm2/beta.ts: closed forms, the binomial identity for integer
// parameters, and Simpson integration of the Beta density (normalised by its own integral, so no ln Γ).

/** Composite Simpson's rule of f on [lo, hi] with n (even) intervals. */
function simpson(f: (x: number) => number, lo: number, hi: number, n = 40000): number {
  const h = (hi - lo) / n;
  let s = f(lo) + f(hi);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * f(lo + i * h);
  return (s * h) / 3;
}

/**
 * ∫_lo^hi t^(a−1) (1−t)^(b−1) dt for any a, b > 0. The density may be singular (or have a singular
 * derivative) at 0 and 1, so each half is integrated in a variable that makes it smooth: t = s^m below
 * 1/2 with m·a ≥ 6, where the integrand becomes m s^(m·a−1) (1 − s^m)^(b−1), and 1 − t = s^m above 1/2,
 * likewise. Each piece is integrated directly over its own range: no difference of large numbers, so
 * tiny bins keep their relative precision.
 */
function betaIntegral(lo: number, hi: number, a: number, b: number): number {
  const half = (from: number, to: number, p: number, q: number) => {
    if (!(to > from)) return 0;
    const m = Math.max(1, Math.ceil(6 / p));
    const f = (s: number) => m * s ** (m * p - 1) * (1 - s ** m) ** (q - 1);
    return simpson(f, from ** (1 / m), to ** (1 / m));
  };
  const lower = half(Math.min(lo, 0.5), Math.min(hi, 0.5), a, b);
  const upper = half(1 - Math.max(hi, 0.5), 1 - Math.max(lo, 0.5), b, a);
  return lower + upper;
}

/** I_x(a, b) for integers a, b: P(at least a successes in a+b−1 trials of probability x). */
function binomialTail(x: number, a: number, b: number): number {
  const n = a + b - 1;
  let s = 0;
  for (let j = a; j <= n; j++) {
    let c = 1;
    for (let i = 0; i < j; i++) c = (c * (n - i)) / (i + 1);
    s += c * x ** j * (1 - x) ** (n - j);
  }
  return s;
}

const rel = (got: number, want: number) => Math.abs(got - want) / Math.abs(want);

describe("lnGamma", () => {
  it("matches factorials and Γ(1/2) = √π", () => {
    let fact = 1;
    for (let n = 1; n <= 30; n++) {
      // ln Γ(1) = ln Γ(2) = 0: absolute error there, relative elsewhere
      if (n <= 2) expect(Math.abs(lnGamma(n))).toBeLessThan(1e-14);
      else expect(rel(lnGamma(n), Math.log(fact))).toBeLessThan(1e-13);
      fact *= n;
    }
    expect(Math.abs(lnGamma(0.5) - 0.5 * Math.log(Math.PI))).toBeLessThan(1e-14);
    expect(Math.abs(lnGamma(1.5) - Math.log(Math.sqrt(Math.PI) / 2))).toBeLessThan(1e-14);
    // Γ(x+1) = x Γ(x) at small x, where the reflection step is used
    expect(Math.abs(lnGamma(0.024) - (lnGamma(1.024) - Math.log(0.024)))).toBeLessThan(1e-13);
  });
});

describe("the regularized incomplete beta", () => {
  const xs = [1e-6, 0.01, 0.2, 0.37, 0.5, 0.63, 0.8, 0.99, 1 - 1e-6];

  it("has the closed forms I_x(1,b) = 1−(1−x)^b and I_x(a,1) = x^a", () => {
    for (const x of xs)
      for (const p of [0.024, 0.5, 1, 2.5, 12, 23.976]) {
        expect(Math.abs(I(x, 1, p) - (1 - (1 - x) ** p))).toBeLessThan(1e-14);
        expect(Math.abs(I(x, p, 1) - x ** p)).toBeLessThan(1e-14);
      }
  });

  it("is 1/2 at x = 1/2 for symmetric parameters and satisfies I_x(a,b) = 1 − I_{1−x}(b,a)", () => {
    for (const a of [0.1, 1, 3.7, 12, 50]) expect(Math.abs(I(0.5, a, a) - 0.5)).toBeLessThan(1e-12);
    for (const x of xs)
      for (const [a, b] of [
        [0.3, 7],
        [4.8, 19.2],
        [12, 12],
        [23.976, 0.024],
      ] as const)
        expect(Math.abs(I(x, a, b) - (1 - I(1 - x, b, a)))).toBeLessThan(1e-12);
  });

  it("equals the binomial tail for integer parameters", () => {
    for (const x of xs)
      for (const [a, b] of [
        [2, 3],
        [12, 12],
        [6, 18],
        [18, 6],
        [1, 23],
        [23, 1],
      ] as const)
        expect(Math.abs(I(x, a, b) - binomialTail(x, a, b))).toBeLessThan(1e-13);
  });

  it("equals numerical integration of the density, fractional parameters included", () => {
    for (const [a, b] of [
      [0.024, 23.976],
      [0.5, 3.5],
      [4.8, 19.2],
      [9.6, 14.4],
      [17.3, 6.7],
      [1.7, 1.3],
    ] as const) {
      const total = betaIntegral(0, 1, a, b);
      for (const x of [0.2, 0.4, 0.6, 0.8]) {
        expect(Math.abs(I(x, a, b) - betaIntegral(0, x, a, b) / total)).toBeLessThan(1e-9);
      }
    }
  });

  it("keeps the relative precision of tiny tails (both directions)", () => {
    // Beta(0.024, 23.976): the prediction at the bottom of the scale. Its mass above 0.8 is ~1e-18.
    const [a, b] = [0.024, 23.976];
    const total = betaIntegral(0, 1, a, b);
    const want = betaIntegral(0.8, 1, a, b) / total;
    expect(want).toBeLessThan(1e-15);
    expect(rel(incompleteBeta(0.8, a, b).upper, want)).toBeLessThan(1e-8);
    expect(rel(betaMass(0.8, 1, a, b), want)).toBeLessThan(1e-8);
    // the mirror image: the lower tail of Beta(23.976, 0.024) below 0.2
    expect(rel(incompleteBeta(0.2, b, a).lower, want)).toBeLessThan(1e-8);
    expect(rel(betaMass(0, 0.2, b, a), want)).toBeLessThan(1e-8);
  });
});

describe("P(a|x,y) from the APM's prediction", () => {
  it("scales r to [ε, 1−ε] and sets alpha = 24 r', beta = 24 − alpha", () => {
    expect(betaParams(2, 0, 4)).toEqual({ alpha: 12, beta: 12 });
    expect(betaParams(1, 0, 4).alpha).toBeCloseTo(6, 14);
    expect(betaParams(-0.7, 0, 4).alpha).toBeCloseTo(BETA_CONCENTRATION * BETA_EPSILON, 14);
    expect(betaParams(4.3, 0, 4).beta).toBeCloseTo(BETA_CONCENTRATION * BETA_EPSILON, 12);
  });

  it("gives each level the Beta mass of its bin [v/5, (v+1)/5]; the 5 levels sum to 1", () => {
    for (const r of [-1, 0, 0.3, 1.49, 2, 2.7, 3.99, 4, 5]) {
      const { alpha, beta } = betaParams(r, 0, 4);
      let sum = 0;
      for (let v = 0; v <= 4; v++) {
        const p = Math.exp(logLevelProbability(r, v, 0, 4));
        const want = betaIntegral(v / 5, (v + 1) / 5, alpha, beta) / betaIntegral(0, 1, alpha, beta);
        expect(rel(p, want)).toBeLessThan(1e-6);
        sum += p;
      }
      expect(Math.abs(sum - 1)).toBeLessThan(1e-12);
    }
    // r = 2 is symmetric: levels 1 and 3 are equally likely, 2 is the most likely
    const p = (v: number) => logLevelProbability(2, v, 0, 4);
    expect(Math.abs(p(1) - p(3))).toBeLessThan(1e-12);
    expect(p(2)).toBeGreaterThan(p(1));
  });

  it("sums over the attributes of a", () => {
    const terms = [
      { value: 4, prediction: 3.2, min: 0, max: 4 },
      { value: 0, prediction: 0.4, min: 0, max: 4 },
      { value: 2, prediction: 3.9, min: 0, max: 4 },
    ];
    const want = terms.reduce((s, t) => s + logLevelProbability(t.prediction, t.value, t.min, t.max), 0);
    expect(logPAttributes(terms)).toBe(want);
    expect(() => logLevelProbability(2, 5, 0, 4)).toThrow("outside the scale 0..4");
  });
});
