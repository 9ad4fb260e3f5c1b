import { describe, expect, it } from "vitest";
import { BUILTIN_SCHEMAS } from "../data/attributes.js";
import { Rng } from "../util/rng.js";
import { accuracy, parseWeights } from "./reward.js";

describe("reward accuracy", () => {
  it("bootstraps an interval around the accuracy, reproducibly with a seed", () => {
    const right = Array.from({ length: 200 }, (_, i) => i % 4 !== 0); // 75 %
    const a = accuracy(right, 2000, new Rng(1));
    expect(a).toMatchObject({ pairs: 200, correct: 150, accuracy: 0.75 });
    expect(a.ci[0]).toBeLessThan(0.75);
    expect(a.ci[1]).toBeGreaterThan(0.75);
    // About ±1.96·sqrt(.75·.25/200) = ±0.06.
    expect(a.ci[0]).toBeGreaterThan(0.66);
    expect(a.ci[1]).toBeLessThan(0.84);
    expect(accuracy(right, 2000, new Rng(1))).toEqual(a);
    expect(accuracy([true, true], 100, new Rng(2)).ci).toEqual([1, 1]);
  });

  it("parses weights over the APM's outputs, negative ones too, and names a bad one", () => {
    const steerlm = BUILTIN_SCHEMAS.steerlm;
    expect(parseWeights(steerlm, "helpfulness=1,verbosity=-0.5", "--weights")).toEqual({
      helpfulness: 1,
      verbosity: -0.5,
    });
    expect(() => parseWeights(steerlm, "humour=1", "--weights")).toThrow(
      /--weights\.humour: unknown attribute "humour" for schema steerlm/,
    );
    expect(() => parseWeights(steerlm, "humor=x", "--weights")).toThrow(
      /--weights\.humor: expected a number, got "x"/,
    );
    expect(() => parseWeights(steerlm, "humor", "--weights")).toThrow(
      /--weights: "humor" is not name=weight/,
    );
  });
});
