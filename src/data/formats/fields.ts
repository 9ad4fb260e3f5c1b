import { describe as describeJs, InputError } from "../../util/errors.js";
import { type Json, JsonNumber, type JsonObject } from "../json.js";

/** Shape checks for imported rows: each failure names the field and says what was expected. */

export function describeJson(v: Json | undefined): string {
  if (v === undefined) return "nothing (the key is missing)";
  if (v instanceof JsonNumber) return `number ${v.text}`;
  if (v instanceof Map) return "object";
  return describeJs(v);
}

export function asObject(v: Json | undefined, field: string): JsonObject {
  if (!(v instanceof Map)) throw new InputError(`expected an object, got ${describeJson(v)}`, { field });
  return v;
}

export function asString(v: Json | undefined, field: string): string {
  if (typeof v !== "string") throw new InputError(`expected a string, got ${describeJson(v)}`, { field });
  return v;
}

export function asArray(v: Json | undefined, field: string): Json[] {
  if (!Array.isArray(v)) throw new InputError(`expected a list, got ${describeJson(v)}`, { field });
  return v;
}

/** A number that must be an integer value (`4` or `4.0`); anything else is an error, never rounded. */
export function asInteger(v: Json | undefined, field: string): number {
  if (!(v instanceof JsonNumber))
    throw new InputError(`expected an integer, got ${describeJson(v)}`, { field });
  const n = v.value;
  if (!Number.isInteger(n)) throw new InputError(`expected an integer, got ${v.text}`, { field });
  return n;
}

export function asNumber(v: Json | undefined, field: string): number {
  if (!(v instanceof JsonNumber) || !Number.isFinite(v.value)) {
    throw new InputError(`expected a number, got ${describeJson(v)}`, { field });
  }
  return v.value;
}

/** The entries of `obj` whose keys are not in `known`, in source order. */
export function extraKeys(obj: JsonObject, known: readonly string[]): JsonObject {
  const out: JsonObject = new Map();
  for (const [k, v] of obj) if (!known.includes(k)) out.set(k, v);
  return out;
}

/** A map ordered by `order` first (keys it names that exist), then the remaining keys as inserted. */
export function ordered(fields: JsonObject, order: readonly string[] | undefined): JsonObject {
  if (!order) return fields;
  const out: JsonObject = new Map();
  for (const k of order) if (fields.has(k)) out.set(k, fields.get(k) as Json);
  for (const [k, v] of fields) if (!out.has(k)) out.set(k, v);
  return out;
}
