import { describe, expect, it } from "vitest";
import { hypervolume2d, type ParetoPoint, paretoFront } from "./pareto.js";

const at = (x: number, y: number, requested: [number, number] = [x, y]): ParetoPoint => ({
  requested,
  measured: [x, y],
});

describe("Pareto front and hypervolume", () => {
  it("keeps the non-dominated points, by x ascending", () => {
    const points = [at(1, 3), at(2, 2), at(1, 1), at(3, 0.5), at(2, 1.5), at(0, 3)];
    expect(paretoFront(points).map((p) => p.measured)).toEqual([
      [1, 3],
      [2, 2],
      [3, 0.5],
    ]);
    // Equal points do not dominate each other: both stay.
    expect(paretoFront([at(1, 1, [0, 0]), at(1, 1, [1, 1])])).toHaveLength(2);
  });

  it("measures the area the front dominates above the reference corner", () => {
    const front = paretoFront([at(1, 3), at(2, 2), at(3, 0.5)]);
    // Strips: x 0..1 at height 3, 1..2 at 2, 2..3 at 0.5.
    expect(hypervolume2d(front, [0, 0])).toBeCloseTo(3 + 2 + 0.5, 12);
    expect(hypervolume2d(front, [1, 1])).toBeCloseTo(1 * 1, 12);
    expect(hypervolume2d([at(4, 4)], [0, 0])).toBe(16);
    expect(hypervolume2d([], [0, 0])).toBe(0);
  });
});
