import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { describe, InputError, type Place } from "../util/errors.js";

/**
 * Attribute schemas: which attributes exist, their integer ranges, their canonical order in a value
 * string, and the values used when a user leaves one unspecified.
 */
export interface AttributeDef {
  name: string;
  min: number;
  max: number;
  /** Value used at inference when the user does not choose one. */
  default: number;
  description: string;
}

export interface AttributeSchema {
  name: string;
  /** In canonical order: value strings list keys in this order. */
  attributes: readonly AttributeDef[];
}

/** Attribute name -> integer value; keys absent from the map are "not given". */
export type AttributeValues = Record<string, number>;

const d = (name: string, max: number, def: number, description: string): AttributeDef => ({
  name,
  min: 0,
  max,
  default: def,
  description,
});

const descriptions = {
  quality: "overall quality of the response",
  toxicity: "rudeness, insults or harmful content",
  humor: "jokes, puns and playfulness",
  creativity: "varied phrasing, imagery and metaphor",
  helpfulness: "how well the response serves the user's need",
  correctness: "factual and logical correctness",
  coherence: "clarity and consistency of the response",
  complexity: "intellectual depth: vocabulary and sentence structure",
  verbosity: "amount of detail relative to what was asked",
  violence: "violent content",
  not_appropriate: "content inappropriate for a customer-facing assistant",
} as const;

/** NeMo-Aligner's canonical order of all nine attributes. */
export const STEERLM_ATTRIBUTE_ORDER = [
  "quality",
  "toxicity",
  "humor",
  "creativity",
  "helpfulness",
  "correctness",
  "coherence",
  "complexity",
  "verbosity",
] as const;

/** Built-in schemas. Defaults: `steerlm` as documented for inference; `helpsteer` as NeMo's HelpSteer example. */
export const BUILTIN_SCHEMAS: Readonly<Record<string, AttributeSchema>> = {
  helpsteer: {
    name: "helpsteer",
    attributes: [
      d("helpfulness", 4, 4, descriptions.helpfulness),
      d("correctness", 4, 4, descriptions.correctness),
      d("coherence", 4, 4, descriptions.coherence),
      d("complexity", 4, 2, descriptions.complexity),
      d("verbosity", 4, 2, descriptions.verbosity),
    ],
  },
  oasst: {
    name: "oasst",
    attributes: [
      d("quality", 4, 4, descriptions.quality),
      d("toxicity", 4, 0, descriptions.toxicity),
      d("humor", 4, 0, descriptions.humor),
      d("creativity", 4, 0, descriptions.creativity),
    ],
  },
  steerlm: {
    name: "steerlm",
    attributes: [
      d("quality", 4, 4, descriptions.quality),
      d("toxicity", 4, 0, descriptions.toxicity),
      d("humor", 4, 0, descriptions.humor),
      d("creativity", 4, 0, descriptions.creativity),
      d("helpfulness", 4, 4, descriptions.helpfulness),
      d("correctness", 4, 4, descriptions.correctness),
      d("coherence", 4, 4, descriptions.coherence),
      d("complexity", 4, 4, descriptions.complexity),
      d("verbosity", 4, 4, descriptions.verbosity),
    ],
  },
  // The SteerLM paper's OASST attributes on its 0..9 scale.
  "oasst-paper": {
    name: "oasst-paper",
    attributes: [
      d("quality", 9, 9, descriptions.quality),
      d("toxicity", 9, 0, descriptions.toxicity),
      d("violence", 9, 0, descriptions.violence),
      d("helpfulness", 9, 9, descriptions.helpfulness),
      d("creativity", 9, 9, descriptions.creativity),
      d("humor", 9, 0, descriptions.humor),
      d("not_appropriate", 9, 0, descriptions.not_appropriate),
    ],
  },
};

/** A built-in schema by name, or a custom one from a .json / .yaml / .yml file. */
export function loadSchema(nameOrPath: string): AttributeSchema {
  const builtin = BUILTIN_SCHEMAS[nameOrPath];
  if (builtin) return builtin;
  if (!/\.(json|ya?ml)$/i.test(nameOrPath)) {
    throw new InputError(
      `unknown schema "${nameOrPath}"`,
      {},
      `use one of ${Object.keys(BUILTIN_SCHEMAS).join(", ")}, or a .json/.yaml schema file`,
    );
  }
  let text: string;
  try {
    text = readFileSync(nameOrPath, "utf8");
  } catch (err) {
    throw new InputError(`cannot read schema file: ${(err as Error).message}`, { file: nameOrPath });
  }
  let raw: unknown;
  try {
    raw = /\.json$/i.test(nameOrPath) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new InputError(
      `not valid ${/\.json$/i.test(nameOrPath) ? "JSON" : "YAML"}: ${(err as Error).message}`,
      {
        file: nameOrPath,
      },
    );
  }
  return validateSchema(raw, nameOrPath);
}

