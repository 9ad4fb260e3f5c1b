import { createHash } from "node:crypto";
import { type AttributeSchema, type AttributeValues, attributeDef } from "../data/attributes.js";
import { NO_LABELS, readRecords } from "../data/read.js";
import { type DataFormat, labelString } from "../data/record.js";
import { InputError } from "../util/errors.js";
import { Rng, samplingSeed } from "../util/rng.js";

/**
 * The first half of SteerLM's bootstrapping: the attribute combinations of the training data's
 * top-quality responses. Every labelled assistant turn whose quality attribute has the top value of its
 * scale is one entry, so a combination seen often is drawn often ("uniformly over the rows").
 */
export interface TopCombos {
  qualityKey: string;
  /** The top of the quality attribute's scale: the value every entry has. */
  top: number;
  /** One value map per top-quality assistant turn, in file order. */
  combos: AttributeValues[];
  /** Distinct value strings among `combos`. */
  distinct: number;
  /** Labelled assistant turns read (all quality values). */
  labelledTurns: number;
  /** SHA-256 of the entries: a resumed run must sample from the same set. */
  digest: string;
}

/** `quality` where the schema has it, else `helpfulness` (HelpSteer's schemas have no `quality`). */
export function defaultQualityKey(schema: AttributeSchema): string {
  for (const key of ["quality", "helpfulness"]) {
    if (schema.attributes.some((a) => a.name === key)) return key;
  }
  throw new InputError(
    `schema ${schema.name} has neither "quality" nor "helpfulness"`,
    { setting: "qualityKey" },
    `name the attribute that measures quality: one of ${schema.attributes.map((a) => a.name).join(", ")}`,
  );
}

export interface TopCombosOptions {
  /** The schema labels are read with: the SFT model's, as the combinations condition it. */
  schema: AttributeSchema;
  /** Default: `defaultQualityKey(schema)`. */
  qualityKey?: string;
  format?: DataFormat;
}

/** Reads the training data (any format `readRecords` knows) and keeps its top-quality combinations. */
export async function readTopCombos(data: string, opts: TopCombosOptions): Promise<TopCombos> {
  const qualityKey = opts.qualityKey ?? defaultQualityKey(opts.schema);
  const def = attributeDef(opts.schema, qualityKey, { setting: "qualityKey" });
  const combos: AttributeValues[] = [];
  const seen = new Map<number, number>(); // quality value -> turns, for the error message
  let labelledTurns = 0;
  try {
    for await (const record of readRecords(data, { format: opts.format, schema: opts.schema })) {
      for (const turn of record.turns) {
        if (turn.role !== "assistant" || turn.labels === null) continue;
        labelledTurns++;
        const q = turn.labels[qualityKey];
        if (q === undefined) continue;
        seen.set(q, (seen.get(q) ?? 0) + 1);
        if (q === def.max) combos.push({ ...turn.labels });
      }
    }
  } catch (err) {
    // The reader's hint offers --allow-unlabeled, which means nothing here: the labels are the point.
    if (err instanceof InputError && err.what.startsWith(NO_LABELS)) {
      throw new InputError(
        err.what,
        err.place,
        "--data must be labelled: label it first with `steerlm annotate`",
      );
    }
    throw err;
  }
  if (combos.length === 0) {
    const counts = [...seen.entries()].sort((a, b) => a[0] - b[0]).map(([v, n]) => `${v}: ${n}`);
    throw new InputError(
      `no assistant turn has ${qualityKey}:${def.max}, the top of its scale ` +
        `(${labelledTurns} labelled turns; ${qualityKey} values seen: ${counts.length ? counts.join(", ") : "none"})`,
      { file: data, field: qualityKey },
      "bootstrapping samples the value combinations of top-quality training responses; " +
        "pass --quality-key to use another attribute",
    );
  }
  const strings = combos.map((c) => labelString(c, opts.schema));
  const digest = createHash("sha256").update(strings.join("\n")).digest("hex");
  return { qualityKey, top: def.max, combos, distinct: new Set(strings).size, labelledTurns, digest };
}

/**
 * The combination for output row `row`: uniform over the entries, from a generator seeded by
 * (seed, row) alone, so a row's draw is the same however the run was split by interruptions.
 */
export function pickCombo(combos: readonly AttributeValues[], seed: number, row: number): AttributeValues {
  if (combos.length === 0) throw new Error("pickCombo: no combinations to pick from");
  return new Rng(`bootstrap-combo:${seed}:${row}`).pick(combos);
}

/** The sampling seed of row `row` for generation: 31 bits, independent of the combination's draw. */
export function rowSeed(seed: number, row: number): number {
  return samplingSeed(`bootstrap-generate:${seed}:${row}`);
}
