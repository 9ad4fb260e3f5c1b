import { readGguf } from "../gguf/reader.js";
import { readGgufVocab } from "../gguf/vocab.js";
import { resolveLlamaConfig } from "../model/config.js";
import { writeLlamaGguf } from "../model/llama-gguf.js";
import { initLlamaWeights } from "../model/weights.js";
import { Rng } from "../util/rng.js";

/** The shape of a random-weight model: big enough that a long prompt costs what the benchmark measures. */
export interface RandomModelShape {
  hiddenSize: number;
  numLayers: number;
  /** Tokens the model is meant for (its GGUF `context_length`). */
  contextLength: number;
  /** Storage of the matrices; default F16, as served models usually are. */
  type?: "F32" | "F16";
}

/**
 * Writes a Llama model with random weights and the vocabulary of the GGUF at `vocabFrom` (so text prompts
 * tokenize as they would for a real model of that family). Heads of 64 dimensions; deterministic for a seed.
 */
export async function writeRandomLlama(
  path: string,
  vocabFrom: string,
  shape: RandomModelShape,
  seed = 1,
): Promise<void> {
  const vocab = readGgufVocab(await readGguf(vocabFrom));
  const config = resolveLlamaConfig({
    vocabSize: vocab.tokens.length,
    hiddenSize: shape.hiddenSize,
    numLayers: shape.numLayers,
    numHeads: Math.max(1, shape.hiddenSize / 64),
    contextLength: shape.contextLength,
  });
  // N(0, 0.05²): the spread test/serve-cache.test.ts was checked to tell batch kernels apart with.
  const weights = initLlamaWeights(config, new Rng(seed), 0.05);
  await writeLlamaGguf(path, { config, vocab, weights, type: shape.type ?? "F16", name: "random" });
}
