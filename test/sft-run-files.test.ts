import { appendFileSync, readFileSync, truncateSync } from "node:fs";
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
});
