/**
 * The tokenizer.ggml.* part of a GGUF: what llama.cpp's llama_vocab::load reads (src/llama-vocab.cpp),
 * checked here so that a bad vocabulary is our InputError rather than a llama.cpp load failure or, worse,
 * a GGML_ASSERT that kills the process (duplicate token strings do that).
 */
import { InputError } from "../util/errors.js";
import { metaArray, metaBool, metaNumber, metaString } from "./reader.js";
import { arr, bool, type GgufFile, type GgufMetaValue, str, u32 } from "./types.js";

/** llama.cpp's `enum llama_token_type`, as stored in tokenizer.ggml.token_type (int32). */
export const GGUF_TOKEN_TYPE = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

/**
 * A vocabulary as llama.cpp stores it. `model` "llama" is SentencePiece-style (scores drive merges, byte
 * fallback through `<0xXX>` tokens); "gpt2" is byte-level BPE (merges "a b" in rank order; `pre` names the
 * pre-tokenizer regex: "gpt-2" for GPT-2's, "llama-bpe" for Llama-3's, "qwen2", "smollm", "default"...).
 * Ids are null when the vocabulary has no such token.
 */
export interface GgufVocab {
  model: "gpt2" | "llama";
  pre?: string;
  tokens: string[];
  scores?: number[];
  tokenTypes: number[];
  merges?: string[];
  bosId: number | null;
  eosId: number | null;
  unkId: number | null;
  padId: number | null;
  addBos: boolean;
  addEos?: boolean;
  chatTemplate?: string;
}

/** BPE pre-tokenizers for which llama.cpp adds BOS when the file does not say (llama-vocab.cpp's load). */
const BOS_BY_DEFAULT_PRE = [
  "llama3",
  "llama-v3",
  "llama-bpe",
  "falcon3",
  "falcon-h1",
  "pixtral",
  "midm-2.0",
  "lfm2",
  "jina-v5-nano",
  "tekken",
  "chameleon",
];

/** The BPE pre-tokenizer names this llama.cpp (node-llama-cpp 3.21.1) accepts; anything else fails its load. */
export const LLAMA_CPP_BPE_PRE = new Set([
  ...BOS_BY_DEFAULT_PRE,
  "default",
  "minicpm5",
  "deepseek-llm",
  "deepseek-coder",
  "deepseek-v3",
  "youtu",
  "falcon",
  "mpt",
  "starcoder",
  "gpt-2",
  "phi-2",
  "jina-es",
  "jina-de",
  "gigachat",
  "jina-v2-es",
  "jina-v2-de",
  "a.x-4.0",
  "mellum",
  "modern-bert",
  "jais-2",
  "gemma4",
  "granite-embed-multi-311m",
  "sarvam-moe",
  "jina-v1-en",
  "jina-v2-code",
  "roberta-bpe",
  "whitespace",
  "refact",
  "command-r",
  "qwen2",
  "deepseek-r1-qwen",
  "kormo",
  "f2llmv2",
  "qwen35",
  "stablelm2",
  "olmo",
  "dbrx",
  "smaug-bpe",
  "poro-chat",
  "glm4",
  "chatglm-bpe",
  "viking",
  "jais",
  "smollm",
  "codeshell",
  "bloom",
  "gpt3-finnish",
  "exaone",
  "exaone4",
  "exaone-moe",
  "minerva-7b",
  "megrez",
  "gpt-4o",
  "llama4",
  "kanana2",
  "talkie",
  "granite-embed-multi-97m",
  "tiny_aya",
  "cohere2moe",
  "superbpe",
  "trillion",
  "granite-docling",
  "bailingmoe",
  "bailingmoe2",
  "llada-moe",
  "seed-coder",
  "hunyuan",
  "hunyuan-dense",
  "joyai-llm",
  "kimi-k2",
  "grok-2",
  "afmoe",
  "laguna",
  "minimax-m2",
  "solar-open",
  "mellum2",
]);

/** Refuses what llama.cpp would refuse (or crash on); `source` names the vocabulary in errors. */
export function validateVocab(v: GgufVocab, source = "vocabulary"): void {
  const fail = (field: string, what: string, hint?: string) =>
    new InputError(what, { file: source, field }, hint);
  const n = v.tokens.length;
  if (n === 0) throw fail("tokens", "the vocabulary is empty");
  const seen = new Map<string, number>();
  v.tokens.forEach((t, i) => {
    const prev = seen.get(t);
    // llama.cpp asserts token strings are unique and aborts the whole process otherwise.
    if (prev !== undefined)
      throw fail(`tokens[${i}]`, `duplicate token ${JSON.stringify(t)} (also id ${prev})`);
    seen.set(t, i);
  });
  if (v.tokenTypes.length !== n)
    throw fail("tokenTypes", `has ${v.tokenTypes.length} entries for ${n} tokens`);
  v.tokenTypes.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t > 6)
      throw fail(`tokenTypes[${i}]`, `not a llama token type: ${t}`);
  });
  if (v.scores !== undefined && v.scores.length !== n) {
    throw fail("scores", `has ${v.scores.length} entries for ${n} tokens`);
  }
  if (v.model === "llama" && v.scores === undefined) {
    throw fail("scores", "a SentencePiece ('llama') vocabulary needs scores: they decide how pieces merge");
  }
  if (v.model === "gpt2") {
    if (v.merges === undefined) throw fail("merges", "a byte-level BPE ('gpt2') vocabulary needs merges");
    v.merges.forEach((m, i) => {
      if (m.indexOf(" ", 1) < 0)
        throw fail(`merges[${i}]`, `expected "left right", got ${JSON.stringify(m)}`);
    });
    if (v.pre !== undefined && !LLAMA_CPP_BPE_PRE.has(v.pre)) {
      throw fail(
        "pre",
        `llama.cpp does not know the pre-tokenizer ${JSON.stringify(v.pre)}`,
        v.pre === "gpt2" ? 'GPT-2\'s is spelled "gpt-2"' : undefined,
      );
    }
  }
  for (const key of ["bosId", "eosId", "unkId", "padId"] as const) {
    const id = v[key];
    if (id !== null && (!Number.isInteger(id) || id < 0 || id >= n)) {
      throw fail(key, `token id ${id} is outside the vocabulary (0..${n - 1})`);
    }
  }
}

