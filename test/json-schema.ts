/**
 * A validator for the JSON Schema 2020-12 subset the engine data schemas in test/fixtures/engines/ use:
 * `type` (a name or a list), `required`, `properties`, `items`, `enum`, `minItems`, `minLength`. A schema
 * with any other keyword is refused, so a fixture that grows one cannot be checked by half.
 */

export interface Schema {
  $schema?: string;
  type?: string | string[];
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  enum?: unknown[];
  minItems?: number;
  minLength?: number;
}

const KEYWORDS = new Set([
  "$schema",
  "type",
  "required",
  "properties",
  "items",
  "enum",
  "minItems",
  "minLength",
]);

function typeOf(v: unknown): string[] {
  if (v === null) return ["null"];
  if (Array.isArray(v)) return ["array"];
  if (typeof v === "number") return Number.isInteger(v) ? ["number", "integer"] : ["number"];
  return [typeof v];
}

/** Every violation of `schema` by `value`, as `path: what`; empty when it validates. */
export function validate(schema: Schema, value: unknown, path = "$"): string[] {
  const unknown = Object.keys(schema).filter((k) => !KEYWORDS.has(k));
  if (unknown.length > 0)
    throw new Error(`${path}: schema keywords this validator does not implement: ${unknown}`);
  const errors: string[] = [];
  if (schema.type !== undefined) {
    const allowed = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!typeOf(value).some((t) => allowed.includes(t))) {
      return [`${path}: expected ${allowed.join(" or ")}, got ${typeOf(value)[0]}`];
    }
  }
  if (schema.enum !== undefined && !schema.enum.some((e) => e === value)) {
    errors.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if (typeof value === "string" && schema.minLength !== undefined && [...value].length < schema.minLength) {
    errors.push(`${path}: shorter than ${schema.minLength}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) {
      errors.push(`${path}: fewer than ${schema.minItems} items`);
    }
    const items = schema.items;
    if (items)
      value.forEach((v, i) => {
        errors.push(...validate(items, v, `${path}[${i}]`));
      });
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const k of schema.required ?? []) if (!(k in obj)) errors.push(`${path}: missing ${k}`);
    for (const [k, sub] of Object.entries(schema.properties ?? {})) {
      if (k in obj) errors.push(...validate(sub, obj[k], `${path}.${k}`));
    }
  }
  return errors;
}
