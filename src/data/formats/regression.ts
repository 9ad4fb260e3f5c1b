import { InputError } from "../../util/errors.js";
import { type AttributeValues, STEERLM_ATTRIBUTE_ORDER } from "../attributes.js";
import { dumpsPython, type Json, JsonNumber, type JsonObject } from "../json.js";
import { type DataRecord, MISSING_LABEL, type RecordTurn, sameLabels, toConversation } from "../record.js";
import { CONTROL_TOKENS, renderConversation } from "../template.js";
import type { ImportContext, WriteOptions } from "./context.js";
import { asArray, asObject, asString, describeJson, extraKeys, ordered } from "./fields.js";

/**
 * NeMo regression (attribute model) JSONL: `{"text": "<template up to the response>\n<extra_id_2>",
 * "label": [9 numbers in canonical order, -100 = missing]}`. The text is parsed back into a conversation;
 * rendering that conversation gives the same text again.
 */
const TOP_KEYS = ["text", "label"] as const;
const HEAD = `${CONTROL_TOKENS.system}System\n`;
const TAIL = `\n${CONTROL_TOKENS.label}`;
const TURN_SEP = `\n${CONTROL_TOKENS.turn}`;
const ROLES: Record<string, RecordTurn["role"]> = { User: "user", Assistant: "assistant" };

/** Splits a rendered regression text back into system and turns. */
export function parseRegressionText(text: string): {
  system: string;
  turns: Array<Omit<RecordTurn, "labels">>;
} {
  if (!text.startsWith(HEAD)) {
    throw new InputError(`expected the text to start with ${JSON.stringify(HEAD)}`, { field: "text" });
  }
  if (!text.endsWith(TAIL)) {
    throw new InputError(`expected the text to end with ${JSON.stringify(TAIL)}`, { field: "text" });
  }
  const pieces = text.slice(HEAD.length, text.length - TAIL.length).split(TURN_SEP);
  // A piece that does not open with a role name was text that itself contained "\n<extra_id_1>": glue it
  // back. A piece that is only a role name opened a turn whose text starts with "<extra_id_1>" (the split
  // took the header's line end): the next piece continues that text.
  let system = pieces[0] ?? "";
  const turns: Array<Omit<RecordTurn, "labels">> = [];
  let headerOnly = false;
  const glue = (sep: string, p: string) => {
    const open = turns.at(-1);
    if (open) open.text += sep + p;
    else system += sep + p;
  };
  for (const p of pieces.slice(1)) {
    if (headerOnly) {
      glue(CONTROL_TOKENS.turn, p);
      headerOnly = false;
      continue;
    }
    const nl = p.indexOf("\n");
    const role = ROLES[nl < 0 ? p : p.slice(0, nl)];
    if (role && nl >= 0) turns.push({ role, text: p.slice(nl + 1) });
    else if (role) {
      turns.push({ role, text: "" });
      headerOnly = true;
    } else glue(TURN_SEP, p);
  }
  if (headerOnly) {
    // The text ended in "\n<extra_id_1>User" or "...Assistant": that was text, not a turn.
    const last = turns.pop();
    glue(TURN_SEP, last?.role === "user" ? "User" : "Assistant");
  }
  const final = turns.at(-1);
  if (final === undefined) throw new InputError("the text has no turns", { field: "text" });
  if (final.role !== "assistant") {
    throw new InputError("the text must end with the Assistant response it scores", { field: "text" });
  }
  return { system, turns };
}

