import { join } from "node:path";
import { CONTROL_TOKENS } from "../src/data/template.js";
import { GGUF_TOKEN_TYPE, readGgufVocab, STEERLM_SCHEMA_KEY, str } from "../src/gguf/index.js";
import { readGguf, readTensorF32 } from "../src/gguf/reader.js";
import { steerGguf } from "../src/interop/steering.js";
import { readLlamaConfig, writeLlamaGguf } from "../src/model/llama-gguf.js";
import { sharedData } from "./helpers.js";

/**
 * Tiny steerable test models, derived from ../shared/data/gguf/llama-2-tiny-random.gguf (random weights:
 * outputs are gibberish; the tests check mechanics). Three rarely used vocabulary entries become the
 * SteerLM control tokens (GGUF token type "control"), and a custom schema goes in `steerlm.schema`.
 */
export const TINY_RANDOM = sharedData("gguf", "llama-2-tiny-random.gguf");

/** The ids the control tokens take over (the last entries of the 32k Llama-2 vocabulary). */
export const CONTROL_IDS = { system: 31997, turn: 31998, label: 31999 } as const;

export const TEST_SCHEMA = {
  name: "tiny-test",
  attributes: [
    { name: "quality", min: 0, max: 4, default: 4, description: "overall quality of the response" },
    { name: "humor", min: 0, max: 4, default: 0, description: "jokes, puns and playfulness" },
    { name: "verbosity", min: 0, max: 9, default: 3, description: "amount of detail" },
  ],
};

export interface FixtureOptions {
  /** Swap these two rows of output.weight: makes `a`'s logit `b`'s and back (used to force a token). */
  swapOutputRows?: [number, number];
  /**
   * Write what `steerlm export gguf` adds for other engines too: the Jinja chat template and `<extra_id_1>` as
   * `tokenizer.ggml.eot_token_id` (which llama.cpp then counts among its end-of-generation tokens).
   */
  exported?: boolean;
}

export async function writeSteerModel(dir: string, name: string, opts: FixtureOptions = {}): Promise<string> {
  const f = await readGguf(TINY_RANDOM);
  const config = readLlamaConfig(f);
  const vocab = readGgufVocab(f);
  for (const [key, id] of Object.entries(CONTROL_IDS)) {
    vocab.tokens[id] = CONTROL_TOKENS[key as keyof typeof CONTROL_TOKENS];
    vocab.tokenTypes[id] = GGUF_TOKEN_TYPE.control;
  }
  const weights = new Map<string, Float32Array>();
  for (const t of f.tensors) weights.set(t.name, await readTensorF32(f, t.name));
  if (opts.swapOutputRows) {
    const out = weights.get("output.weight") as Float32Array;
    const width = config.hiddenSize; // output.weight is (vocab, width): row i = token i's logit weights
    const [a, b] = opts.swapOutputRows;
    const rowA = out.slice(a * width, (a + 1) * width);
    out.copyWithin(a * width, b * width, (b + 1) * width);
    out.set(rowA, b * width);
  }
  const path = join(dir, name);
  const steered = opts.exported
    ? steerGguf(vocab, TEST_SCHEMA)
    : { vocab, metadata: [[STEERLM_SCHEMA_KEY, str(JSON.stringify(TEST_SCHEMA))] as const] };
  await writeLlamaGguf(path, {
    config,
    vocab: steered.vocab,
    weights,
    type: "F16",
    name: "steerlm tiny test",
    metadata: [...steered.metadata],
  });
  return path;
}
