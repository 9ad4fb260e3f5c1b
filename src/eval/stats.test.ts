import { describe, expect, it } from "vitest";
import { bootstrap, bootstrapMean, disjoint, mean, relativeScore, stdev } from "./stats.js";

describe("stats", () => {
  it("means, spreads and a seeded bootstrap interval that contains the mean", () => {
    expect(mean([1, 2, 3])).toBe(2);
    expect(stdev([1, 2, 3])).toBe(1);
    expect(stdev([5])).toBe(0);
    const g = [
      Array.from({ length: 50 }, (_, i) => i % 5),
      Array.from({ length: 50 }, (_, i) => (i % 5) + 1),
    ];
    const e = bootstrapMean(g, (x) => x, { seed: 7 });
    expect(e.mean).toBeCloseTo(2.5);
    expect(e.perSeed).toEqual([2, 3]);
    expect(e.ci[0]).toBeLessThan(2.5);
    expect(e.ci[1]).toBeGreaterThan(2.5);
    expect(e.ci[1] - e.ci[0]).toBeLessThan(1);
    expect(bootstrapMean(g, (x) => x, { seed: 7 })).toEqual(e);
    // a constant sample has a zero-width interval
    expect(bootstrap([[3, 3, 3]], mean).ci).toEqual([3, 3]);
  });

  it("the total-score ratio with win/tie/loss counts", () => {
    const pairs = [
      { candidate: 4, reference: 2 },
      { candidate: 2, reference: 2 },
      { candidate: 0, reference: 1 },
      { candidate: 3, reference: 1 },
    ];
    const r = relativeScore([pairs]);
    expect(r.mean).toBeCloseTo((100 * 9) / 6);
    expect([r.win, r.tie, r.loss]).toEqual([2, 1, 1]);
    expect(r.ci[0]).toBeLessThanOrEqual(r.mean);
  });

  it("tells disjoint intervals apart", () => {
    const at = (lo: number, hi: number) => ({
      mean: (lo + hi) / 2,
      ci: [lo, hi] as [number, number],
      perSeed: [],
    });
    expect(disjoint(at(0, 1), at(1.5, 2))).toBe(true);
    expect(disjoint(at(0, 1), at(0.9, 2))).toBe(false);
  });
});
