import { GGUF_TOKEN_TYPE, type GgufVocab } from "../gguf/vocab.js";
import { SteerlmError } from "../util/errors.js";
import type { HfTokenizer } from "./hf.js";
import { mergePairs } from "./hf-json.js";

/** llama.cpp's token types (the GGUF module's table, under the name this module has always exported). */
export const TOKEN_TYPE = GGUF_TOKEN_TYPE;

export interface ToGgufVocabOptions {
  /**
   * llama.cpp pre-tokenizer name. All three run GPT-2's regex, so ids are identical; they differ in
   * detokenization only: "gpt-2" (default, the canonical name) makes llama.cpp clean up spaces before
   * punctuation when decoding (" ," -> ",", as HF GPT-2's clean_up_tokenization_spaces), while
   * "trillion" / "granite-docling" decode losslessly, byte for byte.
   */
  pre?: "gpt-2" | "trillion" | "granite-docling";
}

/** The GGUF writer's vocabulary type (src/gguf/vocab.ts), re-exported for tokenizer users. */
export type { GgufVocab };

export function toGgufVocab(tokenizer: HfTokenizer, opts: ToGgufVocabOptions = {}): GgufVocab {
  const { json } = tokenizer;
  const model = json.model;
  if (model.type !== "BPE")
    throw new SteerlmError(
      `${tokenizer.source}: GGUF export supports byte-level BPE tokenizers, this one is ${model.type}`,
    );
  const pre = json.pre_tokenizer as { type?: string; use_regex?: boolean; add_prefix_space?: boolean } | null;
  if (pre?.type !== "ByteLevel" || pre.use_regex === false || pre.add_prefix_space === true)
    throw new SteerlmError(
      `${tokenizer.source}: GGUF export needs GPT-2's pre-tokenizer (ByteLevel, use_regex, no prefix space), got ${JSON.stringify(pre)}`,
      "tokenizers trained by steerlm have it; other pre-tokenizers need their own llama.cpp 'pre' name",
    );
  if (json.normalizer !== null && json.normalizer !== undefined)
    throw new SteerlmError(`${tokenizer.source}: GGUF export cannot carry a normalizer`);

  const n = tokenizer.vocabSize;
  const tokens = new Array<string | undefined>(n);
  const tokenTypes = new Array<number>(n).fill(GGUF_TOKEN_TYPE.normal);
  for (const [piece, id] of Object.entries(model.vocab as Record<string, number>)) tokens[id] = piece;
  for (const t of json.added_tokens) {
    tokens[t.id] = t.content;
    tokenTypes[t.id] = t.special ? GGUF_TOKEN_TYPE.control : GGUF_TOKEN_TYPE.userDefined;
  }
  // llama.cpp needs a dense id space; a gap becomes an unused placeholder that text can never produce.
  for (let i = 0; i < n; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[UNUSED_${i}]`;
      tokenTypes[i] = GGUF_TOKEN_TYPE.unused;
    }
  }
  const merges = mergePairs((model.merges ?? []) as Array<string | [string, string]>).map(
    ([a, b]) => `${a} ${b}`,
  );
  return {
    model: "gpt2",
    pre: opts.pre ?? "gpt-2",
    tokens: tokens as string[],
    tokenTypes,
    merges,
    bosId: tokenizer.bosId,
    eosId: tokenizer.eosId,
    unkId: null,
    padId: null,
    addBos: tokenizer.addBos,
  };
}
