import { describe, expect, it } from "vitest";
import { Rng } from "./rng.js";
import { learningRate } from "./schedule.js";

describe("learningRate", () => {
  const s = { lr: 1e-3, warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 };
  it("warms up linearly, peaks, then follows a cosine down to the floor", () => {
    expect(learningRate(s, 1)).toBeCloseTo(1e-4, 12);
    expect(learningRate(s, 10)).toBeCloseTo(1e-3, 12);
    expect(learningRate(s, 60)).toBeCloseTo(1e-4 + 0.9e-3 * 0.5, 12); // half way: cos(π/2) = 0
    expect(learningRate(s, 110)).toBeCloseTo(1e-4, 12);
    expect(learningRate(s, 500)).toBeCloseTo(1e-4, 12);
  });
  it("is constant after warmup without a total", () => {
    expect(learningRate({ lr: 2e-4, warmupSteps: 0, totalSteps: 0 }, 77)).toBe(2e-4);
  });
});

describe("Rng", () => {
  it("replays exactly from a saved state", () => {
    const a = new Rng(123);
    for (let i = 0; i < 5; i++) a.normal();
    const b = new Rng(a.state);
    expect(Array.from({ length: 8 }, () => b.nextU32())).toEqual(
      Array.from({ length: 8 }, () => a.nextU32()),
    );
  });
  it("draws roughly standard normals and distinct streams per seed", () => {
    const r = new Rng(7);
    const x = r.normalArray(20000, 1);
    const mean = x.reduce((s, v) => s + v, 0) / x.length;
    const varc = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(varc - 1)).toBeLessThan(0.05);
    expect(new Rng(1).nextU32()).not.toBe(new Rng(2).nextU32());
  });
});
