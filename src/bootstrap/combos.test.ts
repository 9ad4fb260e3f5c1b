import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { haveSharedData, sharedData } from "../../test/helpers.js";
import { BUILTIN_SCHEMAS, formatValues } from "../data/attributes.js";
import { labelString } from "../data/record.js";
import { InputError } from "../util/errors.js";
import { defaultQualityKey, pickCombo, readTopCombos, rowSeed } from "./combos.js";
import { promptOf, readPrompts } from "./prompts.js";

const dir = mkdtempSync(join(tmpdir(), "steerlm-combos-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const turn = (from: "User" | "Assistant", value: string, label: string | null = null) => ({
  from,
  value,
  label,
});
const line = (...turns: ReturnType<typeof turn>[]) =>
  JSON.stringify({ system: "S", conversations: turns, mask: "User" });

const A = "quality:4,toxicity:0,humor:1";
const B = "quality:4,toxicity:1,humor:3";

function writeData(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

describe("readTopCombos", () => {
  const data = writeData("train.jsonl", [
    line(turn("User", "a"), turn("Assistant", "x", A)),
    line(turn("User", "b"), turn("Assistant", "y", "quality:3,toxicity:0,humor:1")),
    line(turn("User", "c"), turn("Assistant", "z", A), turn("User", "d"), turn("Assistant", "w", B)),
    line(turn("User", "e"), turn("Assistant", "v", "toxicity:2")), // no quality label: not a candidate
  ]);

  it("keeps every assistant turn at the top of the quality scale, in file order, repeats included", async () => {
    const top = await readTopCombos(data, { schema: BUILTIN_SCHEMAS.steerlm });
    expect(top.qualityKey).toBe("quality");
    expect(top.top).toBe(4);
    expect(top.combos.map((c) => labelString(c, BUILTIN_SCHEMAS.steerlm))).toEqual([A, A, B]);
    expect([top.distinct, top.labelledTurns]).toEqual([2, 5]);
    expect(top.digest).toMatch(/^[0-9a-f]{64}$/);
  });

  it("says which file and attribute when no turn has the top value, with the values seen", async () => {
    const low = writeData("low.jsonl", [
      line(turn("User", "a"), turn("Assistant", "x", "quality:3")),
      line(turn("User", "a"), turn("Assistant", "x", "quality:1")),
    ]);
    const err = await readTopCombos(low, { schema: BUILTIN_SCHEMAS.steerlm }).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toBe(
      `${low}: quality: no assistant turn has quality:4, the top of its scale (2 labelled turns; quality values seen: 1: 1, 3: 1)`,
    );
  });

  it("names the file, line and field of a bad row", async () => {
    const bad = writeData("bad.jsonl", [
      line(turn("User", "a"), turn("Assistant", "x", A)),
      line(turn("User", "a"), turn("Assistant", "x", "quality:7")),
    ]);
    await expect(readTopCombos(bad, { schema: BUILTIN_SCHEMAS.steerlm })).rejects.toThrow(
      `${bad}:2: conversations[1].label.quality: 7 is out of range 0..4`,
    );
  });

  it("uses helpfulness for a schema without quality, and refuses an unknown --quality-key", async () => {
    expect(defaultQualityKey(BUILTIN_SCHEMAS.helpsteer)).toBe("helpfulness");
    expect(defaultQualityKey(BUILTIN_SCHEMAS.oasst)).toBe("quality");
    await expect(
      readTopCombos(data, { schema: BUILTIN_SCHEMAS.steerlm, qualityKey: "charm" }),
    ).rejects.toThrow('qualityKey: unknown attribute "charm" for schema steerlm');
  });

  it.skipIf(!haveSharedData)(
    "refuses plain SFT data (no labels) with a hint that fits bootstrapping",
    async () => {
      const file = sharedData("nemo-aligner", "dummy-sft.jsonl");
      const err = await readTopCombos(file, { schema: BUILTIN_SCHEMAS.steerlm }).catch((e) => e);
      expect(err).toBeInstanceOf(InputError);
      expect(err.message.startsWith(`${file}:1: conversations: no attribute labels`)).toBe(true);
      expect(err.hint).toContain("steerlm annotate");
    },
  );

  it.skipIf(!haveSharedData)(
    "reads NeMo's HelpSteer sample with helpfulness as the quality key",
    async () => {
      const file = sharedData("nemo-aligner", "sft_512_sample_extra_id_format.jsonl");
      const schema = BUILTIN_SCHEMAS.helpsteer;
      const top = await readTopCombos(file, { schema });
      // Oracle: the same selection straight from the JSON, labels normalised to the schema's order.
      const want: string[] = [];
      for (const l of readFileSync(file, "utf8").split("\n").filter(Boolean)) {
        for (const c of JSON.parse(l).conversations as Array<{ from: string; label?: string | null }>) {
          if (c.from !== "Assistant" || !c.label) continue;
          const values = Object.fromEntries(
            c.label.split(",").map((p) => [p.split(":")[0], Number(p.split(":")[1])]),
          );
          if (values.helpfulness === 4) want.push(formatValues(schema, values));
        }
      }
      expect(want.length).toBeGreaterThan(0);
      expect(top.combos.map((c) => formatValues(schema, c))).toEqual(want);
    },
  );
});

describe("pickCombo and rowSeed", () => {
  const combos = [{ q: 0 }, { q: 1 }, { q: 2 }, { q: 3 }];

  it("depends only on (seed, row): any order of calls gives the same draws", () => {
    const forward = Array.from({ length: 50 }, (_, row) => pickCombo(combos, 7, row));
    const backward = Array.from({ length: 50 }, (_, i) => pickCombo(combos, 7, 49 - i)).reverse();
    expect(backward).toEqual(forward);
    for (const c of forward) expect(combos).toContain(c);
    const other = Array.from({ length: 50 }, (_, row) => pickCombo(combos, 8, row));
    expect(other).not.toEqual(forward);
  });

  it("is uniform over the entries, so a combination seen k times is drawn k times as often", () => {
    // 3 copies of X and 1 of Y: X should come up 3/4 of the time.
    const X = { x: 1 };
    const Y = { y: 1 };
    const entries = [X, Y, X, X];
    const n = 8000;
    let xs = 0;
    const hits = [0, 0, 0, 0];
    for (let row = 0; row < n; row++) {
      const c = pickCombo(entries, 3, row);
      if (c === X) xs++;
      hits[pickCombo(combos, 3, row).q as number]++;
    }
    // Binomial sd: sqrt(8000·0.75·0.25) ≈ 39 draws; 4 sd is ±155.
    expect(Math.abs(xs - 0.75 * n)).toBeLessThan(155);
    // Chi-square over 4 equally likely entries, 3 degrees of freedom: 16.3 is the 0.1% tail.
    const chi2 = hits.reduce((s, h) => s + (h - n / 4) ** 2 / (n / 4), 0);
    expect(chi2).toBeLessThan(16.3);
  });

  it("gives 31-bit generation seeds that differ between rows and from the combination draw", () => {
    const seeds = Array.from({ length: 1000 }, (_, row) => rowSeed(1, row));
    for (const s of seeds) expect(Number.isInteger(s) && s >= 0 && s < 2 ** 31).toBe(true);
    expect(new Set(seeds).size).toBe(1000);
    expect(rowSeed(1, 5)).toBe(seeds[5]);
    expect(rowSeed(2, 5)).not.toBe(seeds[5]);
  });
});

describe("prompts", () => {
  it("drops the responses after the last user turn and keeps earlier turns with their labels", async () => {
    const file = writeData("prompts.jsonl", [
      line(turn("User", "a"), turn("Assistant", "x", A)),
      line(turn("User", "c"), turn("Assistant", "z", A), turn("User", "d"), turn("Assistant", "w", B)),
      line(turn("User", "a"), turn("Assistant", "other response", B)),
    ]);
    const schema = BUILTIN_SCHEMAS.steerlm;
    const all = await readPrompts(file, { schema });
    expect(
      all.map((p) => p.turns.map((t) => [t.role, t.text, t.labels && labelString(t.labels, schema)])),
    ).toEqual([
      [["user", "a", null]],
      [
        ["user", "c", null],
        ["assistant", "z", A],
        ["user", "d", null],
      ],
      [["user", "a", null]],
    ]);
    expect((await readPrompts(file, { schema, unique: true })).length).toBe(2);
    expect((await readPrompts(file, { schema, limit: 1 })).length).toBe(1);
  });

  it("refuses a conversation with no user turn, naming its line", () => {
    const record = {
      system: "S",
      turns: [{ role: "assistant" as const, text: "x", labels: null }],
      extra: new Map(),
      origin: { file: "f.jsonl", line: 3, format: "steerlm" as const },
    };
    expect(() => promptOf(record)).toThrow(
      "f.jsonl:3: conversations: the conversation has no user turn to answer",
    );
  });
});
