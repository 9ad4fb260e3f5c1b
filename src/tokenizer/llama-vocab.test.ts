import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { haveSharedData, sharedData } from "../../test/helpers.js";
import { readGguf } from "../gguf/reader.js";
import { readGgufVocab } from "../gguf/vocab.js";
import { readVocabTests, runConformance } from "./conformance.js";
import { type GgufTokenizer, loadGgufTokenizer } from "./gguf.js";
import { HfTokenizer, loadHfTokenizer } from "./hf.js";
import { toGgufVocab } from "./to-gguf.js";
import { ggufVocabToTokenizerJson } from "./to-hf.js";

/**
 * llama.cpp's tokenizer conformance suite (../shared/data/llama-cpp-vocab): vocab-only GGUFs byte-identical to
 * the llama.cpp release node-llama-cpp bundles, test strings (.inp) and expected ids (.out).
 */
const VOCABS = ["gpt-2", "llama-spm", "phi-3", "llama-bpe", "qwen2"] as const;

function vocabDir() {
  return sharedData("llama-cpp-vocab");
}

describe.skipIf(!haveSharedData)("llama.cpp tokenizer conformance (ggml-vocab-*)", () => {
  const gguf = new Map<string, GgufTokenizer>();

  beforeAll(async () => {
    for (const v of VOCABS) gguf.set(v, await loadGgufTokenizer(join(vocabDir(), `ggml-vocab-${v}.gguf`)));
  }, 60_000);

  afterAll(async () => {
    for (const t of gguf.values()) await t.dispose();
  });

  const cases = (v: string) =>
    readVocabTests(
      join(vocabDir(), `ggml-vocab-${v}.gguf.inp`),
      join(vocabDir(), `ggml-vocab-${v}.gguf.out`),
    );

  for (const v of VOCABS) {
    it(`GGUF path (llama.cpp via node-llama-cpp) matches every case of ggml-vocab-${v}`, () => {
      const result = runConformance(gguf.get(v)!, cases(v));
      process.stderr.write(`conformance gguf ${v}: ${result.matched}/${result.total}\n`);
      expect(result.total).toBe(46);
      expect(result.failures).toEqual([]);
    });
  }

  it("the GPT-2 tokenizer.json (HF path) reproduces ggml-vocab-gpt-2's expected ids", () => {
    const hf = loadHfTokenizer(sharedData("tokenizers", "gpt2", "tokenizer.json"));
    const result = runConformance(hf, cases("gpt-2"));
    process.stderr.write(
      `conformance hf gpt2 tokenizer.json vs ggml-vocab-gpt-2: ${result.matched}/${result.total}\n`,
    );
    expect(result.failures).toEqual([]);
    // Same vocabulary, same ids for every id both know (the GGUF was converted from this tokenizer).
    const g = gguf.get("gpt-2")!;
    expect(hf.vocabSize).toBe(g.vocabSize);
    for (const id of [0, 198, 220, 628, 13, 50255, 50256]) expect(hf.idToPiece(id)).toBe(g.idToPiece(id));
  });

  // llama-bpe and qwen2 ship only as GGUFs; rebuild the tokenizer.json a Llama-3 / Qwen2 checkpoint has
  // (same vocabulary and merges, their published pre-tokenizer layout: what `steerlm export hf` writes for a
  // GGUF) and run the HF path on the suite.
  for (const v of ["llama-bpe", "qwen2"] as const) {
    it(`the HF path with ${v}'s tokenizer.json layout matches every case, and exports back to the same GGUF vocab`, async () => {
      const original = readGgufVocab(await readGguf(join(vocabDir(), `ggml-vocab-${v}.gguf`)));
      const hf = new HfTokenizer(ggufVocabToTokenizerJson(original, v), {}, `${v} tokenizer.json`);
      const result = runConformance(hf, cases(v));
      process.stderr.write(`conformance hf ${v} tokenizer.json: ${result.matched}/${result.total}\n`);
      expect(result.failures).toEqual([]);
      const back = toGgufVocab(hf);
      expect(back.pre).toBe(original.pre);
      expect(back.tokens).toEqual(original.tokens);
      expect(back.merges).toEqual(original.merges);
      expect(back.addBos).toBe(v === "llama-bpe"); // Llama-3's template processor prepends <|begin_of_text|>
    }, 60_000);
  }

  it("plain text never yields special tokens on the GGUF path", () => {
    const spm = gguf.get("llama-spm")!;
    expect(spm.bosId).toBe(1);
    const ids = spm.encode("<s>hi</s>");
    expect(ids).not.toContain(1);
    expect(ids).not.toContain(2);
    const gpt2 = gguf.get("gpt-2")!;
    expect(gpt2.encode("<|endoftext|>")).not.toContain(50256);
    expect(gpt2.decode(gpt2.encode("a <|endoftext|> b"))).toBe("a <|endoftext|> b");
    // These vocabularies have no SteerLM control tokens: asking for one is a clear error.
    expect(() => spm.encodeControl("<extra_id_1>")).toThrow(/no single token <extra_id_1>/);
    expect(spm.hasControlTokens()).toBe(false);
  });
});
