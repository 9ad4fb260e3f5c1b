import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { STEERLM_ATTRIBUTE_ORDER } from "../src/data/attributes.js";
import { type DemoPlan, formatDemoReport, runDemo } from "../src/demo/demo.js";
import { tempDir } from "./helpers.js";

// The demo pipeline end to end at a tiny size (the real sizes are DEMO_PLANS.full; README has its figures):
// SteerBench data → SFT from scratch → GGUF → generation at every level of every attribute → oracle → report.
const TINY: DemoPlan = {
  conversations: 120,
  multiTurnFraction: 0,
  model: { hiddenSize: 32, numLayers: 1, numHeads: 2, ffnSize: 64, contextLength: 512 },
  sft: {
    tokenizerVocabSize: 320,
    seqLen: 128,
    batchSize: 4,
    steps: 6,
    warmupSteps: 2,
    evalEvery: 3,
    checkpointEvery: 3,
  },
  trainSeconds: 60,
  prompts: 1,
  maxTokens: 16,
};

describe("steerlm demo pipeline", () => {
  const tmp = tempDir("steerlm-demo-");
  afterAll(() => tmp.cleanup());

  it("writes report.json in the documented shape and prints the table", async () => {
    const report = await runDemo({ dir: tmp.path, plan: TINY, progress: false });
    const json = JSON.parse(readFileSync(join(tmp.path, "report.json"), "utf8"));
    expect(Object.keys(json.attributes)).toEqual([...STEERLM_ATTRIBUTE_ORDER]);
    for (const name of STEERLM_ATTRIBUTE_ORDER) {
      const a = json.attributes[name];
      expect(a.requested).toEqual([0, 1, 2, 3, 4]);
      expect(a.measured).toHaveLength(5);
      for (const m of a.measured) expect(m).toBeGreaterThanOrEqual(0);
      // null in JSON when the measured means are constant (an untrained model), else a correlation
      expect(a.spearman === null || (a.spearman >= -1 && a.spearman <= 1)).toBe(true);
    }
    expect(json.seconds).toBeGreaterThan(0);
    expect(json.generations).toBe(9 * 5);
    expect(existsSync(join(tmp.path, "model.gguf"))).toBe(true);
    expect(existsSync(join(tmp.path, "run", "loss.png"))).toBe(true);
    const table = formatDemoReport(report);
    expect(table).toMatch(/^attribute\s+req 0\s+req 1\s+req 2\s+req 3\s+req 4\s+spearman/m);
    expect(table).toMatch(/^verbosity\s/m);
    expect(table).toContain("[humor=4]");
  }, 120_000);
});
