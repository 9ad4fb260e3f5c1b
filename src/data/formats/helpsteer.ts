import { editDistance } from "../../util/edit-distance.js";
import { InputError } from "../../util/errors.js";
import type { AttributeSchema, AttributeValues } from "../attributes.js";
import type { Json } from "../json.js";
import type { DataRecord } from "../record.js";
import type { ImportContext } from "./context.js";
import { asInteger, asObject, asString, describeJson, extraKeys } from "./fields.js";

/**
 * Hugging Face `nvidia/HelpSteer` and `nvidia/HelpSteer2` rows: `prompt, response` and one integer
 * column per attribute of the schema (default `helpsteer`). HelpSteer2 multi-turn prompts already
 * contain `\n<extra_id_1>Assistant\n...\n<extra_id_1>User\n...`; they are kept as one user turn, which
 * renders to the same text.
 */
export function importHelpsteer(json: Json, ctx: ImportContext): DataRecord[] {
  const row = asObject(json, "(row)");
  const prompt = asString(row.get("prompt"), "prompt");
  const response = asString(row.get("response"), "response");
  refuseMisspeltColumns(row, ctx.schema);
  const labels: AttributeValues = {};
  for (const def of ctx.schema.attributes) {
    const v = row.get(def.name);
    if (v === undefined || v === null) continue; // a missing label is omitted, not invented
    const n = asInteger(v, def.name);
    if (n < def.min || n > def.max) {
      throw new InputError(`${n} is out of range ${def.min}..${def.max}`, { field: def.name });
    }
    labels[def.name] = n;
  }
  return [
    {
      system: ctx.system,
      turns: [
        { role: "user", text: prompt, labels: null },
        { role: "assistant", text: response, labels: Object.keys(labels).length > 0 ? labels : null },
      ],
      extra: extraKeys(row, ["prompt", "response", ...ctx.schema.attributes.map((a) => a.name)]),
      origin: ctx.origin,
    },
  ];
}

/**
 * A label column spelt one or two letters away from an attribute (`helpfullness`) would be kept as an extra
 * key and the label lost without a word: refused, naming the attribute it resembles. Other columns (a
 * subset schema's other attributes, `split`, ...) are kept as extra keys.
 */
function refuseMisspeltColumns(row: ReadonlyMap<string, Json>, schema: AttributeSchema): void {
  const names = schema.attributes.map((a) => a.name);
  for (const [column, value] of row) {
    if (names.includes(column) || typeof value === "string") continue;
    const near = names.find((n) => editDistance([...column], [...n], 2) <= 2);
    if (near !== undefined)
      throw new InputError(
        `not an attribute of schema ${schema.name}: did you mean ${near}?`,
        { field: column },
        "rename the column, or name a schema that has it (--schema)",
      );
  }
}

/**
 * HelpSteer2 `preference` rows: `prompt, response_1, response_2, preference_strength (-3..3), ...`.
 * Each row becomes two unlabelled records (one per response) that share a pair id and carry the
 * preference; the other columns (`split`, `preference_statement`, ...) are kept as extra keys.
 */
export function importPreference(json: Json, ctx: ImportContext): DataRecord[] {
  const row = asObject(json, "(row)");
  const prompt = asString(row.get("prompt"), "prompt");
  const responses = [
    asString(row.get("response_1"), "response_1"),
    asString(row.get("response_2"), "response_2"),
  ];
  const strengthJson = row.get("preference_strength");
  const strength = asInteger(strengthJson, "preference_strength");
  if (strength < -3 || strength > 3) {
    throw new InputError(`expected an integer in -3..3, got ${describeJson(strengthJson)}`, {
      field: "preference_strength",
    });
  }
  const extra = extraKeys(row, ["prompt", "response_1", "response_2"]);
  const pairId = `${ctx.origin.file}:${ctx.origin.line}`;
  return responses.map(
    (text, i): DataRecord => ({
      system: ctx.system,
      turns: [
        { role: "user", text: prompt, labels: null },
        { role: "assistant", text, labels: null },
      ],
      extra: new Map(extra),
      preference: { pairId, response: i === 0 ? 1 : 2, strength },
      origin: ctx.origin,
    }),
  );
}
