import { copyFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SteerableModel } from "../src/inference/model.js";
import { readCheckpoint } from "../src/run/checkpoint.js";
import { haveSharedData, runCli, sharedData, tempDir } from "./helpers.js";
import { tinySftInputs } from "./sft-helpers.js";

// A plain llama.cpp GGUF (Llama-2 SentencePiece vocabulary, no <extra_id_*>): the run adds the control
// tokens with mean-embedding rows, trains LoRA on it, and the export is a steerable GGUF.
describe.skipIf(!haveSharedData)("steerlm sft --model <plain Llama GGUF> --lora", () => {
  const tmp = tempDir("steerlm-ggufbase-");
  afterAll(() => tmp.cleanup());

  it("adds the control tokens, trains adapters, exports a model with single-token controls", async () => {
    const inputs = tinySftInputs(tmp.path, 30);
    const run = join(tmp.path, "run");
    const base = sharedData("gguf", "llama-2-tiny-random.gguf");
    const r = await runCli([
      "sft",
      "--data",
      inputs.train,
      "--model",
      base,
      "--lora",
      "--lora-rank",
      "4",
      "--seq-len",
      "96",
      "--batch-size",
      "2",
      "--steps",
      "2",
      "--threads",
      "1",
      "-o",
      run,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /the vocabulary lacks <extra_id_0>, <extra_id_1>, <extra_id_2>; added as control tokens/,
    );
    const ck = readCheckpoint(join(run, "checkpoints", "step-000002.ckpt"));
    // the prepared base lives in the run, named relative to it: the run can move (another disk, machine)
    expect(ck.header.baseModel).toBe("base.gguf");
    expect(ck.header.baseSha256).toBeNull();
    const moved = join(tmp.path, "moved-run");
    renameSync(run, moved);
    const out = join(tmp.path, "model.gguf");
    const exported = await runCli(["export", "gguf", moved, "-o", out]);
    expect(exported.code, exported.stderr).toBe(0);
    const model = await SteerableModel.load({ modelPath: out });
    try {
      expect(model.controlMode).toBe("tokens");
      const g = await model.generate({ messages: [{ role: "user", content: "Hi" }], maxTokens: 4 });
      expect(g.prompt.controlTokens).toBe(4); // <extra_id_0>, two <extra_id_1>, <extra_id_2>
    } finally {
      await model.dispose();
    }
  }, 120_000);

  it("refuses to export or resume a run whose base outside the run directory was replaced", async () => {
    const inputs = tinySftInputs(tmp.path, 30);
    // a base that already has the control tokens is used where it is, not copied into the run
    const base = join(tmp.path, "base-with-controls.gguf");
    copyFileSync(join(tmp.path, "model.gguf"), base);
    const run = join(tmp.path, "run-external");
    const flags = ["--data", inputs.train, "--model", base, "--lora", "--lora-rank", "4", "--seq-len", "96"];
    const more = ["--batch-size", "2", "--threads", "1", "-o", run];
    const r = await runCli(["sft", ...flags, "--steps", "2", ...more]);
    expect(r.code, r.stderr).toBe(0);
    const ck = readCheckpoint(join(run, "checkpoints", "step-000002.ckpt"));
    expect(ck.header.baseModel).toBe(base);
    expect(ck.header.baseSha256).toMatch(/^[0-9a-f]{64}$/);
    expect((await runCli(["export", "gguf", run, "--lora", "-o", join(tmp.path, "a.gguf")])).code).toBe(0);

    // same path, other weights (the plain Llama GGUF): the adapters would be merged into the wrong base
    const elsewhere = join(tmp.path, "moved-base.gguf");
    copyFileSync(base, elsewhere);
    copyFileSync(sharedData("gguf", "llama-2-tiny-random.gguf"), base);
    const refused = await runCli(["export", "gguf", run, "-o", join(tmp.path, "b.gguf")]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${base}: baseModel: is not the base the run started from`);
    const resumed = await runCli(["sft", "--resume", ...flags, "--steps", "2", ...more]);
    expect(resumed.code).toBe(1);
    expect(resumed.stderr).toContain(`${base}: baseModel: is not the base the run started from`);
    // the right base where it is now: exported, checked by its SHA-256; the wrong one given is refused too
    const found = await runCli([
      "export",
      "gguf",
      run,
      "--base-gguf",
      elsewhere,
      "-o",
      join(tmp.path, "c.gguf"),
    ]);
    expect(found.code, found.stderr).toBe(0);
    const adapter = await runCli([
      "export",
      "gguf",
      run,
      "--lora",
      "--base-gguf",
      elsewhere,
      "-o",
      join(tmp.path, "c-lora.gguf"),
    ]);
    expect(adapter.code, adapter.stderr).toBe(0);
    expect(adapter.stderr).toContain(`base: ${elsewhere}`);
    const wrong = await runCli(["export", "hf", run, "--base-gguf", base, "-o", join(tmp.path, "c-hf")]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`${base}: baseModel: is not the base the run started from`);
    expect(wrong.stderr).toContain("--base-gguf");
    const inRun = await runCli([
      "export",
      "gguf",
      join(tmp.path, "moved-run"),
      "--base-gguf",
      elsewhere,
      "-o",
      join(tmp.path, "d.gguf"),
    ]);
    expect(inRun.code).toBe(1);
    expect(inRun.stderr).toContain("--base-gguf: the run keeps its base in its own directory");
  }, 120_000);
});
