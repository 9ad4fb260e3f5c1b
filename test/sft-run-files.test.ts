import { appendFileSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latestCheckpoint, readCheckpoint } from "../src/run/checkpoint.js";
import { runCli, tempDir } from "./helpers.js";
import { tinySftArgs, tinySftInputs } from "./sft-helpers.js";

// A run directory's files as a kill or a user leaves them, through the real CLI: `sft --resume` repairs what
// a kill can tear, and refuses, naming the file, what it cannot trust.
const tmp = tempDir("steerlm-run-files-");
let inputs: ReturnType<typeof tinySftInputs>;
const run = join(tmp.path, "run");

beforeAll(async () => {
  inputs = tinySftInputs(tmp.path);
  const r = await runCli(tinySftArgs(inputs, run, ["--steps", "10", "--checkpoint-every", "5"]));
  expect(r.code, r.stderr).toBe(0);
}, 120_000);
afterAll(() => tmp.cleanup());

describe("sft --resume and the run directory's files", () => {
  it("a torn metrics.jsonl does not block a resume: the torn line is dropped and the file written whole", async () => {
    const metrics = join(run, "metrics.jsonl");
    const whole = readFileSync(metrics, "utf8");
    truncateSync(metrics, whole.length - 10);
    const r = await runCli(["sft", "--resume", "-o", run]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`${metrics}:10: the last line is cut off`);
    expect(readFileSync(metrics, "utf8")).toBe(whole.split("\n").slice(0, 9).join("\n") + "\n");
    expect(readCheckpoint(latestCheckpoint(run) as string).header.step).toBe(10);
  });

  it("refuses to resume when the training or validation data changed, naming the file and what changed", async () => {
    const resume = () => runCli(["sft", "--resume", "-o", run]);
    for (const [file, setting] of [
      [inputs.train, "--data"],
      [inputs.val, "--val"],
    ] as const) {
      const original = readFileSync(file);
      appendFileSync(file, original.subarray(0, original.indexOf(10) + 1));
      const longer = await resume();
      expect(longer.code, longer.stderr).toBe(1);
      expect(longer.stderr).toContain(
        `steerlm: ${file}: ${setting}: changed since the run started: ${original.length + original.indexOf(10) + 1} bytes, ${original.length} then`,
      );
      expect(longer.stderr).toContain("hint: restore the file the run started with");
      const flipped = Buffer.from(original);
      flipped[10] = (flipped[10] as number) ^ 0x01;
      writeFileSync(file, flipped);
      const edited = await resume();
      expect(edited.code, edited.stderr).toBe(1);
      expect(edited.stderr).toContain(
        `steerlm: ${file}: ${setting}: changed since the run started: the same size`,
      );
      writeFileSync(file, original);
    }
    const restored = await resume();
    expect(restored.code, restored.stderr).toBe(0);
  });
});