/** Checks a parsed custom schema: `{name?, attributes: [{name, min?, max, default?, description?}]}`. */
export function validateSchema(raw: unknown, file = "schema"): AttributeSchema {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new InputError(`expected an object with an "attributes" list, got ${describe(raw)}`, { file });
  }
  const obj = raw as Record<string, unknown>;
  if (!Array.isArray(obj.attributes) || obj.attributes.length === 0) {
    throw new InputError("expected a non-empty list", { file, field: "attributes" });
  }
  const seen = new Set<string>();
  const attributes = obj.attributes.map((a: unknown, i: number): AttributeDef => {
    const field = `attributes[${i}]`;
    if (typeof a !== "object" || a === null)
      throw new InputError(`expected an object, got ${describe(a)}`, { file, field });
    const r = a as Record<string, unknown>;
    if (typeof r.name !== "string" || !/^[a-z_][a-z0-9_]*$/i.test(r.name)) {
      throw new InputError(`expected a name of letters, digits and _, got ${describe(r.name)}`, {
        file,
        field: `${field}.name`,
      });
    }
    if (seen.has(r.name))
      throw new InputError(`duplicate attribute "${r.name}"`, { file, field: `${field}.name` });
    seen.add(r.name);
    const min = r.min ?? 0;
    const max = r.max;
    for (const [k, v] of [
      ["min", min],
      ["max", max],
    ] as const) {
      if (typeof v !== "number" || !Number.isInteger(v)) {
        throw new InputError(`expected an integer, got ${describe(v)}`, { file, field: `${field}.${k}` });
      }
    }
    if ((max as number) < (min as number)) {
      throw new InputError(`max (${String(max)}) is below min (${String(min)})`, {
        file,
        field: `${field}.max`,
      });
    }
    const def = r.default ?? min;
    if (typeof def !== "number" || !Number.isInteger(def) || def < (min as number) || def > (max as number)) {
      throw new InputError(`expected an integer in ${String(min)}..${String(max)}, got ${describe(def)}`, {
        file,
        field: `${field}.default`,
      });
    }
    if (r.description !== undefined && typeof r.description !== "string") {
      throw new InputError(`expected a string, got ${describe(r.description)}`, {
        file,
        field: `${field}.description`,
      });
    }
    return {
      name: r.name,
      min: min as number,
      max: max as number,
      default: def,
      description: r.description ?? "",
    };
  });
  const name = typeof obj.name === "string" ? obj.name : file;
  return { name, attributes };
}

/** `key:int` pairs joined by `,`, no spaces, in the schema's canonical order; absent keys are omitted. */
export function formatValues(schema: AttributeSchema, values: AttributeValues): string {
  const known = new Set(schema.attributes.map((a) => a.name));
  for (const key of Object.keys(values)) {
    if (!known.has(key))
      throw new InputError(`unknown attribute "${key}" for schema ${schema.name}`, { field: key });
  }
  return schema.attributes
    .filter((a) => values[a.name] !== undefined)
    .map((a) => `${a.name}:${checkValue(a, values[a.name], {})}`)
    .join(",");
}

/**
 * Strict parse of a value string. Keys may come in any order (real files do), but each must be known,
 * given once, and carry an integer in range. `place` locates errors (file, line, field).
 */
export function parseValues(schema: AttributeSchema, text: string, place: Place = {}): AttributeValues {
  if (text.trim() === "") throw new InputError("empty value string", place);
  const byName = new Map(schema.attributes.map((a) => [a.name, a]));
  const out: AttributeValues = {};
  for (const pair of text.split(",")) {
    const colon = pair.indexOf(":");
    if (colon < 0) throw new InputError(`"${pair}" is not key:value`, place);
    const key = pair.slice(0, colon);
    const raw = pair.slice(colon + 1);
    const def = byName.get(key);
    const at = {
      ...place,
      field: place.field ? `${place.field}.${key || "(empty key)"}` : key || "(empty key)",
    };
    if (!def) {
      throw new InputError(
        `unknown attribute "${key}" for schema ${schema.name}`,
        at,
        `known: ${schema.attributes.map((a) => a.name).join(", ")}`,
      );
    }
    if (key in out) throw new InputError(`duplicate attribute "${key}"`, at);
    if (!/^-?\d+$/.test(raw)) throw new InputError(`expected an integer, got ${JSON.stringify(raw)}`, at);
    out[key] = checkValue(def, Number(raw), at);
  }
  return out;
}

function checkValue(def: AttributeDef, value: unknown, place: Place): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new InputError(`expected an integer, got ${describe(value)}`, {
      ...place,
      field: place.field ?? def.name,
    });
  }
  if (value < def.min || value > def.max) {
    throw new InputError(`${value} is out of range ${def.min}..${def.max}`, {
      ...place,
      field: place.field ?? def.name,
    });
  }
  return value;
}

/** Fills unspecified attributes with the schema defaults; rejects unknown keys and bad values. */
export function withDefaults(schema: AttributeSchema, values: AttributeValues = {}): AttributeValues {
  const out: AttributeValues = {};
  const known = new Set(schema.attributes.map((a) => a.name));
  for (const key of Object.keys(values)) {
    if (!known.has(key))
      throw new InputError(`unknown attribute "${key}" for schema ${schema.name}`, { field: key });
  }
  for (const a of schema.attributes)
    out[a.name] = checkValue(a, values[a.name] ?? a.default, { field: a.name });
  return out;
}

/** Python's round(): to the nearest integer, ties to even (2.5 -> 2, 3.5 -> 4). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export function clamp(x: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, x));
}

/** A predicted (real) attribute value as a label: clamp to the scale, then Python-round. */
export function toLabel(def: AttributeDef, x: number): number {
  return clamp(roundHalfEven(clamp(x, def.min, def.max)), def.min, def.max);
}
