import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { expected, InputError } from "../util/errors.js";
import { readInputText } from "../util/files.js";

/**
 * The parts of Hugging Face's tokenizer.json that this project reads or writes. Everything else in a file
 * is kept as it is (index signature) and handed to the tokenizer library untouched.
 */
export interface HfAddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface HfBpeModel {
  type: "BPE";
  dropout: number | null;
  unk_token: string | null;
  continuing_subword_prefix: string | null;
  end_of_word_suffix: string | null;
  fuse_unk: boolean;
  byte_fallback: boolean;
  ignore_merges?: boolean;
  vocab: Record<string, number>;
  /** "a b" strings (older files) or ["a", "b"] pairs (tokenizers >= 0.20). */
  merges: Array<string | [string, string]>;
}

/** A token matched in the raw text before the model runs (steerlm writes them whole: no stripping). */
export function addedToken(id: number, content: string, special: boolean): HfAddedToken {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

/** A byte-level BPE model as steerlm writes it (no dropout, no unknown token, no byte fallback). */
export function byteLevelBpeModel(
  vocab: Record<string, number>,
  merges: HfBpeModel["merges"],
  ignoreMerges?: boolean,
): HfTokenizerJson["model"] {
  return {
    type: "BPE",
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    ...(ignoreMerges !== undefined ? { ignore_merges: ignoreMerges } : {}),
    vocab,
    merges,
  };
}

export interface HfTokenizerJson {
  version: string;
  truncation: unknown;
  padding: unknown;
  added_tokens: HfAddedToken[];
  normalizer: unknown;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: { type: string; vocab?: unknown; merges?: unknown; [key: string]: unknown };
  [key: string]: unknown;
}

/** tokenizer_config.json (transformers), only the fields we use. */
export interface HfTokenizerConfig {
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
  add_bos_token?: boolean;
  [key: string]: unknown;
}

export function readJsonFile(path: string): unknown {
  const text = readInputText(path);
  try {
    return JSON.parse(text);
  } catch (err) {
    // JSON.parse reports a character position; turn it into the line a user can open.
    const m = /position (\d+)/.exec((err as Error).message);
    const line = m ? text.slice(0, Number(m[1])).split("\n").length : undefined;
    throw new InputError(`not valid JSON (${(err as Error).message})`, { file: path, line });
  }
}

/** Checks the shape we rely on and fills the optional top-level keys, so the library gets a complete object. */
export function validateTokenizerJson(value: unknown, file: string): HfTokenizerJson {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new InputError(expected("a tokenizer.json object", value), { file });
  const obj = value as Record<string, unknown>;
  const model = obj.model;
  if (typeof model !== "object" || model === null || typeof (model as { type?: unknown }).type !== "string")
    throw new InputError(expected('an object with a "type"', model), { file, field: "model" });
  validateModel(model as Record<string, unknown>, file);
  const added = obj.added_tokens ?? [];
  if (!Array.isArray(added))
    throw new InputError(expected("an array", added), { file, field: "added_tokens" });
  added.forEach((t: unknown, i) => {
    const tok = t as Partial<HfAddedToken> | null;
    if (!tok || typeof tok.content !== "string" || !Number.isInteger(tok.id))
      throw new InputError(expected("{id: integer, content: string, ...}", t), {
        file,
        field: `added_tokens[${i}]`,
      });
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    ...obj,
    added_tokens: added as HfAddedToken[],
    model: model as HfTokenizerJson["model"],
  };
}

/**
 * The model's vocabulary and merges, as the tokenizers library reads them: a map of unique integer ids
 * (BPE, WordPiece, WordLevel) or a list of [piece, score] pairs (Unigram), and BPE's merges as "a b"
 * strings or [a, b] pairs. Checked here so that a damaged file is a located error, not a crash inside
 * the library or an empty tokenization.
 */
function validateModel(model: Record<string, unknown>, file: string): void {
  const at = (field: string) => ({ file, field: `model.${field}` });
  const vocab = model.vocab;
  if (model.type === "Unigram") {
    if (!Array.isArray(vocab) || vocab.length === 0)
      throw new InputError(expected("a non-empty list of [piece, score] pairs", vocab), at("vocab"));
    vocab.forEach((p: unknown, i) => {
      if (!Array.isArray(p) || typeof p[0] !== "string" || typeof p[1] !== "number")
        throw new InputError(expected("a [piece, score] pair", p), at(`vocab[${i}]`));
    });
    return;
  }
  if (typeof vocab !== "object" || vocab === null || Array.isArray(vocab) || Object.keys(vocab).length === 0)
    throw new InputError(expected("a non-empty object of piece: id", vocab), at("vocab"));
  const owner = new Map<number, string>();
  for (const [piece, id] of Object.entries(vocab)) {
    if (!Number.isSafeInteger(id) || (id as number) < 0)
      throw new InputError(expected("a non-negative integer id", id), at(`vocab.${piece}`));
    const other = owner.get(id as number);
    if (other !== undefined)
      throw new InputError(`id ${id} is also ${JSON.stringify(other)}'s`, at(`vocab.${piece}`));
    owner.set(id as number, piece);
  }
  if (model.type !== "BPE") return;
  const merges = model.merges;
  if (!Array.isArray(merges)) throw new InputError(expected("a list of merges", merges), at("merges"));
  merges.forEach((m: unknown, i) => {
    const pair =
      (typeof m === "string" && m.indexOf(" ", 1) > 0) ||
      (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string");
    if (!pair) throw new InputError(expected('"a b" or ["a", "b"]', m), at(`merges[${i}]`));
  });
}

/** tokenizer_config.json beside a tokenizer.json, when there is one (it names BOS/EOS). */
export function readSiblingConfig(tokenizerJsonPath: string): HfTokenizerConfig | undefined {
  const path = join(dirname(tokenizerJsonPath), "tokenizer_config.json");
  if (!existsSync(path)) return undefined;
  const value = readJsonFile(path);
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new InputError(expected("an object", value), { file: path });
  return value as HfTokenizerConfig;
}

export function tokenContent(value: string | { content: string } | null | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  return typeof value === "string" ? value : value.content;
}

/** Merges as pairs, whichever of the two on-disk forms a file uses. */
export function mergePairs(
  merges: ReadonlyArray<string | readonly [string, string]>,
): Array<[string, string]> {
  return merges.map((m) => {
    if (typeof m !== "string") return [m[0], m[1]];
    const space = m.indexOf(" ", 1);
    return [m.slice(0, space), m.slice(space + 1)];
  });
}
