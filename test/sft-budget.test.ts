import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveSftConfig } from "../src/run/config.js";
import { runSft } from "../src/run/sft.js";
import { tempDir } from "./helpers.js";
import { tinySftInputs } from "./sft-helpers.js";

// The demo's time budget: a run planned far too long ends on time, and its cosine schedule still
// reaches its floor on the last step (the end moved, the shape did not break).
describe("runSft with a time budget", () => {
  const tmp = tempDir("steerlm-budget-");
  afterAll(() => tmp.cleanup());

  it("ends within the budget with the learning rate at its floor", async () => {
    const inputs = tinySftInputs(tmp.path);
    const resolved = resolveSftConfig({
      data: inputs.train,
      init: inputs.init,
      output: join(tmp.path, "run"),
      tokenizerVocabSize: 320,
      seqLen: 128,
      batchSize: 4,
      steps: 1_000_000,
      lr: 0.002,
      warmupSteps: 5,
      minLrRatio: 0.1,
      evalEvery: 0,
      checkpointEvery: 0,
      threads: 1,
    });
    const t0 = performance.now();
    const r = await runSft(resolved, { progress: false, timeBudgetSeconds: 3 });
    const wall = (performance.now() - t0) / 1000;
    expect(r.step).toBeGreaterThan(10);
    expect(r.step).toBeLessThan(1_000_000);
    expect(r.totalSteps).toBe(r.step);
    expect(wall).toBeLessThan(3 + 8); // setup (tokenizer, data, graphs) is outside the budget
    const metrics = readFileSync(join(tmp.path, "run", "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(metrics.at(-1).lr).toBeCloseTo(0.0002, 6);
  }, 60_000);
});
