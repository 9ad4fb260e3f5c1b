import { InputError } from "../../util/errors.js";
import {
  type AttributeDef,
  type AttributeSchema,
  type AttributeValues,
  BUILTIN_SCHEMAS,
  OASST_ATTRIBUTES,
  roundHalfEven,
} from "../attributes.js";
import type { Json, JsonObject } from "../json.js";
import type { DataRecord, RecordTurn } from "../record.js";
import type { ImportContext, ImportResult } from "./context.js";
import { asArray, asNumber, asObject, asString } from "./fields.js";

/**
 * OpenAssistant message trees (`*.trees.jsonl[.gz]`), one tree a line:
 * `{"message_tree_id": ..., "prompt": {"role": "prompter", "text": ..., "lang": "en",
 *   "labels": {"quality": {"value": 0.75, "count": 3}, ...}, "replies": [...]}}`.
 * Every root-to-leaf path with at least two turns is one record. A label in 0..1 becomes
 * `round(value * max)` (Python's half-to-even; `max` is 4 for the `oasst` schema, 9 for `oasst-paper`);
 * labels the schema does not name, and missing labels, are omitted. Only the paper's 0..9 schema takes all of
 * its attributes from OASST; any other takes the four NeMo's preprocessing does (quality, toxicity, humor,
 * creativity): OASST's own `helpfulness` vote is not HelpSteer's helpfulness, which `steerlm` means. Deleted messages and their
 * replies are left out, as in the released "ready" exports.
 */
const ROLES: Record<string, RecordTurn["role"]> = { prompter: "user", assistant: "assistant" };

interface Node {
  msg: JsonObject;
  field: string;
}

function toTurn(node: Node, ctx: ImportContext): RecordTurn {
  const { msg, field } = node;
  const roleName = asString(msg.get("role"), `${field}.role`);
  const role = ROLES[roleName];
  if (!role)
    throw new InputError(`expected "prompter" or "assistant", got "${roleName}"`, { field: `${field}.role` });
  const text = asString(msg.get("text"), `${field}.text`);
  let labels: AttributeValues | null = null;
  const rawLabels = msg.get("labels");
  if (role === "assistant" && rawLabels !== undefined && rawLabels !== null) {
    const obj = asObject(rawLabels, `${field}.labels`);
    const out: AttributeValues = {};
    for (const def of labelledByOasst(ctx.schema)) {
      const entry = obj.get(def.name);
      if (entry === undefined || entry === null) continue;
      const f = `${field}.labels.${def.name}.value`;
      const v = asNumber(asObject(entry, `${field}.labels.${def.name}`).get("value"), f);
      if (v < 0 || v > 1) throw new InputError(`expected a value in 0..1, got ${v}`, { field: f });
      out[def.name] = roundHalfEven(v * def.max);
    }
    if (Object.keys(out).length > 0) labels = out;
  }
  return { role, text, labels };
}

function labelledByOasst(schema: AttributeSchema): readonly AttributeDef[] {
  if (schema.name === BUILTIN_SCHEMAS["oasst-paper"].name) return schema.attributes;
  return schema.attributes.filter((a) => OASST_ATTRIBUTES.some((o) => o.name === a.name));
}

export function importOasst(json: Json, ctx: ImportContext): ImportResult {
  const tree = asObject(json, "(line)");
  const root = asObject(tree.get("prompt"), "prompt");
  if (ctx.lang !== undefined) {
    const lang = root.get("lang");
    if (lang !== ctx.lang) return { filtered: `language is not ${ctx.lang}` };
  }
  const records: DataRecord[] = [];
  const path: RecordTurn[] = [];
  const walk = (node: Node): void => {
    if (node.msg.get("deleted") === true) return;
    path.push(toTurn(node, ctx));
    const replies = node.msg.get("replies");
    const live = (replies === undefined || replies === null ? [] : asArray(replies, `${node.field}.replies`))
      .map((r, i): Node => {
        const field = `${node.field}.replies[${i}]`;
        return { msg: asObject(r, field), field };
      })
      .filter((n) => n.msg.get("deleted") !== true);
    if (live.length === 0) {
      if (path.length >= 2) {
        records.push({
          system: ctx.system,
          turns: path.map((t) => ({ ...t })),
          extra: new Map(
            tree.has("message_tree_id") ? [["message_tree_id", tree.get("message_tree_id") as Json]] : [],
          ),
          origin: ctx.origin,
        });
      }
    } else {
      for (const child of live) walk(child);
    }
    path.pop();
  };
  walk({ msg: root, field: "prompt" });
  if (records.length === 0) return { filtered: "no thread of two or more turns" };
  return records;
}
