import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SteerableModel } from "../src/inference/model.js";
import { readCheckpoint } from "../src/run/checkpoint.js";
import { haveSharedData, runCli, sharedData, tempDir } from "./helpers.js";
import { writeHfModelDir } from "./hf-fixture.js";
import { tinySftInputs } from "./sft-helpers.js";

// A Hugging Face directory (safetensors + config.json + GPT-2's tokenizer.json) as the model: converted to
// GGUF in the run directory, given the control tokens, LoRA-trained, exported as a steerable GGUF.
describe.skipIf(!haveSharedData)("steerlm sft --model <Hugging Face directory>", () => {
  const tmp = tempDir("steerlm-sfthf-");
  afterAll(() => tmp.cleanup());

  it("converts, trains LoRA adapters and exports a model node-llama-cpp steers", async () => {
    const hf = join(tmp.path, "hf");
    mkdirSync(hf);
    writeHfModelDir(hf, {
      architecture: "LlamaForCausalLM",
      vocabSize: 50257,
      hidden: 16,
      layers: 1,
      heads: 4,
      kvHeads: 2,
      ffn: 40,
      ropeTheta: 10000,
      rmsNormEps: 1e-5,
      tied: true,
      dtype: "F32",
      shards: 1,
      seed: 3,
      tokenizerJson: sharedData("tokenizers", "gpt2", "tokenizer.json"),
    });
    const inputs = tinySftInputs(tmp.path, 30);
    const run = join(tmp.path, "run");
    const r = await runCli([
      "sft",
      "--data",
      inputs.train,
      "--model",
      hf,
      "--lora",
      "--lora-rank",
      "2",
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
    expect(r.stderr).toContain("converted the Hugging Face model to");
    expect(r.stderr).toMatch(
      /the vocabulary lacks <extra_id_0>, <extra_id_1>, <extra_id_2>; added as control tokens/,
    );
    expect(readCheckpoint(join(run, "checkpoints", "step-000002.ckpt")).header.model.vocabSize).toBe(
      50257 + 3,
    );
    const out = join(tmp.path, "model.gguf");
    expect((await runCli(["export", "gguf", run, "-o", out])).code).toBe(0);
    const model = await SteerableModel.load({ modelPath: out });
    try {
      expect(model.controlMode).toBe("tokens");
      const g = await model.generate({
        messages: [{ role: "user", content: "Hi <extra_id_2>humor:4" }],
        maxTokens: 3,
      });
      expect(g.prompt.controlTokens).toBe(4);
    } finally {
      await model.dispose();
    }
  }, 120_000);
});