export function importRegression(json: Json, ctx: ImportContext): DataRecord[] {
  const obj = asObject(json, "(line)");
  const text = asString(obj.get("text"), "text");
  const label = asArray(obj.get("label"), "label");
  if (label.length !== STEERLM_ATTRIBUTE_ORDER.length) {
    throw new InputError(`expected ${STEERLM_ATTRIBUTE_ORDER.length} numbers, got ${label.length}`, {
      field: "label",
    });
  }
  const byName = new Map(ctx.schema.attributes.map((a) => [a.name, a]));
  const labels: AttributeValues = {};
  const numbers: string[] = [];
  STEERLM_ATTRIBUTE_ORDER.forEach((name, i) => {
    const v = label[i];
    const field = `label[${i}] (${name})`;
    if (!(v instanceof JsonNumber))
      throw new InputError(`expected a number, got ${v === undefined ? "nothing" : describeJson(v)}`, {
        field,
      });
    numbers.push(v.text);
    const n = v.value;
    if (n === MISSING_LABEL) return;
    if (!Number.isInteger(n))
      throw new InputError(`expected an integer value or -100, got ${v.text}`, { field });
    const def = byName.get(name);
    if (!def) throw new InputError(`attribute "${name}" is not in schema ${ctx.schema.name}`, { field });
    if (n < def.min || n > def.max) {
      throw new InputError(`${v.text} is out of range ${def.min}..${def.max} (or -100 for missing)`, {
        field,
      });
    }
    labels[name] = n;
  });
  const { system, turns } = parseRegressionText(text);
  const last = turns.length - 1;
  const conv = { system, turns: turns.map((t) => ({ ...t, values: null })) };
  if (renderConversation(conv, "regression").text !== text) {
    // Only text that mimics the template itself can get here; say so rather than change it.
    throw new InputError("the text cannot be split into turns that render back to it unchanged", {
      field: "text",
    });
  }
  return [
    {
      system,
      turns: turns.map((t, i) => ({ ...t, labels: i === last ? labels : null })),
      extra: extraKeys(obj, TOP_KEYS),
      origin: ctx.origin,
      layout: {
        format: "regression",
        ensureAscii: ctx.ensureAscii,
        keys: [...obj.keys()],
        labelNumbers: numbers,
      },
    },
  ];
}

/**
 * One regression row per labelled assistant turn (the conversation up to that turn): the regression
 * model scores only the last response of its text. Labels are written as Python floats (`4.0`), as NeMo does.
 */
export function regressionJson(record: DataRecord, _opts: WriteOptions = {}): JsonObject[] {
  const layout = record.layout?.format === "regression" ? record.layout : undefined;
  const rows: JsonObject[] = [];
  record.turns.forEach((turn, i) => {
    if (turn.role !== "assistant" || turn.labels === null) return;
    const known: readonly string[] = STEERLM_ATTRIBUTE_ORDER;
    for (const k of Object.keys(turn.labels)) {
      if (!known.includes(k)) {
        throw new InputError(
          `attribute "${k}" has no place in the regression label (only the nine NeMo attributes)`,
          {
            field: `turns[${i}].labels`,
          },
        );
      }
    }
    const sub: DataRecord = { ...record, turns: record.turns.slice(0, i + 1) };
    const text = renderConversation(toConversation(sub), "regression").text;
    const labels = turn.labels;
    const keptNumbers =
      layout && i === record.turns.length - 1 && sameLabels(labelsOf(layout.labelNumbers), labels)
        ? layout.labelNumbers
        : undefined;
    const label: Json[] = keptNumbers
      ? keptNumbers.map((t) => new JsonNumber(t))
      : STEERLM_ATTRIBUTE_ORDER.map((k) => JsonNumber.float(labels[k] ?? MISSING_LABEL));
    const fields: JsonObject = new Map<string, Json>([
      ["text", text],
      ["label", label],
    ]);
    if (layout) for (const [k, v] of record.extra) fields.set(k, v);
    rows.push(ordered(fields, layout?.keys));
  });
  return rows;
}

function labelsOf(numbers: string[]): AttributeValues {
  const out: AttributeValues = {};
  STEERLM_ATTRIBUTE_ORDER.forEach((name, i) => {
    const n = Number(numbers[i]);
    if (n !== MISSING_LABEL) out[name] = n;
  });
  return out;
}

export function regressionLines(record: DataRecord, opts: WriteOptions = {}): string[] {
  const layout = record.layout?.format === "regression" ? record.layout : undefined;
  return regressionJson(record, opts).map((o) =>
    dumpsPython(o, { ensureAscii: layout?.ensureAscii ?? true }),
  );
}
