/**
 * LoRA adapters as llama.cpp adapter GGUFs: node-llama-cpp applies the adapter to the untouched base GGUF
 * (its `lora` context option), and the adapted model must match steerlm's own forward pass with the same
 * adapter, both in next-token log-probabilities and in its greedy continuation.
 */
import { join } from "node:path";
import type { ControlledEvaluateInputItem, Token } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import { Backend } from "../src/ggml/backend.js";
import { loadLlamaModel } from "../src/gguf/llama-cpp.js";
import { readGguf } from "../src/gguf/reader.js";
import { writeLoraAdapterGguf } from "../src/interop/lora-gguf.js";
import { resolveLlamaConfig } from "../src/model/config.js";
import { forwardLogits, logSoftmaxRows } from "../src/model/infer.js";
import { writeLlamaGguf } from "../src/model/llama-gguf.js";
import { type LoraOptions, loraNames } from "../src/model/lora.js";
import { LlamaModel } from "../src/model/model.js";
import { initLlamaWeights, llamaTensorSpecs, mapSource } from "../src/model/weights.js";
import { trainByteLevelBpe } from "../src/tokenizer/bpe-train.js";
import { HfTokenizer } from "../src/tokenizer/hf.js";
import { toGgufVocab } from "../src/tokenizer/to-gguf.js";
import { Rng } from "../src/util/rng.js";
import { tempDir } from "./helpers.js";

const tmp = tempDir("steerlm-interop-lora-");
afterAll(() => tmp.cleanup());

const TEXT = "LoRA adapters steer a frozen base: helpfulness 4, verbosity 2. Adapters are small.";

describe("LoRA adapter GGUF", () => {
  it.each([
    ["llama", false],
    ["qwen2", true],
  ] as const)(
    "%s: node-llama-cpp applies it to the base and matches steerlm's forward with the adapter",
    async (arch, qwen) => {
      const tokenizer = new HfTokenizer(
        trainByteLevelBpe([TEXT, TEXT.toLowerCase(), TEXT.toUpperCase()], { vocabSize: 300 }),
      );
      const config = resolveLlamaConfig({
        vocabSize: 300,
        hiddenSize: 32,
        numLayers: 2,
        numHeads: 4,
        numKvHeads: 2,
        ffnSize: 48,
        qkvBias: qwen,
        tiedEmbeddings: qwen,
      });
      const rng = new Rng(7);
      const base = initLlamaWeights(config, rng, 0.3);
      const basePath = join(tmp.path, `${arch}-base.gguf`);
      await writeLlamaGguf(basePath, { config, vocab: toGgufVocab(tokenizer), weights: base, type: "F32" });

      const lora: LoraOptions = { rank: 4, alpha: 8, targets: ["q", "k", "v", "o", "gate", "up", "down"] };
      const shapes = new Map(llamaTensorSpecs(config).map((s) => [s.name, s.shape]));
      const adapter = new Map<string, Float32Array>();
      for (let l = 0; l < config.numLayers; l++) {
        for (const t of lora.targets) {
          const n = loraNames(l, t);
          const [inDim, outDim] = shapes.get(n.a.replace(/\.lora_a$/, ".weight")) as [number, number];
          adapter.set(n.a, rng.normalArray(inDim * lora.rank, 0.3));
          adapter.set(n.b, rng.normalArray(lora.rank * outDim, 0.3));
        }
      }
      const adapterPath = join(tmp.path, `${arch}-adapter.gguf`);
      await writeLoraAdapterGguf(adapterPath, { config, arch, lora, tensors: adapter });
      const file = await readGguf(adapterPath);
      expect(file.metadata.get("general.type")?.value).toBe("adapter");
      expect(file.tensors.find((t) => t.name === "blk.1.ffn_down.weight.lora_b")?.shape).toEqual([4, 32]);

      // Ours: the base plus the same adapter, alpha / r scaling, the RoPE of the architecture the config is
      // written as (LlamaModel.create's default, which runs use).
      const backend = new Backend(2);
      const model = await LlamaModel.create(backend, config, mapSource(new Map([...base, ...adapter])), {
        lora,
        trainBase: false,
        frozenType: "f32",
      });
      const V = config.vocabSize;
      const prompt = tokenizer.encode(TEXT).slice(0, 20);
      const ours = logSoftmaxRows(forwardLogits(backend, model, prompt), V);
      const ourGreedy: number[] = [];
      for (let i = 0; i < 8; i++) {
        const ids = [...prompt, ...ourGreedy];
        const last = logSoftmaxRows(forwardLogits(backend, model, ids), V).subarray((ids.length - 1) * V);
        let best = 0;
        for (let v = 1; v < V; v++) if ((last[v] as number) > (last[best] as number)) best = v;
        ourGreedy.push(best);
      }
      model.free();
      backend.free();

      const m = (await loadLlamaModel(basePath)).model;
      try {
        const run = async (withAdapter: boolean) => {
          const ctx = await m.createContext({
            contextSize: 64,
            threads: 2,
            flashAttention: false,
            experimentalKvCacheKeyType: "F32",
            experimentalKvCacheValueType: "F32",
            ...(withAdapter ? { lora: { adapters: [{ filePath: adapterPath }] } } : {}),
          });
          try {
            const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
            const input: ControlledEvaluateInputItem[] = prompt.map((t) => [
              t as Token,
              { generateNext: { probabilities: true, options: sampling } },
            ]);
            const seq = ctx.getSequence();
            const res = await seq.controlledEvaluate(input);
            let maxDiff = 0;
            res.forEach((r, t) => {
              for (const [tok, p] of r?.next.probabilities ?? new Map<number, number>()) {
                if (p >= 2 ** -126)
                  maxDiff = Math.max(maxDiff, Math.abs(Math.log(p) - (ours[t * V + tok] as number)));
              }
            });
            const greedy: number[] = [];
            await seq.clearHistory();
            for await (const tok of seq.evaluate(prompt as Token[], { temperature: 0 })) {
              greedy.push(tok);
              if (greedy.length === 8) break;
            }
            return { maxDiff, greedy };
          } finally {
            await ctx.dispose();
          }
        };
        const adapted = await run(true);
        const plain = await run(false);
        console.log(
          `LoRA adapter (${arch}): max |Δ log p| = ${adapted.maxDiff.toExponential(2)} (base alone: ${plain.maxDiff.toFixed(2)})`,
        );
        expect(adapted.maxDiff).toBeLessThanOrEqual(1e-3);
        // The adapter changes the model: the base alone is far from our adapted forward.
        expect(plain.maxDiff).toBeGreaterThan(0.1);
        expect(adapted.greedy).toEqual(ourGreedy);
      } finally {
        await m.dispose();
      }
    },
  );
});
