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
 * src/run/data.ts `encodeRecords(…, "generative-apm")`), read back by greedy
 * decoding. Decoding here is constrained: the value string has a fixed shape (`name:v` in schema order,
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
      return ids[0] as number;
    }),
  );
}

/**
 * Labels for assistant turn `turn`: the prompt is the conversation up to that response (earlier assistant
 * turns carry `earlier` labels as their value lines), then `<extra_id_2>`; each attribute is the argmax of
 * the model's next-token logits over that attribute's value tokens. The last `seqLen` tokens are used.
 */
export function decodeGenerative(
  backend: Backend,
  model: LlamaModel,
  tokenizer: Tokenizer,
  schema: AttributeSchema,
  pairIds: readonly number[][],
  record: DataRecord,
  turn: number,
  earlier: ReadonlyMap<number, AttributeValues>,
  bos: number | null,
  seqLen: number,
): { labels: AttributeValues; raw: number[] } {
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
  const V = model.config.vocabSize;
  const labels: AttributeValues = {};
  const raw: number[] = [];
  schema.attributes.forEach((a, k) => {
    const window = ids.slice(Math.max(0, ids.length - seqLen));
    const logits = forwardLogits(backend, model, window);
    const row = (window.length - 1) * V;
    const choices = pairIds[k] as number[];
    let best = 0;
    for (let v = 1; v < choices.length; v++) {
      if (
        (logits[row + (choices[v] as number)] as number) > (logits[row + (choices[best] as number)] as number)
      )
        best = v;
    }
    labels[a.name] = a.min + best;
    raw.push(a.min + best);
    ids.push(choices[best] as number);
    if (k + 1 < schema.attributes.length) ids.push(...comma);
  });
  return { labels, raw };
}
