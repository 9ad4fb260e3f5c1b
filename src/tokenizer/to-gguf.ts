import { GGUF_TOKEN_TYPE, type GgufVocab } from "../gguf/vocab.js";
import { SteerlmError } from "../util/errors.js";
import type { HfTokenizer } from "./hf.js";
import { mergePairs } from "./hf-json.js";
import { llamaCppPre } from "./pre-tokenizer.js";

/** llama.cpp's token types (the GGUF module's table, under the name this module has always exported). */
export const TOKEN_TYPE = GGUF_TOKEN_TYPE;

export interface ToGgufVocabOptions {
  /**
   * For GPT-2-style tokenizers only: another llama.cpp pre name with the same regex. "gpt-2" (the default,
   * canonical) makes llama.cpp clean up spaces before punctuation when decoding (" ," -> ",", like HF GPT-2's
   * clean_up_tokenization_spaces); "trillion" / "granite-docling" split identically and decode losslessly.
   */
  pre?: "gpt-2" | "trillion" | "granite-docling";
}

/** The GGUF writer's vocabulary type (src/gguf/vocab.ts), re-exported for tokenizer users. */
export type { GgufVocab };

/**
 * Turns a byte-level BPE tokenizer.json (what `trainByteLevelBpe` writes, and GPT-2, SmolLM, Llama-3 and
 * Qwen2 layouts: see pre-tokenizer.ts) into GGUF vocabulary metadata that llama.cpp tokenizes identically:
 * model "gpt2", the llama.cpp pre-tokenizer with the same splits, merges in rank order, special added
 * tokens as CONTROL (so `parse_special = false` never matches them), other added tokens as USER_DEFINED.
 */
export function toGgufVocab(tokenizer: HfTokenizer, opts: ToGgufVocabOptions = {}): GgufVocab {
  const { json } = tokenizer;
  const model = json.model;
  if (model.type !== "BPE")
    throw new SteerlmError(
      `${tokenizer.source}: GGUF export supports byte-level BPE tokenizers, this one is ${model.type}`,
    );
  const detected = llamaCppPre(json, tokenizer.source);
  if (opts.pre !== undefined && detected !== "gpt-2")
    throw new SteerlmError(
      `${tokenizer.source}: pre ${opts.pre} needs GPT-2's pre-tokenizer, this one is ${detected}`,
    );
  const pre = opts.pre ?? detected;

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
    pre,
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
