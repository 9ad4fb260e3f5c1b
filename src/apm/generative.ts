import type { AttributeSchema, AttributeValues } from "../data/attributes.js";
import { type DataRecord, toConversation } from "../data/record.js";
import { CONTROL_TOKENS, renderConversation } from "../data/template.js";
import type { Backend } from "../ggml/backend.js";
import { forwardLogits } from "../model/infer.js";
import type { LlamaModel } from "../model/model.js";
import { encodeParts, type Tokenizer } from "../tokenizer/types.js";
import { SteerlmError } from "../util/errors.js";

/**
 * The paper's generative APM: a language model that writes the value string *after* the response
 * (`renderConversation(conv, "generative-apm")`, loss on the value lines only: trained on
 * src/run/data.ts `encodeRecords(…, "generative-apm")`), read back by greedy decoding, here or by an
 * engine serving the APM as a GGUF (`steerlm export gguf`). Decoding is
 * constrained: the value string has a fixed shape (`name:v` in schema order,
 * joined by `,`), so for each attribute the model only chooses among that attribute's allowed values.
 * That needs one vocabulary token per `name:value`, which a tokenizer trained with --init has (see
 * src/run/setup.ts, attribute tokens); a GGUF vocabulary without them is refused.
 */

/** Ids of every `name:value` token, per attribute in schema order; throws when the vocabulary lacks one. */
export function attributeTokenIds(tokenizer: Tokenizer, schema: AttributeSchema): number[][] {
  return schema.attributes.map((a) =>
    Array.from({ length: a.max - a.min + 1 }, (_, i) => {
      const text = `${a.name}:${a.min + i}`;
      const ids = tokenizer.encode(text);
      if (ids.length !== 1) {
        throw new SteerlmError(
          `the generative APM's vocabulary has no single token for "${text}"`,
          "train the generative APM with --init (its tokenizer gets one token per attribute setting)",
        );
      }
      return ids[0]!;
    }),
  );
}

/**
 * The constrained choice of the next token: among `candidates` (ids), the one the model finds most likely
 * after `window` (ids). Here by a forward pass (`modelPicker`), or by an engine serving the APM's GGUF.
 */
export type PickToken = (window: readonly number[], candidates: readonly number[]) => Promise<number>;

/** The argmax over the candidates of the model's next-token logits, computed here. */
export function modelPicker(backend: Backend, model: LlamaModel): PickToken {
  const V = model.config.vocabSize;
  return async (window, candidates) => {
    const logits = forwardLogits(backend, model, window);
    const row = (window.length - 1) * V;
    let best = 0;
    for (let v = 1; v < candidates.length; v++) {
      if ((logits[row + candidates[v]!] as number) > (logits[row + candidates[best]!] as number)) best = v;
    }
    return candidates[best]!;
  };
}

/**
 * Labels for assistant turn `turn`: the prompt is the conversation up to that response (earlier assistant
 * turns carry `earlier` labels as their value lines), then `<extra_id_2>`; each attribute is the `pick`
 * among that attribute's value tokens. The last `seqLen` tokens are used.
 */
export async function decodeGenerative(
  tokenizer: Tokenizer,
  schema: AttributeSchema,
  pairIds: readonly number[][],
  record: DataRecord,
  turn: number,
  earlier: ReadonlyMap<number, AttributeValues>,
  bos: number | null,
  seqLen: number,
  pick: PickToken,
): Promise<{ labels: AttributeValues; raw: number[] }> {
  const sub: DataRecord = {
    ...record,
    turns: record.turns
      .slice(0, turn + 1)
      .map((t, i) => ({ ...t, labels: i === turn ? null : (earlier.get(i) ?? t.labels) })),
  };
  // The render ends with the turn terminator; the value line of this turn goes where it stands.
  const parts = renderConversation(toConversation(sub, schema), "generative-apm").parts.slice(0, -1);
  parts.push({ kind: "control", text: CONTROL_TOKENS.label, loss: false });
  const ids = encodeParts(tokenizer, parts);
  if (bos !== null) ids.unshift(bos);
  const comma = tokenizer.encodeContinuation(",");
  const labels: AttributeValues = {};
  const raw: number[] = [];
  for (const [k, a] of schema.attributes.entries()) {
    const choices = pairIds[k] as number[];
    const chosen = await pick(ids.slice(Math.max(0, ids.length - seqLen)), choices);
    const value = a.min + choices.indexOf(chosen);
    labels[a.name] = value;
    raw.push(value);
    ids.push(chosen);
    if (k + 1 < schema.attributes.length) ids.push(...comma);
  }
  return { labels, raw };
}
