import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveSftConfig } from "../src/run/config.js";
import { runSft } from "../src/run/sft.js";
import { tempDir } from "./helpers.js";
import { tinySftInputs } from "./sft-helpers.js";

// The demo's time budget: a run planned far too long ends on time, and its cosine schedule still
// reaches its floor on the last step (the end moved, the shape did not break). The budget reads a clock
// the test drives (20 ms a read), so the machine's load cannot change the outcome.
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
    let ms = 0;
    const clock = (): number => {
      ms += 20;
      return ms;
    };
    const r = await runSft(resolved, { progress: false, timeBudgetSeconds: 3, clock });
    expect(r.step).toBeGreaterThan(10);
    expect(r.step).toBeLessThan(1_000_000);
    expect(r.totalSteps).toBe(r.step);
    // The loop started at the first read (20 ms) and ended within a step or two of 3 s.
    expect(ms - 20).toBeGreaterThan(3000 - 3 * 20);
    expect(ms - 20).toBeLessThanOrEqual(3000 + 3 * 20);
    const metrics = readFileSync(join(tmp.path, "run", "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(metrics.at(-1).lr).toBeCloseTo(0.0002, 6);
  }, 60_000);
});
