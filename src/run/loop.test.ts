import { afterAll, describe, expect, it, vi } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { tinySftInputs } from "../../test/sft-helpers.js";
import { Backend } from "../ggml/backend.js";
import { LlamaModel } from "../model/model.js";
import { HfTokenizer } from "../tokenizer/hf.js";
import { Trainer } from "../train/trainer.js";
import { resolveSftConfig } from "./config.js";
import { Batcher } from "./data.js";
import { runSft, type SftObjective } from "./sft.js";

const tmp = tempDir("steerlm-loop-");
afterAll(() => tmp.cleanup());

describe("runTraining", () => {
  it("frees the trainer, model, backend and tokenizer when a run fails mid-loop", async () => {
    const inputs = tinySftInputs(tmp.path, 20);
    const freed = [
      vi.spyOn(Trainer.prototype, "free"),
      vi.spyOn(LlamaModel.prototype, "free"),
      vi.spyOn(Backend.prototype, "free"),
      vi.spyOn(HfTokenizer.prototype, "dispose"),
    ];
    let calls = 0;
    // plain SFT's batches; the second micro-batch fails, as a native error or a bad batch would
    const failing: SftObjective = {
      name: "failing",
      batches: (train, cfg, padId) => new Batcher(train.examples, cfg.batchSize, cfg.seqLen, cfg.seed, padId),
      weigh: () => {
        if (++calls === 2) throw new Error("the second batch is bad");
        return {};
      },
    };
    const resolved = resolveSftConfig({
      data: inputs.train,
      init: inputs.init,
      output: `${tmp.path}/run`,
      tokenizerVocabSize: 320,
      seqLen: 128,
      batchSize: 2,
      steps: 4,
      threads: 1,
    });
    await expect(runSft(resolved, { objective: failing, progress: false })).rejects.toThrow(
      "the second batch is bad",
    );
    expect(calls).toBe(2);
    for (const spy of freed) expect(spy).toHaveBeenCalledTimes(1);
    for (const spy of freed) spy.mockRestore();
  });
});
