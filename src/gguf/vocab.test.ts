import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { haveSharedData, sharedData, tempDir } from "../../test/helpers.js";
import { resolveLlamaConfig } from "../model/config.js";
import { llamaTensorShapes, writeLlamaGguf } from "../model/llama-gguf.js";
import { readVocabTests } from "../tokenizer/conformance.js";
import { loadLlamaModel } from "./llama-cpp.js";
import { metaString, readGguf, readTensorBytes } from "./reader.js";
import { bool } from "./types.js";
import { ggufAddsBos, readGgufVocab, validateVocab } from "./vocab.js";
import { type GgufTensorInput, writeGguf } from "./writer.js";

/**
 * Real vocab-only GGUFs written by llama.cpp's gguf-py: the conformance suite's files in
 * ../shared/data/llama-cpp-vocab (byte-identical to the llama.cpp release node-llama-cpp bundles).
 */
const VOCABS = ["gpt-2", "llama-spm", "phi-3", "llama-bpe", "qwen2"] as const;
const tmp = tempDir("steerlm-gguf-vocab-");
const vocabPath = (v: string) => sharedData("llama-cpp-vocab", `ggml-vocab-${v}.gguf`);
afterAll(() => tmp.cleanup());

describe.skipIf(!haveSharedData)("llama.cpp's vocab GGUFs (../shared/data/llama-cpp-vocab)", () => {
  it.each(VOCABS)("ggml-vocab-%s.gguf: read, validated, and rewritten byte for byte", async (v) => {
    const p = vocabPath(v);
    const f = await readGguf(p);
    const vocab = readGgufVocab(f);
    validateVocab(vocab, p);
    expect(vocab.model).toBe(v === "llama-spm" || v === "phi-3" ? "llama" : "gpt2");
    if (vocab.model === "gpt2") expect(vocab.pre).toBe(v);
    const tensors: GgufTensorInput[] = [];
    for (const t of f.tensors) {
      tensors.push({ name: t.name, shape: t.shape, type: t.type, data: await readTensorBytes(f, t.name) });
    }
    const out = join(tmp.path, `copy-${v}.gguf`);
    await writeGguf(out, { metadata: [...f.metadata], tensors });
    expect(readFileSync(out).equals(readFileSync(p))).toBe(true);
  });
});

describe.skipIf(!haveSharedData)("ggufAddsBos", () => {
  it("is llama.cpp's choice, for a file without tokenizer.ggml.add_bos_token too", async () => {
    const path = sharedData("gguf", "llama-2-tiny-random.gguf");
    const f = await readGguf(path);
    expect(f.metadata.has("tokenizer.ggml.add_bos_token")).toBe(false);
    const model = (await loadLlamaModel(path, { gpuLayers: 0 })).model;
    try {
      expect(model.tokens.shouldPrependBosToken).toBe(true);
    } finally {
      await model.dispose();
    }
    expect(ggufAddsBos(f)).toBe(true); // SPM: llama.cpp's default
    const metadata = new Map(f.metadata).set("tokenizer.ggml.add_bos_token", bool(false));
    expect(ggufAddsBos({ ...f, metadata })).toBe(false);
  });
});

/**
 * The strongest check of the tokenizer metadata we write: a tiny model carrying a real vocabulary, written
 * by writeLlamaGguf, must tokenize llama.cpp's whole conformance suite exactly as expected.
 */
describe.skipIf(!haveSharedData)(
  "writeLlamaGguf with a real vocabulary tokenizes llama.cpp's suite exactly",
  () => {
    it.each(["llama-spm", "llama-bpe", "qwen2"] as const)("%s", async (v) => {
      const vocab = readGgufVocab(await readGguf(vocabPath(v)));
      const qwen = v === "qwen2";
      const config = resolveLlamaConfig({
        vocabSize: vocab.tokens.length,
        hiddenSize: 32,
        numLayers: 1,
        numHeads: 2,
        ffnSize: 32,
        qkvBias: qwen,
        tiedEmbeddings: true,
        contextLength: 256,
      });
      const weights = new Map(
        llamaTensorShapes(config).map(({ name, shape }) => [
          name,
          new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(name.endsWith("norm.weight") ? 1 : 0.01),
        ]),
      );
      const path = join(tmp.path, `model-${v}.gguf`);
      await writeLlamaGguf(path, { config, vocab, weights, type: "F16" });
      expect(metaString(await readGguf(path), "general.architecture")).toBe(qwen ? "qwen2" : "llama");

      const cases = readVocabTests(
        sharedData("llama-cpp-vocab", `ggml-vocab-${v}.gguf.inp`),
        sharedData("llama-cpp-vocab", `ggml-vocab-${v}.gguf.out`),
      );
      expect(cases.length).toBe(46);
      const model = (await loadLlamaModel(path, { gpuLayers: 0 })).model;
      try {
        const failures = cases.filter((c) => {
          const ids = Array.from(model.tokenize(c.input, false), Number);
          return JSON.stringify(ids) !== JSON.stringify(c.expected);
        });
        expect(failures.map((c) => c.input)).toEqual([]);
      } finally {
        await model.dispose();
      }
    });
  },
);
