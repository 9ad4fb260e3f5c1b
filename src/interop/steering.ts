/**
 * What an exported model carries so that other engines serve it steered, decided here once for GGUF and
 * Hugging Face files alike:
 *
 * - the attribute schema and steerlm's template: `steerlm.schema` / `steerlm.template` in a GGUF, the
 *   `steerlm` key of config.json (written by `toHfConfig`);
 * - the Jinja chat template (`jinjaChatTemplate`) as the GGUF's `tokenizer.chat_template` and
 *   tokenizer_config.json's `chat_template`, starting with `{{ bos_token }}` when the tokenizer prepends BOS
 *   (transformers and vLLM tokenize a rendered chat without adding special tokens);
 * - `<extra_id_1>` as the end of a turn: the GGUF's `tokenizer.ggml.eot_token_id` (llama-server hides control
 *   tokens from the text, so no stop string could catch it) and an `eos_token_id` of generation_config.json
 *   (vLLM and transformers' generate stop on each of them).
 */
import type { AttributeSchema } from "../data/attributes.js";
import { jinjaChatTemplate } from "../data/chat-template.js";
import { CONTROL_TOKENS, templateText } from "../data/template.js";
import { type GgufMetaValue, STEERLM_SCHEMA_KEY, STEERLM_TEMPLATE_KEY, str, u32 } from "../gguf/types.js";
import { GGUF_TOKEN_TYPE, type GgufVocab } from "../gguf/vocab.js";

/** The token that ends an assistant turn. */
export const END_OF_TURN = CONTROL_TOKENS.turn;

/** The chat template for a schema; `addsBos`: the tokenizer prepends BOS to a sequence. */
export function steeringChatTemplate(schema: AttributeSchema, addsBos: boolean): string {
  return jinjaChatTemplate(schema, { bosToken: addsBos });
}

/** `steerlm.schema` and `steerlm.template` (every steerlm GGUF, adapters included). */
export function steerlmMetadata(schema: AttributeSchema): Array<[string, GgufMetaValue]> {
  return [
    [STEERLM_SCHEMA_KEY, str(JSON.stringify(schema))],
    [STEERLM_TEMPLATE_KEY, str(templateText())],
  ];
}

/**
 * A model GGUF's vocabulary with the chat template, and its extra metadata: the schema, the template and the
 * end-of-turn id (when the vocabulary holds `<extra_id_1>` as a control token).
 */
export function steerGguf(
  vocab: GgufVocab,
  schema: AttributeSchema,
): { vocab: GgufVocab; metadata: Array<[string, GgufMetaValue]> } {
  const addsBos = vocab.addBos && vocab.bosId !== null;
  const metadata = steerlmMetadata(schema);
  const eot = vocab.tokens.indexOf(END_OF_TURN);
  if (eot >= 0 && vocab.tokenTypes[eot] === GGUF_TOKEN_TYPE.control) {
    metadata.push(["tokenizer.ggml.eot_token_id", u32(eot)]);
  }
  return { vocab: { ...vocab, chatTemplate: steeringChatTemplate(schema, addsBos) }, metadata };
}

/** generation_config.json's `eos_token_id`: the tokenizer's EOS and the end of turn, when there are. */
export function eosTokenIds(eosId: number | null, endOfTurnId: number | null): number[] {
  return [...new Set([eosId, endOfTurnId].filter((id): id is number => id !== null))];
}
