/**
 * Pre-tokenizers of the imported families: a tokenizer.json with GPT-2's vocabulary and each family's
 * pre_tokenizer (as their tokenizer.json files spell it) must tokenize in llama.cpp, after conversion,
 * exactly as the Hugging Face tokenizer does, on llama.cpp's own test strings for that pre-tokenizer.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadLlamaModel } from "../src/gguf/llama-cpp.js";
import { readGguf } from "../src/gguf/reader.js";
import { convertHfToGguf } from "../src/interop/convert.js";
import { readVocabTests } from "../src/tokenizer/conformance.js";
import { loadHfTokenizer } from "../src/tokenizer/hf.js";
import { LLAMA3_SPLIT_REGEX, QWEN2_SPLIT_REGEX } from "../src/tokenizer/pre-tokenizer.js";
import { haveSharedData, sharedData, tempDir } from "./helpers.js";
import { writeHfModelDir } from "./hf-fixture.js";

const tmp = tempDir("steerlm-interop-vocab-");
afterAll(() => tmp.cleanup());

const split = (regex: string) => ({
  type: "Sequence",
  pretokenizers: [
    { type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
  ],
});

const VARIANTS: Array<{
  pre: string;
  preTokenizer: unknown;
  ignoreMerges: boolean;
  cases: string;
  knownDifferences: string[];
}> = [
  {
    pre: "smollm",
    preTokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Digits", individual_digits: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    ignoreMerges: false,
    cases: "gpt-2",
    // "½" is a number (\p{N}) to llama.cpp's smollm regex, which splits it off; @huggingface/tokenizers'
    // Digits splits ASCII digits only and keeps " ½" whole. Known, reported; every other string agrees.
    knownDifferences: ["ied 4 ½ months"],
  },
  {
    pre: "llama-bpe",
    preTokenizer: split(LLAMA3_SPLIT_REGEX),
    ignoreMerges: true,
    cases: "llama-bpe",
    knownDifferences: [],
  },
  {
    pre: "qwen2",
    preTokenizer: split(QWEN2_SPLIT_REGEX),
    ignoreMerges: false,
    cases: "qwen2",
    knownDifferences: [],
  },
];

describe.skipIf(!haveSharedData)("family pre-tokenizers through GGUF into llama.cpp", () => {
  for (const v of VARIANTS) {
    it(`${v.pre}: llama.cpp ids = HF ids on ggml-vocab-${v.cases} test strings`, async () => {
      const dir = join(tmp.path, v.pre);
      mkdirSync(dir);
      const gpt2 = JSON.parse(readFileSync(sharedData("tokenizers", "gpt2", "tokenizer.json"), "utf8"));
      gpt2.pre_tokenizer = v.preTokenizer;
      gpt2.model.ignore_merges = v.ignoreMerges;
      const tokJson = join(tmp.path, `${v.pre}-tokenizer.json`);
      writeFileSync(tokJson, JSON.stringify(gpt2));
      writeHfModelDir(dir, {
        architecture: "LlamaForCausalLM",
        vocabSize: 50257,
        hidden: 8,
        layers: 1,
        heads: 2,
        kvHeads: 2,
        ffn: 8,
        ropeTheta: 10000,
        rmsNormEps: 1e-5,
        tied: true,
        dtype: "F32",
        shards: 1,
        seed: 2,
        tokenizerJson: tokJson,
      });
      const out = join(dir, "m.gguf");
      await convertHfToGguf(dir, out, { type: "f32" });
      expect((await readGguf(out)).metadata.get("tokenizer.ggml.pre")?.value).toBe(v.pre);
      const hf = loadHfTokenizer(join(dir, "tokenizer.json"));
      const cases = readVocabTests(
        sharedData("llama-cpp-vocab", `ggml-vocab-${v.cases}.gguf.inp`),
        sharedData("llama-cpp-vocab", `ggml-vocab-${v.cases}.gguf.out`),
      ).map((c) => c.input);
      const model = (await loadLlamaModel(out)).model;
      try {
        const failures = cases.filter(
          (text) =>
            JSON.stringify(Array.from(model.tokenize(text, false))) !== JSON.stringify(hf.encode(text)),
        );
        console.log(`${v.pre}: ${cases.length - failures.length}/${cases.length} strings identical`);
        expect(failures).toEqual(v.knownDifferences);
      } finally {
        await model.dispose();
      }
    });
  }

  it("refuses a pre-tokenizer llama.cpp has no exact equivalent for", async () => {
    const dir = join(tmp.path, "other");
    mkdirSync(dir);
    const gpt2 = JSON.parse(readFileSync(sharedData("tokenizers", "gpt2", "tokenizer.json"), "utf8"));
    gpt2.pre_tokenizer = split("\\p{L}+|\\s+");
    const tokJson = join(tmp.path, "other-tokenizer.json");
    writeFileSync(tokJson, JSON.stringify(gpt2));
    writeHfModelDir(dir, {
      architecture: "LlamaForCausalLM",
      vocabSize: 50257,
      hidden: 8,
      layers: 1,
      heads: 2,
      kvHeads: 2,
      ffn: 8,
      ropeTheta: 10000,
      rmsNormEps: 1e-5,
      tied: true,
      dtype: "F32",
      shards: 1,
      seed: 2,
      tokenizerJson: tokJson,
    });
    await expect(convertHfToGguf(dir, join(dir, "m.gguf"))).rejects.toThrow(
      /tokenizer\.json: no llama\.cpp pre-tokenizer is known to match this pre_tokenizer/,
    );
  });
});
