import { SteerlmError } from "../util/errors.js";
import type { HfTokenizer } from "./hf.js";
import { mergePairs } from "./hf-json.js";

/** llama.cpp's token types (`enum llama_token_type`), as stored in tokenizer.ggml.token_type. */
export const TOKEN_TYPE = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

/**
 * The tokenizer.ggml.* metadata of a GGUF, as the GGUF writer takes it (`GgufVocab` of src/gguf/llama.ts).
 * `model` "gpt2" is llama.cpp's byte-level BPE; `pre` picks its pre-tokenizer regex.
 */
export interface GgufVocab {
  model: "gpt2" | "llama";
  pre: string;
  tokens: string[];
  scores?: number[];
  tokenTypes: number[];
  merges?: string[];
  bosId: number | null;
  eosId: number | null;
  unkId: number | null;
  padId: number | null;
  addBos: boolean;
}

/**
 * Turns a byte-level BPE tokenizer.json (GPT-2 style: ByteLevel pre-tokenizer with GPT-2's regex; what
 * `trainByteLevelBpe` writes) into GGUF vocabulary metadata that llama.cpp tokenizes identically:
 * model "gpt2", pre "gpt-2" (the same regex; see ToGgufVocabOptions), merges in rank order, special added tokens as CONTROL
 * (so `parse_special = false` never matches them), other added tokens as USER_DEFINED.
 */
export interface ToGgufVocabOptions {
  /**
   * llama.cpp pre-tokenizer name. All three run GPT-2's regex, so ids are identical; they differ in
   * detokenization only: "gpt-2" (default, the canonical name) makes llama.cpp clean up spaces before
   * punctuation when decoding (" ," -> ",", as HF GPT-2's clean_up_tokenization_spaces), while
   * "trillion" / "granite-docling" decode losslessly, byte for byte.
   */
  pre?: "gpt-2" | "trillion" | "granite-docling";
}

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
  const tokenTypes = new Array<number>(n).fill(TOKEN_TYPE.normal);
  for (const [piece, id] of Object.entries(model.vocab as Record<string, number>)) tokens[id] = piece;
  for (const t of json.added_tokens) {
    tokens[t.id] = t.content;
    tokenTypes[t.id] = t.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  // llama.cpp needs a dense id space; a gap becomes an unused placeholder that text can never produce.
  for (let i = 0; i < n; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[UNUSED_${i}]`;
      tokenTypes[i] = TOKEN_TYPE.unused;
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
