import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { haveSharedData, sharedData, tempDir } from "../../test/helpers.js";
import { renderConversation } from "../data/template.js";
import { loadLlamaModel } from "../gguf/llama-cpp.js";
import { readGguf, readTensorF32 } from "../gguf/reader.js";
import { GGUF_TOKEN_TYPE, readGgufVocab } from "../gguf/vocab.js";
import { llamaTensorShapes, readLlamaConfig, writeLlamaGguf } from "../model/llama-gguf.js";
import { addControlTokensToGgufVocab, extendEmbeddingRows } from "./control.js";
import { type GgufTokenizer, loadGgufTokenizer } from "./gguf.js";
import { CONTROL_TOKEN_NAMES, encodeParts, encodePartsWithLoss } from "./types.js";

/**
 * A real Llama-2 GGUF (SentencePiece vocabulary of 32000, no SteerLM tokens) gets the three control tokens:
 * vocabulary + embedding and output rows (mean-initialised), written back as a GGUF that llama.cpp loads,
 * tokenizes exactly as before for plain text, and runs.
 */
describe.skipIf(!haveSharedData)("control tokens added to an existing GGUF model (Llama-2 SPM)", () => {
  const source = sharedData("gguf", "llama-2-tiny-random.gguf");
  const dir = tempDir("steerlm-spm-control-");
  const outPath = join(dir.path, "llama-2-tiny-steerlm.gguf");
  let before: GgufTokenizer;
  let after: GgufTokenizer;
  let embedding: Float32Array;
  let dim: number;

  beforeAll(async () => {
    const file = await readGguf(source);
    const config = readLlamaConfig(file);
    const { vocab, added } = addControlTokensToGgufVocab(readGgufVocab(file));
    expect(added.map((a) => a.id)).toEqual([32000, 32001, 32002]);
    const grown = { ...config, vocabSize: vocab.tokens.length };
    dim = config.hiddenSize;
    const weights = new Map<string, Float32Array>();
    for (const { name } of llamaTensorShapes(config)) {
      const data = await readTensorF32(file, name);
      const perRow = name === "token_embd.weight" || name === "output.weight";
      weights.set(name, perRow ? extendEmbeddingRows(data, config.vocabSize, dim, added.length) : data);
    }
    embedding = weights.get("token_embd.weight")!;
    await writeLlamaGguf(outPath, { config: grown, vocab, weights, name: "llama-2-tiny + SteerLM tokens" });
    before = await loadGgufTokenizer(source);
    after = await loadGgufTokenizer(outPath);
  }, 60_000);

  afterAll(async () => {
    await before?.dispose();
    await after?.dispose();
    dir.cleanup();
  });

  it("adds single CONTROL ids whose embedding rows are the mean row", async () => {
    expect(before.hasControlTokens()).toBe(false);
    expect(CONTROL_TOKEN_NAMES.map((n) => after.encodeControl(n))).toEqual([32000, 32001, 32002]);
    expect(after.vocabSize).toBe(32003);
    const written = await readGguf(outPath);
    const types = readGgufVocab(written).tokenTypes;
    expect(types.slice(32000)).toEqual([3, 3, 3].map(() => GGUF_TOKEN_TYPE.control));
    const emb = await readTensorF32(written, "token_embd.weight");
    expect(Array.from(emb)).toEqual(Array.from(embedding));
    for (let c = 0; c < dim; c++) {
      let sum = 0;
      for (let r = 0; r < 32000; r++) sum += emb[r * dim + c];
      expect(emb[32000 * dim + c]).toBeCloseTo(sum / 32000, 5);
      expect(emb[32002 * dim + c]).toBe(emb[32000 * dim + c]);
    }
    // Adding again is a no-op; a control name present as an ordinary token is refused.
    expect(addControlTokensToGgufVocab(readGgufVocab(written)).added).toEqual([]);
    const v = readGgufVocab(written);
    v.tokenTypes[32001] = GGUF_TOKEN_TYPE.userDefined;
    expect(() => addControlTokensToGgufVocab(v)).toThrow(/<extra_id_1> \(id 32001\) as token type 4/);
  });

  it("tokenizes plain text exactly as the original vocabulary, control strings included", () => {
    const lines = [
      "Hello world",
      " leading space and   runs of   spaces",
      "newlines\n\nand\ttabs",
      "<extra_id_2>helpfulness:0<extra_id_1>User\n<extra_id_0>",
      "<s> </s> <unk>",
      "emoji 🦙 and ünïcødé 日本語",
    ];
    for (const line of lines) {
      const ids = after.encode(line);
      expect(ids).toEqual(before.encode(line));
      for (const id of [32000, 32001, 32002, 1, 2]) expect(ids).not.toContain(id);
    }
  });

  it("the rendered template matches llama.cpp's own special-token parsing and the model runs", async () => {
    const rendered = renderConversation(
      {
        system: "Be brief.",
        turns: [
          { role: "user", text: "Hi there" },
          { role: "assistant", text: "Hello!", values: "helpfulness:4" },
          { role: "user", text: "And now?" },
        ],
      },
      "inference",
      { values: "helpfulness:2,verbosity:0" },
    );
    const ids = encodeParts(after, rendered.parts);
    const model = (await loadLlamaModel(outPath, { gpuLayers: 0 })).model;
    try {
      // With no control strings in the user text, parsing the whole string with special tokens on
      // (what llama.cpp's own tools do) gives exactly the template's ids.
      expect(Array.from(model.tokenize(rendered.text, true))).toEqual(ids);
      expect(ids.filter((id) => id >= 32000).length).toBe(7);
      // Training text splits at loss boundaries (value line | response): the response continues the text,
      // so it gets no second SentencePiece space and the ids still equal llama.cpp's whole-string ones.
      const training = renderConversation(
        {
          system: "Be brief.",
          turns: [
            { role: "user", text: "Hi" },
            { role: "assistant", text: "Hello there!", values: "helpfulness:4" },
          ],
        },
        "acsft",
      );
      const textAfterText = training.parts.some(
        (p, i) => i > 0 && p.kind === "text" && training.parts[i - 1].kind === "text",
      );
      expect(textAfterText).toBe(true);
      const { ids: trainIds, loss } = encodePartsWithLoss(after, training.parts);
      expect(Array.from(model.tokenize(training.text, true))).toEqual(trainIds);
      expect(after.decode(trainIds.filter((_, i) => loss[i] === 1))).toBe("Hello there!\n<extra_id_1>");
      const context = await model.createContext({ contextSize: 256 });
      const sequence = context.getSequence();
      let generated = 0;
      for await (const _token of sequence.evaluate(ids as never, { temperature: 0 })) {
        if (++generated === 3) break;
      }
      expect(sequence.contextTokens.slice(0, ids.length)).toEqual(ids);
      await context.dispose();
    } finally {
      await model.dispose();
    }
  }, 60_000);
});
