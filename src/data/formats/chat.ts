import { InputError } from "../../util/errors.js";
import { type AttributeValues, parseValues } from "../attributes.js";
import { dumpsPython, type Json, JsonNumber, type JsonObject } from "../json.js";
import { type DataRecord, labelString, type RecordTurn } from "../record.js";
import type { ImportContext, WriteOptions } from "./context.js";
import { asArray, asInteger, asObject, asString, extraKeys } from "./fields.js";

/**
 * Plain chat JSONL, OpenAI style: `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}],
 * "attributes": {"helpfulness": 4, ...}}`. The top-level `attributes` label the last assistant message;
 * an assistant message may also carry its own `attributes` (multi-turn data labelled per turn).
 */
const TOP_KEYS = ["messages", "attributes"] as const;
const MESSAGE_KEYS = ["role", "content", "attributes"] as const;

function readAttributes(v: Json | undefined, field: string, ctx: ImportContext): AttributeValues | null {
  if (v === undefined || v === null) return null;
  const obj = asObject(v, field);
  if (obj.size === 0) return null;
  // Re-use the strict value-string parser so unknown keys and ranges get the same messages everywhere.
  const text = [...obj].map(([k, x]) => `${k}:${asInteger(x, `${field}.${k}`)}`).join(",");
  return parseValues(ctx.schema, text, { field });
}

export function importChat(json: Json, ctx: ImportContext): DataRecord[] {
  const obj = asObject(json, "(line)");
  const messages = asArray(obj.get("messages"), "messages");
  let system: string | undefined;
  const turns: RecordTurn[] = [];
  messages.forEach((m, i) => {
    const field = `messages[${i}]`;
    const msg = asObject(m, field);
    const role = asString(msg.get("role"), `${field}.role`);
    const content = asString(msg.get("content"), `${field}.content`);
    if (role === "system") {
      if (i !== 0) throw new InputError("a system message must come first", { field: `${field}.role` });
      system = content;
      return;
    }
    if (role !== "user" && role !== "assistant") {
      throw new InputError(`expected "system", "user" or "assistant", got "${role}"`, {
        field: `${field}.role`,
      });
    }
    const labels = readAttributes(msg.get("attributes"), `${field}.attributes`, ctx);
    if (labels && role === "user") {
      throw new InputError("a user message cannot carry attribute labels", { field: `${field}.attributes` });
    }
    const turn: RecordTurn = { role, text: content, labels };
    const extra = extraKeys(msg, MESSAGE_KEYS);
    if (extra.size > 0) turn.extra = extra;
    turns.push(turn);
  });
  const last = turns.filter((t) => t.role === "assistant").at(-1);
  if (last === undefined)
    throw new InputError("conversation has no assistant message", { field: "messages" });
  const top = readAttributes(obj.get("attributes"), "attributes", ctx);
  if (top) {
    if (last.labels) {
      throw new InputError(
        "both the top-level attributes and the last assistant message's attributes are given",
        {
          field: "attributes",
        },
      );
    }
    last.labels = top;
  }
  return [{ system: system ?? ctx.system, turns, extra: extraKeys(obj, TOP_KEYS), origin: ctx.origin }];
}

function attributesJson(labels: AttributeValues, opts: WriteOptions): JsonObject {
  // Same order as a value string.
  const order = labelString(labels, opts.schema)
    .split(",")
    .map((p) => p.slice(0, p.indexOf(":")));
  return new Map(order.map((k) => [k, JsonNumber.int(labels[k] ?? Number.NaN)]));
}

export function chatJson(record: DataRecord, opts: WriteOptions = {}): JsonObject {
  const labelled = record.turns.filter((t) => t.role === "assistant" && t.labels !== null);
  const lastAssistant = record.turns.filter((t) => t.role === "assistant").at(-1);
  const onlyLast = labelled.length === 1 ? labelled[0] === lastAssistant : false;
  const messages: Json[] = [
    new Map<string, Json>([
      ["role", "system"],
      ["content", record.system],
    ]),
  ];
  for (const t of record.turns) {
    const msg: JsonObject = new Map<string, Json>([
      ["role", t.role],
      ["content", t.text],
    ]);
    if (t.labels && !onlyLast) msg.set("attributes", attributesJson(t.labels, opts));
    for (const [k, v] of t.extra ?? []) msg.set(k, v);
    messages.push(msg);
  }
  const out: JsonObject = new Map<string, Json>([["messages", messages]]);
  if (onlyLast && lastAssistant?.labels) out.set("attributes", attributesJson(lastAssistant.labels, opts));
  for (const [k, v] of record.extra) out.set(k, v);
  return out;
}

export function chatLine(record: DataRecord, opts: WriteOptions = {}): string {
  return dumpsPython(chatJson(record, opts), { ensureAscii: false, compact: true });
}
