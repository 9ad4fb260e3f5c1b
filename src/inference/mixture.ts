import type { AttributeDef, AttributeSchema, AttributeValues } from "../data/attributes.js";
import { describe, InputError, type Place } from "../util/errors.js";
import { checkNumber, type NumberRange } from "../util/numbers.js";

/**
 * Beyond SteerLM's integer value strings: the conditionings whose next-token log-probabilities one
 * decoding step combines into a single distribution,
 *
 *   l = (1 + g) · Σ_c π_c · l_c  −  g · l_contrast
 *
 * - Fractional values (`humor: 2.5`) mix the neighbouring integer conditionings log-linearly: each
 *   fractional attribute a at v = lo + w contributes the corners lo (weight 1 − w) and lo + 1 (weight w),
 *   and the corners' weights π_c are the products over the fractional attributes (exact multilinear
 *   interpolation in the fractions). Integer values give one corner of weight 1: today's prompt.
 * - Attribute guidance (classifier-free guidance between two conditionings) with strength g pushes the
 *   distribution away from a contrast conditioning: the same conversation with the steered attributes
 *   (the ones the caller gave) moved as `ContrastMode` says. g = 0 leaves no contrast.
 *
 * A plan of one conditioning with weight 1 is exactly today's generation (the model takes its plain path).
 */

/**
 * - `opposite`: each steered attribute at the other end of its scale (the end farther from the requested
 *   value; an attribute asked at the exact middle keeps its value, having no direction to push).
 * - `defaults`: each steered attribute at the schema default (guidance then amplifies the request's
 *   difference from an unsteered reply; attributes asked at their default are not pushed).
 */
export type ContrastMode = "opposite" | "defaults";
export const CONTRAST_MODES: readonly ContrastMode[] = ["opposite", "defaults"];

/** The guidance strength, said once for the library, the server (`steerlm.guidance`) and the CLI. */
export const GUIDANCE = {
  range: { min: 0, max: 10 } satisfies NumberRange,
  default: 0,
  help: "attribute guidance strength g: l = l_req + g·(l_req − l_contrast); 0 is plain SteerLM",
};

/**
 * Default contrast, chosen by measurement on the demo model (docs/steering.md): `defaults` raised
 * correctness's per-response Spearman more (0.56 -> 0.71 at g = 2, against 0.60) and kept humor exact
 * where `opposite` lost it (1.00 against 0.91 at g = 2).
 */
export const DEFAULT_CONTRAST: ContrastMode = "defaults";

/** One conditioning: integer attribute values (every schema attribute) and its coefficient in l. */
export interface Conditioning {
  attributes: AttributeValues;
  weight: number;
}

/** A guidance strength in GUIDANCE.range; undefined stays undefined. */
export function checkGuidance(value: unknown, place: Place = { setting: "guidance" }): number | undefined {
  return value === undefined ? undefined : checkNumber(value, GUIDANCE.range, place);
}

/** One of CONTRAST_MODES; undefined stays undefined. */
export function checkContrast(
  value: unknown,
  place: Place = { setting: "contrast" },
): ContrastMode | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string" && (CONTRAST_MODES as readonly string[]).includes(value))
    return value as ContrastMode;
  throw new InputError(`expected ${CONTRAST_MODES.join(" or ")}, got ${describe(value)}`, place);
}

/**
 * The conditionings for `attributes` (every schema attribute, integers or fractions within the scale),
 * where `steered` names the attributes the caller gave. The first entry is the heaviest request corner:
 * the prompt a caller sees. The contrast, when there is one, is last with weight −g.
 */
export function planConditionings(
  schema: AttributeSchema,
  attributes: AttributeValues,
  steered: readonly string[],
  guidance = 0,
  contrast: ContrastMode = DEFAULT_CONTRAST,
): Conditioning[] {
  const fractional = schema.attributes.filter((a) => !Number.isInteger(value(attributes, a)));
  const corners: Conditioning[] = [];
  for (let mask = 0; mask < 2 ** fractional.length; mask++) {
    const corner = { ...attributes };
    let weight = 1;
    fractional.forEach((a, i) => {
      const v = value(attributes, a);
      const lo = Math.floor(v);
      const up = (mask >> i) & 1;
      corner[a.name] = lo + up;
      weight *= up ? v - lo : 1 - (v - lo);
    });
    corners.push({ attributes: corner, weight });
  }
  // Stable: among equal weights the lower corner stays first.
  corners.sort((a, b) => b.weight - a.weight);
  if (guidance === 0) return corners;
  const against = contrastValues(schema, attributes, steered, contrast);
  if (corners.length === 1 && sameValues(schema, against, (corners[0] as Conditioning).attributes))
    return corners; // nothing steered away from the contrast: guidance has no direction
  return [
    ...corners.map((c) => ({ attributes: c.attributes, weight: (1 + guidance) * c.weight })),
    { attributes: against, weight: -guidance },
  ];
}

function value(values: AttributeValues, a: AttributeDef): number {
  return values[a.name] ?? a.default;
}

function contrastValues(
  schema: AttributeSchema,
  attributes: AttributeValues,
  steered: readonly string[],
  mode: ContrastMode,
): AttributeValues {
  const out: AttributeValues = {};
  for (const a of schema.attributes) {
    const v = value(attributes, a);
    if (!steered.includes(a.name)) out[a.name] = v;
    else if (mode === "defaults") out[a.name] = a.default;
    else {
      const mid = (a.min + a.max) / 2;
      out[a.name] = v < mid ? a.max : v > mid ? a.min : v;
    }
  }
  return out;
}

const sameValues = (schema: AttributeSchema, a: AttributeValues, b: AttributeValues) =>
  schema.attributes.every((d) => a[d.name] === b[d.name]);

/** More conditionings than a generation has sequences for: the request must mix fewer. */
export class TooManyConditioningsError extends InputError {
  override name = "TooManyConditioningsError";
  constructor(needed: number, capacity: number, place: Place) {
    super(
      `these values need ${needed} conditionings at once, more than the ${capacity} sequences a generation has`,
      place,
      "make fewer attributes fractional (each one doubles the conditionings; guidance adds one), " +
        "or load the model with more `conditionings`",
    );
  }
}
