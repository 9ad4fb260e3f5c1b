import { parse as parseYaml } from "yaml";
import { describe, InputError, type Place } from "../util/errors.js";
import { readInputText } from "../util/files.js";

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

/**
 * Attribute name -> value (an integer, or a fraction where the caller mixes conditionings: see
 * `ParseOptions.fractions`); keys absent from the map are "not given".
 */
export type AttributeValues = Record<string, number>;

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

const d = (name: keyof typeof descriptions, max: number, def: number): AttributeDef => ({
  name,
  min: 0,
  max,
  default: def,
  description: descriptions[name],
});

/** OpenAssistant's four on SteerLM's 0..4 scale. */
export const OASST_ATTRIBUTES = [
  d("quality", 4, 4),
  d("toxicity", 4, 0),
  d("humor", 4, 0),
  d("creativity", 4, 0),
];

/** HelpSteer's five; `lengthDefault` is complexity's and verbosity's default. */
const helpsteerAttributes = (lengthDefault: number) => [
  d("helpfulness", 4, 4),
  d("correctness", 4, 4),
  d("coherence", 4, 4),
  d("complexity", 4, lengthDefault),
  d("verbosity", 4, lengthDefault),
];

/** Both sets, in NeMo-Aligner's order (STEERLM_ATTRIBUTE_ORDER). */
function steerlmAttributes(): AttributeDef[] {
  const all = [...OASST_ATTRIBUTES, ...helpsteerAttributes(4)];
  return STEERLM_ATTRIBUTE_ORDER.map((name) => {
    const a = all.find((x) => x.name === name);
    if (!a) throw new Error(`no definition of SteerLM attribute ${name}`);
    return a;
  });
}

/** Built-in schemas. Defaults: `steerlm` as documented for inference; `helpsteer` as NeMo's HelpSteer example. */
/** The schema where none is named: SteerLM's nine attributes. */
export const DEFAULT_SCHEMA = "steerlm";

export const BUILTIN_SCHEMAS = {
  helpsteer: { name: "helpsteer", attributes: helpsteerAttributes(2) },
  oasst: { name: "oasst", attributes: OASST_ATTRIBUTES },
  steerlm: { name: "steerlm", attributes: steerlmAttributes() },
  // The SteerLM paper's OASST attributes on its 0..9 scale.
  "oasst-paper": {
    name: "oasst-paper",
    attributes: [
      d("quality", 9, 9),
      d("toxicity", 9, 0),
      d("violence", 9, 0),
      d("helpfulness", 9, 9),
      d("creativity", 9, 9),
      d("humor", 9, 0),
      d("not_appropriate", 9, 0),
    ],
  },
} satisfies Readonly<Record<string, AttributeSchema>>;

/** A built-in schema by name, or a custom one from a .json / .yaml / .yml file. */
export function loadSchema(nameOrPath: string): AttributeSchema {
  // a schema's own JSON, as runs store the one they took from their model
  if (nameOrPath.trimStart().startsWith("{")) return schemaFromJson(nameOrPath, { field: "schema" });
  // Own keys only: "constructor" is not a schema.
  const byName: Readonly<Record<string, AttributeSchema>> = BUILTIN_SCHEMAS;
  const builtin = Object.hasOwn(byName, nameOrPath) ? byName[nameOrPath] : undefined;
  if (builtin) return builtin;
  if (!/\.(json|ya?ml)$/i.test(nameOrPath)) {
    throw new InputError(
      `unknown schema "${nameOrPath}"`,
      {},
      `use one of ${Object.keys(BUILTIN_SCHEMAS).join(", ")}, or a .json/.yaml schema file`,
    );
  }
  const text = readInputText(nameOrPath, "cannot read the schema file");
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
/**
 * A schema stored as JSON text (a GGUF's `steerlm.schema`, a checkpoint's header, a run's settings), parsed
 * and validated; `where` names where it was stored.
 */
export function schemaFromJson(text: unknown, where: { file?: string; field: string }): AttributeSchema {
  if (typeof text !== "string") throw new InputError(`expected a JSON string, got ${describe(text)}`, where);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InputError(`not valid JSON: ${(err as Error).message}`, where);
  }
  return validateSchema(raw, where.file === undefined ? where.field : `${where.file}: ${where.field}`);
}

