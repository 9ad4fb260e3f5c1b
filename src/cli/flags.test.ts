import { describe, expect, it } from "vitest";
import { parseLevels } from "./flags.js";

describe("parseLevels (--levels of eval adherence and eval pareto)", () => {
  it("counts a stepped range instead of accumulating it: 0..4:0.1 is the 41 values 0.0, 0.1, …, 4.0", () => {
    const levels = parseLevels("0..4:0.1");
    expect(levels).toHaveLength(41);
    expect(levels[3]).toBe(0.3);
    expect(levels[29]).toBe(2.9);
    expect(levels.at(-1)).toBe(4);
    expect(levels.every((l, i) => l === Number((i / 10).toFixed(1)))).toBe(true);
  });

  it("takes integer ranges, fractional ends, steps that do not land on the end, and lists", () => {
    expect(parseLevels("0..4")).toEqual([0, 1, 2, 3, 4]);
    expect(parseLevels("1.5..3:0.5")).toEqual([1.5, 2, 2.5, 3]);
    expect(parseLevels("0..1:0.3")).toEqual([0, 0.3, 0.6, 0.9]);
    expect(parseLevels("0, 2,4.5")).toEqual([0, 2, 4.5]);
  });

  it("refuses empty ranges, non-positive steps and negative values at --levels", () => {
    expect(() => parseLevels("3..1")).toThrow(/empty range 3\.\.1/);
    expect(() => parseLevels("0..4:0")).toThrow(/expected a positive number, got "0"/);
    expect(() => parseLevels("0,-1")).toThrow(/expected a number ≥ 0, got "-1"/);
    expect(() => parseLevels("0..4:x")).toThrow(/got "x"/);
  });
});
