import type { LlamaModel, Token } from "node-llama-cpp";
import { GGUF_TOKEN_TYPE, type GgufVocab } from "../gguf/vocab.js";
import { SteerlmError } from "../util/errors.js";
import type { HfAddedToken, HfTokenizerJson } from "./hf-json.js";
import { CONTROL_TOKEN_NAMES, type ControlToken } from "./types.js";

/**
 * Adds the SteerLM control tokens a tokenizer.json lacks, as special added tokens with new ids after the
 * last existing id. Returns a new object (the input is not changed) and the new ids in control-name order,
 * so the model can grow its embedding (and output) rows to match with `extendEmbeddingRows`.
 */
export function addControlTokens(json: HfTokenizerJson): {
  json: HfTokenizerJson;
  added: Array<{ name: ControlToken; id: number }>;
} {
  const existing = new Set(json.added_tokens.map((t) => t.content));
  const vocab = (json.model.vocab ?? {}) as Record<string, number> | Array<[string, number]>;
  const modelPieces = Array.isArray(vocab) ? vocab.map(([p]) => p) : Object.keys(vocab);
  // A loop, not Math.max(...ids): spreading a 100k-entry vocabulary overflows the call stack.
  let nextId = Array.isArray(vocab) ? vocab.length - 1 : -1;
  for (const id of Array.isArray(vocab) ? [] : Object.values(vocab)) nextId = Math.max(nextId, id);
  for (const t of json.added_tokens) nextId = Math.max(nextId, t.id);
  const added: Array<{ name: ControlToken; id: number }> = [];
  const newTokens: HfAddedToken[] = [];
  for (const name of CONTROL_TOKEN_NAMES) {
    if (existing.has(name)) continue;
    if (modelPieces.includes(name))
      throw new SteerlmError(
        `the model vocabulary already has ${name} as an ordinary piece`,
        "mark it as a special added token instead of adding a new one",
      );
    const id = ++nextId;
    added.push({ name, id });
    newTokens.push({
      id,
      content: name,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
  }
  return { json: { ...json, added_tokens: [...json.added_tokens, ...newTokens] }, added };
}

/**
 * The same for a GGUF vocabulary (e.g. a Llama-2 SentencePiece model that has no `<extra_id_*>`): the
 * missing control tokens are appended as CONTROL-type tokens (score 0 where the vocabulary has scores), so
 * llama.cpp keeps them single ids and never matches them in plain text. A name already present must
 * already be CONTROL type: as an ordinary or user-defined token it would be reachable from plain text.
 */
export function addControlTokensToGgufVocab(vocab: GgufVocab): {
  vocab: GgufVocab;
  added: Array<{ name: ControlToken; id: number }>;
} {
  const tokens = [...vocab.tokens];
  const tokenTypes = [...vocab.tokenTypes];
  const scores = vocab.scores ? [...vocab.scores] : undefined;
  const added: Array<{ name: ControlToken; id: number }> = [];
  for (const name of CONTROL_TOKEN_NAMES) {
    const at = tokens.indexOf(name);
    if (at >= 0) {
      if (tokenTypes[at] !== GGUF_TOKEN_TYPE.control)
        throw new SteerlmError(
          `the vocabulary has ${name} (id ${at}) as token type ${tokenTypes[at]}, not control (3)`,
          "plain text could then produce it; mark it as a control token",
        );
      continue;
    }
    added.push({ name, id: tokens.length });
    tokens.push(name);
    tokenTypes.push(GGUF_TOKEN_TYPE.control);
    scores?.push(0);
  }
  const out: GgufVocab = { ...vocab, tokens, tokenTypes };
  if (scores) out.scores = scores;
  return { vocab: out, added };
}

/**
 * The control tokens a llama.cpp vocabulary holds as single ids: with special-token parsing on, the name
 * comes back as exactly one id that decodes to the name. The one detector of every GGUF path (the
 * tokenizer for training, the inference prompt).
 */
export function llamaControlTokenIds(model: LlamaModel): Map<ControlToken, Token> {
  const ids = new Map<ControlToken, Token>();
  for (const name of CONTROL_TOKEN_NAMES) {
    const special = model.tokenize(name, true);
    const [id] = special;
    if (id !== undefined && special.length === 1 && model.detokenize(special, true) === name)
      ids.set(name, id);
  }
  return ids;
}

/**
 * Grows a (rows, dim) row-major embedding matrix by `newRows` rows, each the mean of the existing rows:
 * a new token then starts as an "average" token instead of a random direction, which keeps the first
 * fine-tuning steps from being dominated by it. Sums are in float64 so large vocabularies lose nothing.
 */
export function extendEmbeddingRows(
  emb: Float32Array,
  rows: number,
  dim: number,
  newRows: number,
): Float32Array {
  if (emb.length !== rows * dim)
    throw new SteerlmError(`embedding has ${emb.length} values, expected rows*dim = ${rows}*${dim}`);
  if (rows < 1 || newRows < 0 || !Number.isInteger(newRows))
    throw new SteerlmError(`cannot add ${newRows} rows to an embedding of ${rows} rows`);
  const mean = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    for (let c = 0; c < dim; c++) mean[c]! += emb[base + c]!;
  }
  const out = new Float32Array((rows + newRows) * dim);
  out.set(emb);
  for (let r = rows; r < rows + newRows; r++) {
    for (let c = 0; c < dim; c++) out[r * dim + c] = mean[c]! / rows;
  }
  return out;
}
