import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import {
  BUILTIN_SCHEMAS,
  formatValues,
  loadSchema,
  parseAttributes,
  parseValues,
  roundHalfEven,
  STEERLM_ATTRIBUTE_ORDER,
  toLabel,
  withDefaults,
} from "./attributes.js";

const steerlm = BUILTIN_SCHEMAS.steerlm;
const helpsteer = BUILTIN_SCHEMAS.helpsteer;

describe("attribute schemas", () => {
  it("has the built-in schemas with NeMo's canonical order", () => {
    expect(steerlm.attributes.map((a) => a.name)).toEqual([...STEERLM_ATTRIBUTE_ORDER]);
    expect(helpsteer.attributes.map((a) => a.name)).toEqual([
      "helpfulness",
      "correctness",
      "coherence",
      "complexity",
      "verbosity",
    ]);
    expect(BUILTIN_SCHEMAS.oasst.attributes.map((a) => a.name)).toEqual([
      "quality",
      "toxicity",
      "humor",
      "creativity",
    ]);
    expect(BUILTIN_SCHEMAS["oasst-paper"].attributes.every((a) => a.max === 9)).toBe(true);
  });

  it("formats value strings in canonical order, without spaces, omitting absent keys", () => {
    expect(formatValues(steerlm, { verbosity: 4, humor: 0, quality: 4 })).toBe(
      "quality:4,humor:0,verbosity:4",
    );
    expect(formatValues(steerlm, withDefaults(steerlm))).toBe(
      "quality:4,toxicity:0,humor:0,creativity:0,helpfulness:4,correctness:4,coherence:4,complexity:4,verbosity:4",
    );
  });

  it("parses the real HelpSteer label string", () => {
    expect(
      parseValues(helpsteer, "helpfulness:4,correctness:4,coherence:4,complexity:3,verbosity:2"),
    ).toEqual({
      helpfulness: 4,
      correctness: 4,
      coherence: 4,
      complexity: 3,
      verbosity: 2,
    });
  });

  it("names every kind of bad value string", () => {
    const at = { file: "f.jsonl", line: 7, field: "label" };
    expect(() => parseValues(helpsteer, "helpfulness:7", at)).toThrow(
      "f.jsonl:7: label.helpfulness: 7 is out of range 0..4",
    );
    expect(() => parseValues(helpsteer, "humor:1", at)).toThrow(/unknown attribute "humor"/);
    expect(() => parseValues(helpsteer, "verbosity:1,verbosity:2", at)).toThrow(
      /duplicate attribute "verbosity"/,
    );
    expect(() => parseValues(helpsteer, "verbosity:1.5", at)).toThrow(/expected an integer, got "1.5"/);
    expect(() => parseValues(helpsteer, "", at)).toThrow("f.jsonl:7: label: empty value string");
    expect(() => parseValues(helpsteer, "verbosity", at)).toThrow(/not key:value/);
    expect(() => withDefaults(steerlm, { nope: 1 })).toThrow(/unknown attribute "nope"/);
  });

  it("accepts fractions only where the caller asks for them, still within the scale", () => {
    const at = { field: "--attr" };
    expect(parseAttributes(steerlm, "humor=2.5,verbosity:1", at, { fractions: true })).toEqual({
      humor: 2.5,
      verbosity: 1,
    });
    expect(parseAttributes(steerlm, { humor: 0.1 }, at, { fractions: true })).toEqual({ humor: 0.1 });
    expect(() => parseAttributes(steerlm, "humor=2.5", at)).toThrow(
      '--attr.humor: expected an integer, got "2.5"',
    );
    expect(() => parseAttributes(steerlm, "humor=4.5", at, { fractions: true })).toThrow(
      "--attr.humor: 4.5 is out of range 0..4",
    );
    expect(() => parseAttributes(steerlm, { humor: Number.NaN }, at, { fractions: true })).toThrow(
      "--attr.humor: expected a number, got number NaN",
    );
    expect(() => parseAttributes(steerlm, "humor=2.", at, { fractions: true })).toThrow(
      '--attr.humor: expected a number, got "2."',
    );
    // Data files never take fractions.
    expect(() => parseValues(helpsteer, "verbosity:1.5")).toThrow(/expected an integer/);
    expect(formatValues(steerlm, { humor: 2.5, quality: 4 }, { fractions: true })).toBe(
      "quality:4,humor:2.5",
    );
    expect(() => formatValues(steerlm, { humor: 2.5 })).toThrow(/expected an integer/);
    expect(withDefaults(steerlm, { humor: 1.5 }, {}, { fractions: true }).humor).toBe(1.5);
  });

  it("rounds half to even like Python and clamps predictions to the scale", () => {
    expect([0.5, 1.5, 2.5, 3.5, -0.5, 2.4999, 2.5001].map(roundHalfEven)).toEqual([0, 2, 2, 4, 0, 2, 3]);
    const v = steerlm.attributes[8];
    expect([-1.2, 4.7, 2.5, 3.5].map((x) => toLabel(v, x))).toEqual([0, 4, 2, 4]);
  });

  it("loads custom schemas from YAML and JSON and rejects bad ones with the field", () => {
    const dir = tempDir();
    try {
      const yamlPath = join(dir.path, "s.yaml");
      writeFileSync(
        yamlPath,
        "name: mine\nattributes:\n  - {name: formality, max: 2, default: 1, description: how formal}\n  - {name: emoji, min: 0, max: 3}\n",
      );
      const s = loadSchema(yamlPath);
      expect(s.attributes.map((a) => [a.name, a.min, a.max, a.default])).toEqual([
        ["formality", 0, 2, 1],
        ["emoji", 0, 3, 0],
      ]);
      const bad = join(dir.path, "bad.json");
      writeFileSync(bad, JSON.stringify({ attributes: [{ name: "x", max: 2, default: 5 }] }));
      expect(() => loadSchema(bad)).toThrow(
        /bad\.json: attributes\[0\]\.default: expected an integer in 0\.\.2, got number 5/,
      );
      expect(() => loadSchema("nonesuch")).toThrow(/unknown schema "nonesuch"/);
      // a misspelt key would leave the default at min (unsteered generation at quality 0) unnoticed
      writeFileSync(yamlPath, "name: typo\nattributes:\n  - {name: quality, max: 4, defualt: 4}\n");
      expect(() => loadSchema(yamlPath)).toThrow(
        `${yamlPath}: attributes[0].defualt: unknown key (expected name, min, max, default, description)`,
      );
      writeFileSync(yamlPath, "nmae: typo\nattributes:\n  - {name: quality, max: 4}\n");
      expect(() => loadSchema(yamlPath)).toThrow(
        `${yamlPath}: nmae: unknown key (expected name, attributes)`,
      );
    } finally {
      dir.cleanup();
    }
  });
});
