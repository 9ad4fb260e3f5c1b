import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BUILTIN_SCHEMAS, withDefaults } from "../src/data/attributes.js";
import type { DataRecord } from "../src/data/record.js";
import {
  readSamples,
  type SampleInfo,
  type Steerlm2Group,
  sampleLine,
  targetWeights,
} from "../src/steerlm2/format.js";
import { tempDir } from "./helpers.js";

// The steerlm2 file on its own: written by sampleLine, read back by readSamples exactly, and refused with
// file:line:field when its layout is broken.
const dir = tempDir("steerlm-steerlm2-format-");
afterAll(() => dir.cleanup());
const schema = BUILTIN_SCHEMAS.steerlm;
const values = withDefaults(schema, { quality: 3, humor: 1 });

const record = (prompt: string, response: string): DataRecord => ({
  system: "S",
  turns: [
    { role: "user", text: prompt, labels: null },
    { role: "assistant", text: response, labels: values },
  ],
  extra: new Map(),
});

function group(g: number, prompt: string, n: number): string[] {
  const terms = Array.from({ length: n }, (_, i) => ({
    logQ: -10.1 - i * 1.7,
    logPrior: -11.3 - i * 0.1,
    logPAttrs: -4.2 + i * 0.33,
  }));
  const w = targetWeights(terms);
  return terms.map((t, i) =>
    sampleLine(
      record(prompt, `answer ${i} ✓`),
      { group: g, sample: i, n, ...t, targetWeight: w[i] as number },
      schema,
    ),
  );
}

function write(name: string, lines: string[]): string {
  const path = join(dir.path, name);
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

async function read(path: string): Promise<Steerlm2Group[]> {
  const out: Steerlm2Group[] = [];
  for await (const g of readSamples(path, { schema })) out.push(g);
  return out;
}

describe("the steerlm2 file", () => {
  it("round-trips every logged number exactly, groups in order", async () => {
    const path = write("ok.jsonl", [...group(0, "p", 3), ...group(1, "q", 3)]);
    const gs = await read(path);
    expect(gs.map((g) => g.samples.length)).toEqual([2, 2].map(() => 3));
    const again = gs.flatMap((g) => g.samples.map((s) => sampleLine(s.record, s.info, schema)));
    expect(`${again.join("\n")}\n`).toBe(readFileSync(path, "utf8"));
    const info = gs[1]?.samples[2]?.info as SampleInfo;
    expect(info).toMatchObject({ group: 1, sample: 2, n: 3, logQ: -10.1 - 2 * 1.7 });
    expect(gs[0]?.samples[1]?.record.turns[1]?.labels).toEqual(values);
    const o = JSON.parse(readFileSync(path, "utf8").split("\n")[0] as string);
    expect(Object.keys(o)).toEqual(["system", "conversations", "mask", "type", "steerlm2"]);
  });

  it("names file, line and field of a broken layout", async () => {
    const a = group(0, "p", 3);
    const b = group(1, "q", 3);
    const cases: Array<[string, string[], string]> = [
      ["short.jsonl", [...a.slice(0, 2), ...b], ":2: steerlm2.group: group 0 has 2 samples, not n = 3"],
      [
        "order.jsonl",
        [a[0], a[2], a[1]] as string[],
        ":2: steerlm2: expected sample 1 of 3, got sample 2 of 3",
      ],
      ["skip.jsonl", [...b], ":1: steerlm2: expected sample 0 of group 0, got sample 0 of group 1"],
      [
        "weights.jsonl",
        [a[0]?.replace(/"target_weight": [^}]+/, '"target_weight": 0.9') as string, a[1], a[2]] as string[],
        ":3: steerlm2.target_weight: group 0's target weights sum to",
      ],
      [
        "prompt.jsonl",
        [a[0], a[1]?.replace('"value": "p"', '"value": "other"'), a[2]] as string[],
        ":2: conversations: a sample of group 0 has another prompt or values than sample 0",
      ],
      [
        "nokey.jsonl",
        [a[0]?.replace(/, "steerlm2": \{[^}]*\}/, "") as string],
        ":1: steerlm2: expected an object",
      ],
      [
        "logq.jsonl",
        [a[0]?.replace(/"log_q": [^,]+/, '"log_q": "x"') as string],
        ":1: steerlm2.log_q: expected a number",
      ],
    ];
    for (const [name, lines, message] of cases) {
      const path = write(name, lines);
      await expect(read(path)).rejects.toThrow(`${path}${message}`);
    }
  });

  it("computes target weights as a softmax that survives very negative terms", () => {
    const w = targetWeights([
      { logQ: 900, logPrior: -100, logPAttrs: -20 },
      { logQ: 901, logPrior: -100, logPAttrs: -20 },
    ]);
    expect(w[0]).toBeCloseTo(Math.E / (1 + Math.E), 14);
    expect((w[0] as number) + (w[1] as number)).toBeCloseTo(1, 15);
  });
});
