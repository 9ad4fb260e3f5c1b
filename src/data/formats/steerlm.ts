import { InputError } from "../../util/errors.js";
import { parseValues } from "../attributes.js";
import { dumpsPython, type Json, type JsonObject } from "../json.js";
import { type DataRecord, labelString, looseLabels, type RecordTurn, sameLabels } from "../record.js";
import type { ImportContext, WriteOptions } from "./context.js";
import { asArray, asObject, asString, extraKeys, ordered } from "./fields.js";

/**
 * NeMo SteerLM JSONL, one conversation a line:
 * `{"system": "...", "conversations": [{"from": "User", "value": "...", "label": null},
 *   {"from": "Assistant", "value": "...", "label": "helpfulness:4,..."}], "mask": "User", "type": "VALUE_TO_TEXT"}`
 */
const TOP_KEYS = ["system", "conversations"] as const;
const TURN_KEYS = ["from", "value", "label"] as const;
const ROLES: Record<string, RecordTurn["role"]> = { User: "user", Assistant: "assistant" };

export function importSteerlm(json: Json, ctx: ImportContext): DataRecord[] {
  const obj = asObject(json, "(line)");
  const system = asString(obj.get("system"), "system");
  const convs = asArray(obj.get("conversations"), "conversations");
  if (convs.length === 0) throw new InputError("conversation has no turns", { field: "conversations" });
  const turnKeys: string[][] = [];
  const labelText: Array<string | null | undefined> = [];
  const turns = convs.map((c, i): RecordTurn => {
    const field = `conversations[${i}]`;
    const t = asObject(c, field);
    const from = asString(t.get("from"), `${field}.from`);
    const role = ROLES[from];
    if (!role)
      throw new InputError(`expected "User" or "Assistant", got "${from}"`, { field: `${field}.from` });
    const text = asString(t.get("value"), `${field}.value`);
    const label = t.get("label");
    let labels: RecordTurn["labels"] = null;
    if (label !== undefined && label !== null) {
      const s = asString(label, `${field}.label`);
      if (role === "user") {
        throw new InputError("a User turn cannot carry attribute labels", { field: `${field}.label` });
      }
      labels = parseValues(ctx.schema, s, { field: `${field}.label` });
    }
    turnKeys.push([...t.keys()]);
    labelText.push(label === undefined ? undefined : (label as string | null));
    const turn: RecordTurn = { role, text, labels };
    const extra = extraKeys(t, TURN_KEYS);
    if (extra.size > 0) turn.extra = extra;
    return turn;
  });
  if (!turns.some((t) => t.role === "assistant")) {
    throw new InputError("conversation has no Assistant turn", { field: "conversations" });
  }
  return [
    {
      system,
      turns,
      extra: extraKeys(obj, TOP_KEYS),
      origin: ctx.origin,
      layout: { format: "steerlm", ensureAscii: ctx.ensureAscii, keys: [...obj.keys()], turnKeys, labelText },
    },
  ];
}

/** The record as a NeMo SteerLM JSON object, in the source's key order when it came from one. */
export function steerlmJson(record: DataRecord, opts: WriteOptions = {}): JsonObject {
  const layout = record.layout?.format === "steerlm" ? record.layout : undefined;
  const conversations = record.turns.map((t, i): Json => {
    const fields: JsonObject = new Map<string, Json>([
      ["from", t.role === "user" ? "User" : "Assistant"],
      ["value", t.text],
    ]);
    const kept = layout?.turnKeys[i] ? layout.labelText[i] : null;
    if (t.labels !== null) {
      // The label text as read (keys in any order) when it still says the same thing.
      const same = typeof kept === "string" && sameLabels(looseLabels(kept), t.labels);
      fields.set("label", same ? (kept as string) : labelString(t.labels, opts.schema));
    } else if (kept !== undefined) {
      fields.set("label", null);
    }
    for (const [k, v] of t.extra ?? []) fields.set(k, v);
    return ordered(fields, layout?.turnKeys[i]);
  });
  const top: JsonObject = new Map<string, Json>([
    ["system", record.system],
    ["conversations", conversations],
  ]);
  for (const [k, v] of record.extra) top.set(k, v);
  if (!layout) {
    // What NeMo's own preprocessing writes for a new record.
    if (!top.has("mask")) top.set("mask", "User");
    if (!top.has("type")) top.set("type", "VALUE_TO_TEXT");
  }
  return ordered(top, layout?.keys);
}

export function steerlmLine(record: DataRecord, opts: WriteOptions = {}): string {
  const layout = record.layout?.format === "steerlm" ? record.layout : undefined;
  return dumpsPython(steerlmJson(record, opts), { ensureAscii: layout?.ensureAscii ?? true });
}
