import { describe, expect, it } from "vitest";
import { plainAdam } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import { Trainer } from "../train/trainer.js";
import { resolveLlamaConfig } from "./config.js";
import { LlamaModel } from "./model.js";

const cfg = resolveLlamaConfig({ vocabSize: 16, hiddenSize: 16, numLayers: 1, numHeads: 2, ffnSize: 24 });

describe("LlamaModel and Trainer hold native memory", () => {
  it("`using` frees them; a second free does nothing; a freed model throws when used", async () => {
    using backend = new Backend(1);
    let kept: LlamaModel | undefined;
    {
      using model = await LlamaModel.create(backend, cfg, null, { seed: 1 });
      using trainer = new Trainer(backend, model, {
        batchSize: 1,
        seqLen: 4,
        optimizer: plainAdam({ lr: 1e-3 }),
      });
      const tokens = Int32Array.of(1, 2, 3, 4);
      expect(Number.isFinite(trainer.trainStep({ tokens, labels: tokens }).loss)).toBe(true);
      trainer.free(); // and again when the scope ends
      kept = model;
    }
    const model = kept as LlamaModel;
    model.free();
    expect(() => model.getWeight("token_embd.weight")).toThrow(
      "ggml tensor token_embd.weight used after its context was freed",
    );
  });
});
