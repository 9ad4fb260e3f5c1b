import type { AttributeSchema } from "../data/attributes.js";
import { type DataRecord, toConversation } from "../data/record.js";
import { CONTROL_TOKEN_NAMES, renderConversation } from "../data/template.js";

/**
 * A conversation as the engines read it, cut from steerlm's own training text (`renderConversation`,
 * variant `acsft`) at its loss boundaries, so the loss falls on exactly the characters steerlm trains on:
 * each response, its line end and the `<extra_id_1>` that closes it.
 */

export interface PromptCompletion {
  prompt: string;
  completion: string;
}

/**
 * TRL's prompt/completion lines: one per response, the prompt being all the text before it (system, turns,
 * the `Assistant` header and value line, earlier responses as context) and the completion the loss span.
 */
export function promptCompletions(record: DataRecord, schema: AttributeSchema): PromptCompletion[] {
  const { text, lossSpans } = renderConversation(toConversation(record, schema), "acsft");
  return lossSpans.map(([start, end]) => ({
    prompt: text.slice(0, start),
    completion: text.slice(start, end),
  }));
}

export interface Message {
  role: "user" | "assistant";
  content: string;
}

/**
 * NeMo RL's OpenAI-format messages for its pass-through chat template (which concatenates the contents):
 * the text between loss spans as `user` messages, each loss span as an `assistant` message. The text after
 * the last response (a trailing user turn) carries no loss and is left out, as the last message must be the
 * assistant's.
 */
export function lossMessages(record: DataRecord, schema: AttributeSchema): Message[] {
  const { text, lossSpans } = renderConversation(toConversation(record, schema), "acsft");
  const out: Message[] = [];
  let at = 0;
  for (const [start, end] of lossSpans) {
    if (start > at) out.push({ role: "user", content: text.slice(at, start) });
    out.push({ role: "assistant", content: text.slice(start, end) });
    at = end;
  }
  return out;
}

/**
 * Conversations whose own text (system prompt, turns) contains a control token's spelling: steerlm keeps
 * it text, an engine's Hugging Face tokenizer reads it as the control token when it has one.
 */
export function controlTextCount(records: readonly DataRecord[]): number {
  const has = (s: string) => CONTROL_TOKEN_NAMES.some((t) => s.includes(t));
  return records.filter((r) => has(r.system) || r.turns.some((t) => has(t.text))).length;
}

/** JSON Lines text of `values`. */
export function jsonl(values: readonly unknown[]): string {
  return values.map((v) => `${JSON.stringify(v)}\n`).join("");
}
