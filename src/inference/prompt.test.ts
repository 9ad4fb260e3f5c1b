import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { haveSharedData, sharedData } from "../../test/helpers.js";
import { loadLlamaModel } from "../gguf/llama-cpp.js";
import type { GgufFile } from "../gguf/types.js";
import { maxBytesPerToken, tokenizeParts, tokenizeRaw } from "./prompt.js";

type Loaded = Awaited<ReturnType<typeof loadLlamaModel>>;
let loaded: Loaded;

beforeAll(async () => {
  if (haveSharedData) loaded = await loadLlamaModel(sharedData("gguf", "llama-2-tiny-random.gguf"));
});
afterAll(() => loaded?.model.dispose());

describe.skipIf(!haveSharedData)("prompt tokenization", () => {
  it("takes prompts of hundreds of thousands of tokens (no spread of a large array onto the stack)", () => {
    const text = "a ".repeat(400_000);
    const raw = tokenizeRaw(loaded.model, text, false);
    expect(raw.length).toBeGreaterThan(200_000);
    const vocab = { mode: "text" as const, ids: new Map() };
    const parts = tokenizeParts(loaded.model, vocab, [
      { kind: "text", text },
      { kind: "text", text },
    ]);
    expect(parts.tokens.length).toBeGreaterThan(2 * 200_000);
  });

  it("maxBytesPerToken bounds the text any one token of the vocabulary stands for", () => {
    const most = maxBytesPerToken(loaded.file) as number;
    // Llama-2's longest piece: "▁административ", 27 bytes of text (▁ is one space).
    expect(most).toBe(27);
    for (const text of ["hello world ", "административ ".repeat(50), "\n\n\t  }", "🙂 ünïcödé ".repeat(20)]) {
      const n = loaded.model.tokenize(text, false).length;
      expect(n * most, text).toBeGreaterThanOrEqual(Buffer.byteLength(text));
    }
  });

  it("maxBytesPerToken is undefined for a tokenizer that may normalise text", () => {
    const metadata = new Map(loaded.file.metadata);
    metadata.set("tokenizer.ggml.model", { type: "string", value: "t5" });
    expect(maxBytesPerToken({ ...loaded.file, metadata } as GgufFile)).toBeUndefined();
  });
});
