import type { LlamaModel, Token } from "node-llama-cpp";
import { CONTROL_TOKEN_NAMES, type ControlToken, type TemplatePart } from "../data/template.js";
import { metaArray, metaString } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import { GGUF_TOKEN_TYPE } from "../gguf/vocab.js";
import { llamaControlTokenIds } from "../tokenizer/control.js";
import { SteerlmError } from "../util/errors.js";

/**
 * How the model's vocabulary spells the SteerLM control tokens.
 * - `tokens`: each of `<extra_id_0/1/2>` is one special id. Text parts are tokenized with special-token
 *   parsing OFF, so a user typing `<extra_id_1>` gets plain pieces, never the id: injection-proof.
 * - `text`: the vocabulary lacks them (e.g. a plain Llama-2 vocabulary). Control parts are then tokenized as
 *   ordinary text, the same pieces user text spelling them would get; generation still stops at the
 *   decoded `<extra_id_1>` string. Such a model was never trained on SteerLM turns, so this mode exists to
 *   serve arbitrary GGUFs, not to be injection-proof at the token level.
 */
export type ControlMode = "tokens" | "text";

export interface ControlVocab {
  mode: ControlMode;
  /** Control string -> its single id (empty in `text` mode). */
  ids: ReadonlyMap<ControlToken, Token>;
}

export function detectControlTokens(model: LlamaModel, source: string): ControlVocab {
  const ids = llamaControlTokenIds(model);
  for (const [name, id] of ids) {
    // A token llama.cpp also matches in plain text (a "user-defined" token) would let users inject it.
    if (model.tokenize(name, false).includes(id)) {
      throw new SteerlmError(
        `${source}: ${name} (id ${id}) is matched inside plain text, so users could inject it`,
        "the GGUF must mark the SteerLM control tokens as control tokens (token type 3)",
      );
    }
  }
  const all = ids.size === CONTROL_TOKEN_NAMES.length;
  return { mode: all ? "tokens" : "text", ids: all ? ids : new Map() };
}

export interface PromptTokens {
  tokens: Token[];
  /** How many ids in `tokens` are control-token ids (0 in `text` mode). */
  controlTokens: number;
}

/** Template parts -> ids: BOS if the model wants one, control parts by id, text parts as plain text. */
export function tokenizeParts(
  model: LlamaModel,
  vocab: ControlVocab,
  parts: readonly TemplatePart[],
): PromptTokens {
  const tokens: Token[] = [];
  if (model.tokens.shouldPrependBosToken && model.tokens.bos !== null) tokens.push(model.tokens.bos);
  let controlTokens = 0;
  for (const part of parts) {
    const id = part.kind === "control" ? vocab.ids.get(part.text as ControlToken) : undefined;
    if (id !== undefined) {
      tokens.push(id);
      controlTokens++;
    } else if (part.text !== "") {
      append(tokens, model.tokenize(part.text, false));
    }
  }
  return { tokens, controlTokens };
}

/** A raw prompt (no template): plain text unless the caller explicitly allows special-token strings. */
export function tokenizeRaw(model: LlamaModel, text: string, specialTokens: boolean): Token[] {
  const tokens: Token[] = [];
  if (model.tokens.shouldPrependBosToken && model.tokens.bos !== null) tokens.push(model.tokens.bos);
  append(tokens, model.tokenize(text, specialTokens));
  return tokens;
}

/** A loop, not `push(...more)`: spreading a long prompt's ids onto the call stack overflows it (~120k). */
function append(tokens: Token[], more: readonly Token[]): void {
  for (const t of more) tokens.push(t);
}

/**
 * The most bytes of text one token of the vocabulary stands for: a text of `b` bytes has at least
 * b / this many tokens, which is how a prompt that cannot fit the context is refused before it is
 * tokenized. SentencePiece ("llama") spells a space as ▁ (3 bytes) and a byte as `<0xXX>`; byte-level BPE
 * ("gpt2") spells each byte as one character of 1 or 2 bytes; control and user-defined tokens match their
 * text as is. Undefined for other tokenizers, which may normalise text (collapse spaces), so no such bound.
 */
export function maxBytesPerToken(file: GgufFile): number | undefined {
  const kind = metaString(file, "tokenizer.ggml.model", undefined);
  if (kind !== "llama" && kind !== "gpt2") return undefined;
  const tokens = metaArray(file, "tokenizer.ggml.tokens", "string");
  const types = file.metadata.has("tokenizer.ggml.token_type")
    ? metaArray(file, "tokenizer.ggml.token_type", "int32")
    : [];
  let most = 1;
  for (const [i, piece] of tokens.entries()) {
    const type = types[i] ?? GGUF_TOKEN_TYPE.normal;
    let bytes = Buffer.byteLength(piece);
    if (kind === "llama" && type === GGUF_TOKEN_TYPE.byte) bytes = 1;
    else if (kind === "llama" && type === GGUF_TOKEN_TYPE.normal) bytes -= 2 * countSpaces(piece);
    if (bytes > most) most = bytes;
  }
  return most;
}

/** How many ▁ (SentencePiece's space) a piece has. */
function countSpaces(piece: string): number {
  let n = 0;
  for (const c of piece) if (c === "\u2581") n++;
  return n;
}