export function validateSchema(raw: unknown, file = "schema"): AttributeSchema {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new InputError(`expected an object with an "attributes" list, got ${describe(raw)}`, { file });
  }
  const obj = raw as Record<string, unknown>;
  refuseUnknownKeys(obj, SCHEMA_KEYS, { file });
  if (!Array.isArray(obj.attributes) || obj.attributes.length === 0) {
    throw new InputError("expected a non-empty list", { file, field: "attributes" });
  }
  const seen = new Set<string>();
  const attributes = obj.attributes.map((a: unknown, i: number): AttributeDef => {
    const field = `attributes[${i}]`;
    if (typeof a !== "object" || a === null)
      throw new InputError(`expected an object, got ${describe(a)}`, { file, field });
    const r = a as Record<string, unknown>;
    refuseUnknownKeys(r, ATTRIBUTE_KEYS, { file, field });
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

const SCHEMA_KEYS = ["name", "attributes"];
const ATTRIBUTE_KEYS = ["name", "min", "max", "default", "description"];

/** A misspelt key (`defualt: 4`) would leave its setting at the default unnoticed: refused, by name. */
function refuseUnknownKeys(obj: Record<string, unknown>, known: readonly string[], place: Place): void {
  const unknown = Object.keys(obj).find((k) => !known.includes(k));
  if (unknown === undefined) return;
  const field = place.field === undefined ? unknown : `${place.field}.${unknown}`;
  throw new InputError(`unknown key (expected ${known.join(", ")})`, { ...place, field });
}

/** Why an attribute value was refused (the server's error `code`). */
export type AttributeProblem =
  | "unknown_attribute"
  | "duplicate_attribute"
  | "not_an_integer"
  | "not_a_number"
  | "out_of_range"
  | "malformed_values";

/** A bad attribute name or value, with what kind of problem it is. */
export class AttributeError extends InputError {
  override name = "AttributeError";
  constructor(
    what: string,
    place: Place,
    readonly code: AttributeProblem,
    hint?: string,
  ) {
    super(what, place, hint);
  }
}

/** How value strings separate a name from its value: data files use `:`; users may also type `=`. */
export type ValueSyntax = "file" | "user";

export interface ParseOptions {
  /** Default `user`. */
  syntax?: ValueSyntax;
  /**
   * Accept fractional values (`humor=2.5`) within the scale. Only for callers that can honour them:
   * inference mixes the two neighbouring integer conditionings (src/inference/mixture.ts). Data files,
   * labels and training stay integer.
   */
  fractions?: boolean;
}

/**
 * Attribute values as a user gives them: a value string (`humor=3,verbosity:1`) or an object of
 * name -> integer. Every name must be in the schema, given once, with an integer in its range (or any
 * number in it, with `fractions`). The CLI (`--attr`, chat's `/set`), the library (`SteerableModel`) and
 * the server (`steerlm.attributes`) all parse through here, so the same bad value gets the same
 * message; `place.field` says where it was given and each error names the attribute below it
 * (`--attr.humor`).
 */
export function parseAttributes(
  schema: AttributeSchema,
  input: unknown,
  place: Place = { field: "attributes" },
  opts: ParseOptions = {},
): AttributeValues {
  const fractions = opts.fractions ?? false;
  if (typeof input === "string")
    return parseValueString(schema, input, place, opts.syntax ?? "user", fractions);
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new AttributeError(
      `expected a value string or an object of name: ${fractions ? "number" : "integer"}, got ${describe(input)}`,
      place,
      "malformed_values",
    );
  }
  const out: AttributeValues = {};
  for (const [name, value] of Object.entries(input)) {
    const at = below(place, name);
    out[name] = checkValue(attributeDef(schema, name, at), value, at, fractions);
  }
  return out;
}

/** Strict parse of a data file's value string (`key:int` pairs): `parseAttributes` with `:` only. */
export function parseValues(schema: AttributeSchema, text: string, place: Place = {}): AttributeValues {
  return parseAttributes(schema, text, place, { syntax: "file" });
}

function parseValueString(
  schema: AttributeSchema,
  text: string,
  place: Place,
  syntax: ValueSyntax,
  fractions: boolean,
): AttributeValues {
  if (text.trim() === "") throw new AttributeError("empty value string", place, "malformed_values");
  const separator = syntax === "file" ? /:/ : /[:=]/;
  const out: AttributeValues = {};
  for (const pair of text.split(",")) {
    const at = separator.exec(pair)?.index;
    if (at === undefined) {
      const form = syntax === "file" ? "key:value" : "key=value";
      throw new AttributeError(`"${pair}" is not ${form}`, place, "malformed_values");
    }
    const key = pair.slice(0, at);
    const raw = pair.slice(at + 1);
    const where = below(place, key || "(empty key)");
    const def = attributeDef(schema, key, where);
    if (Object.hasOwn(out, key))
      throw new AttributeError(`duplicate attribute "${key}"`, where, "duplicate_attribute");
    const numeric = fractions ? /^-?\d+(\.\d+)?$/ : /^-?\d+$/;
    out[key] = checkValue(def, numeric.test(raw) ? Number(raw) : raw, where, fractions);
  }
  return out;
}

const below = (place: Place, name: string): Place => ({
  ...place,
  field: place.field ? `${place.field}.${name}` : name,
});

/** The schema's definition of `name`; an unknown name is an error at `place` listing the known ones. */
export function attributeDef(schema: AttributeSchema, name: string, place: Place): AttributeDef {
  const def = schema.attributes.find((a) => a.name === name);
  if (def) return def;
  throw new AttributeError(
    `unknown attribute "${name}" for schema ${schema.name}`,
    place,
    "unknown_attribute",
    `known: ${schema.attributes.map((a) => a.name).join(", ")}`,
  );
}

function checkValue(def: AttributeDef, value: unknown, place: Place, fractions: boolean): number {
  if (typeof value !== "number" || !(fractions ? Number.isFinite(value) : Number.isInteger(value))) {
    throw fractions
      ? new AttributeError(`expected a number, got ${describe(value)}`, place, "not_a_number")
      : new AttributeError(`expected an integer, got ${describe(value)}`, place, "not_an_integer");
  }
  if (value < def.min || value > def.max)
    throw new AttributeError(`${value} is out of range ${def.min}..${def.max}`, place, "out_of_range");
  return value;
}

/**
 * `key:int` pairs joined by `,`, no spaces, in the schema's canonical order; absent keys are omitted.
 * With `fractions`, fractional values print as JavaScript writes numbers (`humor:2.5`).
 */
export function formatValues(
  schema: AttributeSchema,
  values: AttributeValues,
  opts: Pick<ParseOptions, "fractions"> = {},
): string {
  const checked = parseAttributes(schema, values, {}, opts);
  return schema.attributes
    .filter((a) => checked[a.name] !== undefined)
    .map((a) => `${a.name}:${checked[a.name]}`)
    .join(",");
}

/** Checked values (`parseAttributes`), with every unspecified attribute at its schema default. */
export function withDefaults(
  schema: AttributeSchema,
  values: unknown = {},
  place: Place = {},
  opts: Pick<ParseOptions, "fractions"> = {},
): AttributeValues {
  const given = parseAttributes(schema, values, place, opts);
  const out: AttributeValues = {};
  for (const a of schema.attributes) out[a.name] = given[a.name] ?? a.default;
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
