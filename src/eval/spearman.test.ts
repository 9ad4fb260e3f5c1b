import { describe, expect, it } from "vitest";
import { ranks, spearman } from "./spearman.js";

// Reference values from scipy.stats.spearmanr (average ranks for ties).
describe("spearman", () => {
  it("averages tied ranks", () => {
    expect(ranks([10, 20, 20, 5])).toEqual([2, 3.5, 3.5, 1]);
  });
  it("matches scipy on tied and untied data", () => {
    expect(spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])).toBeCloseTo(0.8207826816681233, 12);
    expect(spearman([0, 1, 2, 3, 4], [0.1, 0.5, 0.4, 2, 3])).toBeCloseTo(0.9, 12);
    expect(spearman([0, 0, 1, 1, 2, 2], [1, 0, 2, 2, 3, 4])).toBeCloseTo(0.970142500145332, 12);
    expect(spearman([0, 1, 2, 3, 4], [4, 3, 2, 1, 0])).toBe(-1);
  });
  it("is NaN when one side is constant", () => {
    expect(spearman([0, 1, 2], [1, 1, 1])).toBeNaN();
  });
});
