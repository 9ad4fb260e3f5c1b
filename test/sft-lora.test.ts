import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCheckpoint } from "../src/run/checkpoint.js";
import { runCli, tempDir } from "./helpers.js";
import { tinyLoraFlags, tinyRunFlags, tinySftArgs, tinySftInputs } from "./sft-helpers.js";

// LoRA on a GGUF base: only adapters are trained, and export merges them (W + alpha/r · B·A). The oracle for
// the merge is the model itself: the merged GGUF, loaded as a plain model, must give the validation loss
// the adapted model had (a step at lr 0 leaves its weights untouched).
describe("steerlm sft --model base.gguf --lora", () => {
  const tmp = tempDir("steerlm-lora-");
  let inputs: ReturnType<typeof tinySftInputs>;
  const base = join(tmp.path, "base.gguf");
  afterAll(() => tmp.cleanup());

  beforeAll(async () => {
    inputs = tinySftInputs(tmp.path);
    const r = await runCli(tinySftArgs(inputs, join(tmp.path, "base"), ["--steps", "4"]));
    expect(r.code, r.stderr).toBe(0);
    expect((await runCli(["export", "gguf", join(tmp.path, "base"), "-o", base])).code).toBe(0);
  }, 120_000);

  it("trains only the adapters, and the merged export reproduces the adapted model's loss", async () => {
    const common = tinyRunFlags(inputs);
    const adRun = join(tmp.path, "adapted");
    const ad = await runCli([
      "sft",
      ...common,
      "--model",
      base,
      ...tinyLoraFlags("q,v,up"),
      "--lr",
      "0.01",
      "--warmup-steps",
      "1",
      "--steps",
      "6",
      "-o",
      adRun,
    ]);
    expect(ad.code, ad.stderr).toBe(0);
    const ck = readCheckpoint(join(adRun, "checkpoints", "step-000006.ckpt"));
    expect([...ck.weights.keys()].every((n) => /\.lora_[ab]$/.test(n))).toBe(true);
    expect(ck.weights.size).toBe(2 * 3);
    expect(ck.header.baseModel).toBe(base);
    // B starts at zero; after training it is not, so the merge changes the model
    expect(ck.weights.get("blk.0.attn_q.lora_b")?.some((x) => x !== 0)).toBe(true);

    const merged = join(tmp.path, "merged.gguf");
    expect((await runCli(["export", "gguf", adRun, "-o", merged])).code).toBe(0);
    const check = await runCli([
      "sft",
      ...common,
      "--model",
      merged,
      "--lr",
      "0",
      "--steps",
      "1",
      "-o",
      join(tmp.path, "check"),
    ]);
    expect(check.code, check.stderr).toBe(0);
    const before = JSON.parse(ad.stdout).valLoss as number;
    const after = JSON.parse(check.stdout).valLoss as number;
    expect(Math.abs(after - before)).toBeLessThan(1e-4);
    const unadapted = await runCli([
      "sft",
      ...common,
      "--model",
      base,
      "--lr",
      "0",
      "--steps",
      "1",
      "-o",
      join(tmp.path, "check0"),
    ]);
    expect(Math.abs((JSON.parse(unadapted.stdout).valLoss as number) - before)).toBeGreaterThan(1e-3);
  }, 120_000);
});
