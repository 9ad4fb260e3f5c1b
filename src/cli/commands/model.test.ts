import { describe, expect, it } from "vitest";
import { haveSharedData, runCli, sharedData } from "../../../test/helpers.js";

describe.skipIf(!haveSharedData)("steerlm model check", () => {
  const tiny = sharedData("gguf", "llama-2-tiny-random.gguf");

  it("passes on llama-2-tiny-random.gguf and prints the difference and top-1 agreement", async () => {
    const r = await runCli(["model", "check", tiny, "--json", "--threads", "1"]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { maxAbsLogProbDiff: number; top1Agreement: number; pass: boolean };
    expect(out.pass).toBe(true);
    expect(out.maxAbsLogProbDiff).toBeLessThanOrEqual(1e-3);
    expect(out.top1Agreement).toBe(1);
  });

  it("exits non-zero above the tolerance", async () => {
    const r = await runCli(["model", "check", tiny, "--tolerance", "1e-12", "--threads", "1"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("FAIL");
  });

  it("names a missing file", async () => {
    const r = await runCli(["model", "check", "missing.gguf"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("missing.gguf: no such file");
  });
});
