import type { LlamaModel, Token } from "node-llama-cpp";
import { CONTROL_TOKEN_NAMES, type ControlToken, type TemplatePart } from "../data/template.js";
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
      tokens.push(...model.tokenize(part.text, false));
    }
  }
  return { tokens, controlTokens };
}

/** A raw prompt (no template): plain text unless the caller explicitly allows special-token strings. */
export function tokenizeRaw(model: LlamaModel, text: string, specialTokens: boolean): Token[] {
  const tokens: Token[] = [];
  if (model.tokens.shouldPrependBosToken && model.tokens.bos !== null) tokens.push(model.tokens.bos);
  tokens.push(...model.tokenize(text, specialTokens));
  return tokens;
}
