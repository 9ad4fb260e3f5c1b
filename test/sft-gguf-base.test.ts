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
    expect(ck.header.baseModel).toBe(join(run, "base.gguf"));
    const out = join(tmp.path, "model.gguf");
    expect((await runCli(["export", "gguf", run, "-o", out])).code).toBe(0);
    const model = await SteerableModel.load({ modelPath: out });
    try {
      expect(model.controlMode).toBe("tokens");
      const g = await model.generate({ messages: [{ role: "user", content: "Hi" }], maxTokens: 4 });
      expect(g.prompt.controlTokens).toBe(4); // <extra_id_0>, two <extra_id_1>, <extra_id_2>
    } finally {
      await model.dispose();
    }
  }, 120_000);
});
