import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { haveSharedData, plainAdam, sharedData, tempDir } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import { loadLlamaModel } from "../gguf/llama-cpp.js";
import { readGguf } from "../gguf/reader.js";
import { readGgufVocab } from "../gguf/vocab.js";
import { writeLlamaGguf } from "../model/llama-gguf.js";
import { Trainer } from "../train/trainer.js";
import { Rng } from "../util/rng.js";
import { checkModelAgainstLlamaCpp } from "./check.js";
import { type LlamaConfig, resolveLlamaConfig } from "./config.js";
import { forwardLogits } from "./infer.js";
import { LlamaModel } from "./model.js";
import { initLlamaWeights } from "./weights.js";

const tiny = sharedData("gguf", "llama-2-tiny-random.gguf");
const tmp = tempDir("steerlm-engine-");
afterAll(() => tmp.cleanup());

/** The tiny random model's vocabulary and a small Llama shape over it; `over` changes any of the shape. */
async function tinyShape(over: Partial<LlamaConfig>) {
  const vocab = readGgufVocab(await readGguf(tiny));
  const config = resolveLlamaConfig({
    vocabSize: vocab.tokens.length,
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    ffnSize: 96,
    ...over,
  });
  return { vocab, config };
}

async function writeRandom(name: string, over: Partial<LlamaConfig>) {
  const { vocab, config } = await tinyShape(over);
  const path = join(tmp.path, `${name}.gguf`);
  await writeLlamaGguf(path, { config, vocab, weights: initLlamaWeights(config, new Rng(7), 0.08) });
  return path;
}

describe.skipIf(!haveSharedData)("forward pass vs node-llama-cpp's own logits", () => {
  it("llama-2-tiny-random.gguf (F16): max |Δ log p| ≤ 1e-3 and the same top-1 everywhere", async () => {
    const r = await checkModelAgainstLlamaCpp(tiny);
    expect(r.weightType).toBe("f16");
    expect(r.maxAbsLogProbDiff).toBeLessThanOrEqual(1e-3);
    expect(r.top1Agreement).toBe(1);
  });

  it("GQA model written by us (F32, untied)", async () => {
    const r = await checkModelAgainstLlamaCpp(await writeRandom("gqa", { numKvHeads: 2 }));
    expect(r.weightType).toBe("f32");
    expect(r.maxAbsLogProbDiff).toBeLessThanOrEqual(1e-3);
    expect(r.top1Agreement).toBe(1);
  });

  it("Qwen2-style model: q/k/v bias, NEOX RoPE, tied embeddings, GQA", async () => {
    const r = await checkModelAgainstLlamaCpp(
      await writeRandom("qwen2", { numKvHeads: 1, qkvBias: true, tiedEmbeddings: true, rmsNormEps: 1e-6 }),
    );
    expect(r.maxAbsLogProbDiff).toBeLessThanOrEqual(1e-3);
    expect(r.top1Agreement).toBe(1);
  });

  it("a GGUF written after training gives node-llama-cpp our greedy continuation", async () => {
    const { vocab, config } = await tinyShape({ hiddenSize: 32, numKvHeads: 2, ffnSize: 64 });
    const backend = new Backend(1);
    const model = await LlamaModel.create(backend, config, null, { seed: 5 });
    // teach it a short cycle so the continuation is not arbitrary
    const cycle = [450, 4996, 17354, 1701, 29916, 432, 17204];
    const T = 16;
    const tokens = Int32Array.from({ length: T }, (_, i) => cycle[i % cycle.length]!);
    const tr = new Trainer(backend, model, {
      batchSize: 1,
      seqLen: T,
      optimizer: plainAdam({ lr: 1e-2 }),
    });
    for (let i = 0; i < 30; i++) tr.trainStep({ tokens, labels: tokens });
    tr.free();
    const weights = new Map(model.params.map((p) => [p.name, model.getWeight(p.name)]));
    const path = join(tmp.path, "trained.gguf");
    await writeLlamaGguf(path, { config, vocab, weights });
    const prompt = [1, ...cycle.slice(0, 3)];
    const ours = [...prompt];
    for (let i = 0; i < 8; i++) {
      const logits = forwardLogits(backend, model, ours);
      const row = logits.subarray((ours.length - 1) * config.vocabSize);
      let best = 0;
      for (let v = 1; v < config.vocabSize; v++) if (row[v]! > row[best]!) best = v;
      ours.push(best);
    }
    model.free();
    backend.free();

    const ref = (await loadLlamaModel(path)).model;
    const ctx = await ref.createContext({ contextSize: 64 });
    const theirs: number[] = [];
    for await (const t of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
      theirs.push(t);
      if (theirs.length === 8) break;
    }
    await ctx.dispose();
    await ref.dispose();
    expect(theirs).toEqual(ours.slice(prompt.length));
    expect(new Set(theirs).size).toBeGreaterThan(1);
  });
});
