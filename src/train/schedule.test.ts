import { describe, expect, it } from "vitest";
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
    expect(learningRate({ lr: 2e-4, warmupSteps: 0, totalSteps: 0, minLrRatio: 0 }, 77)).toBe(2e-4);
  });
});
