/**
 * Hugging Face tokenizer files from what steerlm holds: a tokenizer.json for a GGUF vocabulary (the inverse of
 * `toGgufVocab`), and the tokenizer_config.json that transformers reads beside any tokenizer.json.
 */
import { GGUF_TOKEN_TYPE, type GgufVocab } from "../gguf/vocab.js";
import { InputError } from "../util/errors.js";
import { HfTokenizer } from "./hf.js";
import {
  addedToken,
  byteLevelBpeModel,
  type HfAddedToken,
  type HfTokenizerJson,
  validateTokenizerJson,
} from "./hf-json.js";
import { LLAMA_CPP_PRES, type LlamaCppPre, preTokenizerJson } from "./pre-tokenizer.js";
import { isControlToken } from "./types.js";

/**
 * A byte-level BPE GGUF vocabulary (`tokenizer.ggml.model` "gpt2" with one of the pre-tokenizers
 * `toGgufVocab` recognises) as the tokenizer.json its family publishes: control tokens become special added
 * tokens, user-defined ones plain added tokens, unused placeholders (padding rows) are left out. A BOS the
 * vocabulary adds is added by a TemplateProcessing post-processor, as Llama 3's tokenizer.json adds it.
 * SentencePiece vocabularies are refused: their tokenizer.json needs merges that the GGUF does not hold.
 */
export function ggufVocabToTokenizerJson(vocab: GgufVocab, source: string): HfTokenizerJson {
  if (vocab.model !== "gpt2") {
    throw new InputError(
      `a SentencePiece vocabulary (tokenizer.ggml.model "${vocab.model}") cannot be written as a tokenizer.json`,
      { file: source, field: "tokenizer.ggml.model" },
      "only byte-level BPE vocabularies (model gpt2) can be; take tokenizer.json from the Hugging Face model the GGUF came from",
    );
  }
  const pre = vocab.pre as LlamaCppPre | undefined;
  if (pre === undefined || !LLAMA_CPP_PRES.includes(pre)) {
    throw new InputError(
      `pre-tokenizer ${JSON.stringify(vocab.pre ?? null)} has no known tokenizer.json layout`,
      { file: source, field: "tokenizer.ggml.pre" },
      `supported: ${LLAMA_CPP_PRES.join(", ")}`,
    );
  }
  const modelVocab: Record<string, number> = {};
  const added: HfAddedToken[] = [];
  vocab.tokens.forEach((content, id) => {
    const type = vocab.tokenTypes[id];
    if (type === GGUF_TOKEN_TYPE.unused) return;
    if (type === GGUF_TOKEN_TYPE.control || type === GGUF_TOKEN_TYPE.userDefined) {
      // llama.cpp matches user-defined tokens in the raw text: normalized false is the same rule.
      const special = type === GGUF_TOKEN_TYPE.control;
      added.push(addedToken(id, content, special));
    } else modelVocab[content] = id;
  });
  const { pre_tokenizer, normalizer, ignoreMerges } = preTokenizerJson(pre);
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
  const bos = vocab.addBos && vocab.bosId !== null ? vocab.tokens[vocab.bosId] : undefined;
  const special = (id: string, typeId: number) => ({ SpecialToken: { id, type_id: typeId } });
  const sequence = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  return validateTokenizerJson(
    {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer,
      pre_tokenizer,
      post_processor:
        bos === undefined
          ? byteLevel
          : {
              type: "TemplateProcessing",
              single: [special(bos, 0), sequence("A", 0)],
              pair: [special(bos, 0), sequence("A", 0), special(bos, 1), sequence("B", 1)],
              special_tokens: { [bos]: { id: bos, ids: [vocab.bosId], tokens: [bos] } },
            },
      decoder: { ...byteLevel, add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: byteLevelBpeModel(modelVocab, vocab.merges ?? [], ignoreMerges),
    },
    source,
  );
}

/** The same vocabulary as an HfTokenizer, with the GGUF's BOS, EOS and add-BOS setting. */
export function ggufVocabTokenizer(vocab: GgufVocab, source: string): HfTokenizer {
  const content = (id: number | null) => (id === null ? null : vocab.tokens[id]!);
  return new HfTokenizer(
    ggufVocabToTokenizerJson(vocab, source),
    { bos_token: content(vocab.bosId), eos_token: content(vocab.eosId), add_bos_token: vocab.addBos },
    source,
  );
}

export interface TokenizerConfigOptions {
  /** The Jinja chat template (`chat_template`), when the model has one. */
  chatTemplate?: string;
  /** The longest sequence the model takes (`model_max_length`). */
  modelMaxLength: number;
}

/**
 * transformers' tokenizer_config.json for a tokenizer.json: a plain PreTrainedTokenizerFast (the tokenizer.json
 * holds the whole pipeline), BOS/EOS by content, every added token in `added_tokens_decoder` with its
 * special flag. The SteerLM control tokens are `additional_special_tokens`; the attribute-setting tokens
 * (`humor:4`) stay ordinary added tokens, as they are in the tokenizer.json.
 */
export function tokenizerConfigJson(
  tokenizer: HfTokenizer,
  opts: TokenizerConfigOptions,
): Record<string, unknown> {
  const decoder: Record<string, Omit<HfAddedToken, "id">> = {};
  for (const t of [...tokenizer.json.added_tokens].sort((a, b) => a.id - b.id)) {
    // transformers' key order (alphabetical), whatever order the tokenizer.json has
    const { content, lstrip, normalized, rstrip, single_word, special } = t;
    decoder[String(t.id)] = { content, lstrip, normalized, rstrip, single_word, special };
  }
  const content = (id: number | null) => (id === null ? null : tokenizer.idToPiece(id));
  const out: Record<string, unknown> = {
    tokenizer_class: "PreTrainedTokenizerFast",
    added_tokens_decoder: decoder,
    additional_special_tokens: tokenizer.json.added_tokens
      .filter((t) => t.special && isControlToken(t.content))
      .map((t) => t.content),
    bos_token: content(tokenizer.bosId),
    eos_token: content(tokenizer.eosId),
    add_bos_token: tokenizer.addBos,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: opts.modelMaxLength,
  };
  if (opts.chatTemplate !== undefined) out.chat_template = opts.chatTemplate;
  return out;
}
