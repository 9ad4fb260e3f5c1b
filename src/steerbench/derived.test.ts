import { describe, expect, it } from "vitest";
import { BUILTIN_SCHEMAS } from "../data/attributes.js";
import { DERIVED_ATTRIBUTES, withDerived } from "./compose.js";
import { companionsFrom, requestFor, turnLabels } from "./derived.js";
import { synthesize } from "./synth.js";

describe("derived attributes protocol", () => {
  const schema = BUILTIN_SCHEMAS.steerlm;
  const labels = turnLabels(synthesize({ n: 4000, seed: 3 }).splits.train, schema);

  it("asks for each level of quality and helpfulness with a combination the formulas agree with", () => {
    const c = companionsFrom(labels, schema, DERIVED_ATTRIBUTES);
    for (const a of DERIVED_ATTRIBUTES) {
      expect(Object.keys(c[a] ?? {}).map(Number)).toEqual([0, 1, 2, 3, 4]);
      for (let k = 0; k <= 4; k++) {
        const req = requestFor(c, a, k);
        expect(Object.keys(req).sort()).toEqual(schema.attributes.map((d) => d.name).sort());
        // a combination some training turn had: derived values follow from the base ones
        const derived = withDerived(req as Parameters<typeof withDerived>[0]);
        expect([derived.quality, derived.helpfulness, req[a]]).toEqual([req.quality, req.helpfulness, k]);
      }
    }
  });

  it("prefers the most frequent combination, then the most typical values", () => {
    const rows = [
      { quality: 1, humor: 0, toxicity: 2 },
      { quality: 1, humor: 3, toxicity: 2 },
      { quality: 1, humor: 3, toxicity: 1 },
      { quality: 2, humor: 4, toxicity: 0 },
    ];
    const c = companionsFrom(rows, schema, ["quality"]);
    // three combinations seen once each at quality 1: humor 3 and toxicity 2 are each seen twice
    expect(c.quality?.[1]).toEqual({ humor: 3, toxicity: 2 });
    expect(c.quality?.[2]).toEqual({ humor: 4, toxicity: 0 });
    expect(requestFor(undefined, "humor", 2)).toEqual({ humor: 2 });
  });
});
