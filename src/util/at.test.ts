import { describe, expect, it } from "vitest";
import { at } from "./at.js";

describe("at", () => {
  it("returns the entry, including falsy ones", () => {
    expect(at([3, 0, 5], 1, "xs")).toBe(0);
    expect(at({ 1: "a" }, 1, "bank")).toBe("a");
    expect(at(new Float32Array([1.5]), 0, "f")).toBe(1.5);
  });
  it("names the table and the index it lacks", () => {
    expect(() => at([1], 3, "toxicity bank")).toThrow("toxicity bank: no entry 3");
    expect(() => at([1], -1, "xs")).toThrow("xs: no entry -1");
  });
});