/** The tokenizer.ggml.* metadata entries for a vocabulary (validated). */
export function vocabMetadata(v: GgufVocab, source?: string): Array<[string, GgufMetaValue]> {
  validateVocab(v, source);
  const out: Array<[string, GgufMetaValue]> = [["tokenizer.ggml.model", str(v.model)]];
  if (v.pre !== undefined) out.push(["tokenizer.ggml.pre", str(v.pre)]);
  out.push(["tokenizer.ggml.tokens", arr("string", v.tokens)]);
  if (v.scores !== undefined) out.push(["tokenizer.ggml.scores", arr("float32", v.scores)]);
  out.push(["tokenizer.ggml.token_type", arr("int32", v.tokenTypes)]);
  if (v.merges !== undefined) out.push(["tokenizer.ggml.merges", arr("string", v.merges)]);
  const ids: Array<[string, number | null]> = [
    ["tokenizer.ggml.bos_token_id", v.bosId],
    ["tokenizer.ggml.eos_token_id", v.eosId],
    ["tokenizer.ggml.unknown_token_id", v.unkId],
    ["tokenizer.ggml.padding_token_id", v.padId],
  ];
  for (const [k, id] of ids) if (id !== null) out.push([k, u32(id)]);
  out.push(["tokenizer.ggml.add_bos_token", bool(v.addBos)]);
  if (v.addEos !== undefined) out.push(["tokenizer.ggml.add_eos_token", bool(v.addEos)]);
  if (v.chatTemplate !== undefined) out.push(["tokenizer.chat_template", str(v.chatTemplate)]);
  return out;
}

/**
 * Whether llama.cpp starts a sequence with BOS for this file: its add_bos_token, else llama.cpp's default
 * (SPM adds BOS; BPE does not unless the pre-tokenizer says so). Training and scoring follow it too.
 */
export function ggufAddsBos(file: GgufFile): boolean {
  const spm = metaString(file, "tokenizer.ggml.model", "") === "llama";
  const pre = metaString(file, "tokenizer.ggml.pre", "");
  return metaBool(file, "tokenizer.ggml.add_bos_token", spm || BOS_BY_DEFAULT_PRE.includes(pre));
}

/** The vocabulary stored in a GGUF ("llama" or "gpt2" models only). */
export function readGgufVocab(file: GgufFile): GgufVocab {
  const model = metaString(file, "tokenizer.ggml.model");
  if (model !== "llama" && model !== "gpt2") {
    throw new InputError(
      `tokenizer model ${JSON.stringify(model)} is not supported (supported: llama, gpt2)`,
      {
        file: file.path,
        field: "tokenizer.ggml.model",
      },
    );
  }
  const tokens = [...metaArray(file, "tokenizer.ggml.tokens", "string")];
  const optionalArray = <T>(key: string, read: () => readonly T[]): T[] | undefined =>
    file.metadata.has(key) ? [...read()] : undefined;
  const id = (key: string): number | null => {
    const v = metaNumber(file, key, null);
    return v === null ? null : v;
  };
  const scoresType = file.metadata.get("tokenizer.ggml.scores");
  const vocab: GgufVocab = {
    model,
    tokens,
    scores: optionalArray("tokenizer.ggml.scores", () =>
      scoresType?.type === "array" && scoresType.itemType === "int32"
        ? metaArray(file, "tokenizer.ggml.scores", "int32")
        : metaArray(file, "tokenizer.ggml.scores", "float32"),
    ),
    // Absent types mean "normal" to llama.cpp.
    tokenTypes:
      optionalArray("tokenizer.ggml.token_type", () =>
        metaArray(file, "tokenizer.ggml.token_type", "int32"),
      ) ?? tokens.map(() => GGUF_TOKEN_TYPE.normal),
    merges: optionalArray("tokenizer.ggml.merges", () => metaArray(file, "tokenizer.ggml.merges", "string")),
    bosId: id("tokenizer.ggml.bos_token_id"),
    eosId: id("tokenizer.ggml.eos_token_id"),
    unkId: id("tokenizer.ggml.unknown_token_id"),
    padId: id("tokenizer.ggml.padding_token_id"),
    addBos: ggufAddsBos(file),
  };
  const pre = metaString(file, "tokenizer.ggml.pre", null);
  if (pre !== null) vocab.pre = pre;
  const addEos = metaBool(file, "tokenizer.ggml.add_eos_token", null);
  if (addEos !== null) vocab.addEos = addEos;
  const tpl = metaString(file, "tokenizer.chat_template", null);
  if (tpl !== null) vocab.chatTemplate = tpl;
  if (vocab.scores === undefined) delete vocab.scores;
  if (vocab.merges === undefined) delete vocab.merges;
  return vocab;
}
