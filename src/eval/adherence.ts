import { type AttributeSchema, type AttributeValues, attributeDef } from "../data/attributes.js";
import type { Generator } from "../inference/generator.js";
import { type Companions, requestFor } from "../steerbench/derived.js";
import { InputError } from "../util/errors.js";
import { spearman } from "./spearman.js";
import { runSweep, type SweepOptions, type SweepResult } from "./sweep.js";

/**
 * Attribute adherence: for each attribute and each requested level (the other attributes at the schema's
 * defaults, or for a derived attribute at its companions: src/steerbench/derived.ts), generate on held-out prompts and measure the responses with a measurer (default: the
 * SteerBench oracle). Reported per attribute: the measured mean at each level, Spearman of requested vs
 * measured (over the means and over single responses), exact-match share and mean absolute error.
 * With an APM as the measurer (`measureBatch: apmMeasurer(run)`), the responses are annotated in one pass.
 *
 * The same sweep as src/demo/evaluate.ts, generalised (levels, any prompts, any measurer) and split into
 * generation and a pure summary so either can be reused; the demo could call `measureAdherence`.
 */

export interface AdherenceSample {
  attribute: string;
  level: number;
  /** The settings this sweep asked for: the level, and the companions of a derived attribute; the rest at defaults. */
  request: AttributeValues;
  prompt: string;
  values: string;
  response: string;
  measured: AttributeValues;
}

export interface AttributeAdherence {
  requested: number[];
  /** Mean measured value at each requested level. */
  measured: number[];
  /** Spearman of the requested levels with the means (NaN when either side is constant). */
  spearman: number;
  /** Spearman over every (requested, measured) pair of single responses: stricter. */
  spearmanSamples: number;
  /** Share of responses measured exactly at the requested level. */
  exact: number;
  /** Mean |measured - requested|. */
  mae: number;
  /** Share of consecutive levels whose measured means do not decrease (1: monotone; NaN below 2 levels). */
  monotonicity: number;
  /**
   * Mean measured value of this attribute over the responses of the other attributes' sweeps, where it
   * stayed at its default: what steering the others (and guidance) costs it. NaN when nothing else swept.
   */
  offTarget: number;
}

export interface AdherenceReport {
  attributes: Record<string, AttributeAdherence>;
  prompts: number;
  generations: number;
  /** Tokens generated over all responses, and the seconds spent generating them (measuring excluded). */
  generatedTokens: number;
  generationSeconds: number;
  seconds: number;
  samples: AdherenceSample[];
}

export interface AdherenceOptions extends Omit<SweepOptions, "model" | "label"> {
  model: Pick<Generator, "generate" | "schema">;
  prompts: ReadonlyArray<{ prompt: string; system: string }>;
  /** Attributes to sweep (default: all of the schema). */
  attributes?: readonly string[];
  /**
   * Levels to request (default: each attribute's min..max); each must be in every swept attribute's range.
   * Fractions are mixed (src/inference/mixture.ts).
   */
  levels?: readonly number[];
  /** Settings that come with each level of a derived attribute (companionsFrom); others: defaults. */
  companions?: Companions;
}

export function sweepPlan(
  schema: AttributeSchema,
  attributes?: readonly string[],
  levels?: readonly number[],
) {
  for (const a of attributes ?? []) attributeDef(schema, a, { setting: "attributes" });
  const defs = schema.attributes.filter((a) => !attributes || attributes.includes(a.name));
  return defs.map((def) => {
    const ls = levels ?? Array.from({ length: def.max - def.min + 1 }, (_, i) => def.min + i);
    for (const l of ls)
      if (!Number.isFinite(l) || l < def.min || l > def.max)
        throw new InputError(`level ${l} is out of ${def.name}'s range ${def.min}..${def.max}`, {
          setting: "levels",
        });
    return { attribute: def.name, levels: [...ls], default: def.default };
  });
}

export async function measureAdherence(opts: AdherenceOptions): Promise<AdherenceReport> {
  const t0 = performance.now();
  const plan = sweepPlan(opts.model.schema, opts.attributes, opts.levels);
  const jobs = plan.flatMap(({ attribute, levels }) =>
    levels.flatMap((level) => {
      const request = requestFor(opts.companions, attribute, level);
      return opts.prompts.map((p) => ({ attribute, level, request, ...p }));
    }),
  );
  const sweep = await runSweep(
    jobs.map((j) => ({
      attributes: j.request,
      prompt: j.prompt,
      system: j.system,
    })),
    { ...opts, label: "adherence" },
  );
  const samples = jobs.map(
    (j, i): AdherenceSample => ({
      attribute: j.attribute,
      level: j.level,
      prompt: j.prompt,
      request: j.request,
      ...(sweep.results[i] as SweepResult),
    }),
  );
  return {
    attributes: summarizeAdherence(samples, plan),
    prompts: opts.prompts.length,
    generations: jobs.length,
    generatedTokens: sweep.generatedTokens,
    generationSeconds: sweep.generationSeconds,
    seconds: (performance.now() - t0) / 1000,
    samples,
  };
}

/** The per-attribute figures from measured samples (pure: no model). */
export function summarizeAdherence(
  samples: readonly AdherenceSample[],
  plan: ReadonlyArray<{ attribute: string; levels: readonly number[]; default: number }>,
): Record<string, AttributeAdherence> {
  const out: Record<string, AttributeAdherence> = {};
  for (const { attribute, levels, default: dflt } of plan) {
    const mine = samples.filter((s) => s.attribute === attribute);
    const got = (s: AdherenceSample) => {
      const v = s.measured[attribute];
      if (typeof v !== "number")
        throw new InputError(`the measurer gave no value for ${attribute}`, { field: attribute });
      return v;
    };
    const measured = levels.map((l) => {
      const at = mine.filter((s) => s.level === l).map(got);
      return at.length === 0 ? Number.NaN : at.reduce((a, b) => a + b, 0) / at.length;
    });
    const n = Math.max(1, mine.length);
    // another sweep that asked this attribute at another value (a derived attribute's companion) is no
    // measure of what steering the others costs it
    const others = samples.filter(
      (s) => s.attribute !== attribute && (s.request[attribute] ?? dflt) === dflt,
    );
    const steps = measured.slice(1).map((m, i) => m >= measured[i]!);
    out[attribute] = {
      requested: [...levels],
      measured,
      spearman: spearman(levels, measured),
      spearmanSamples: spearman(
        mine.map((s) => s.level),
        mine.map(got),
      ),
      exact: mine.filter((s) => got(s) === s.level).length / n,
      mae: mine.reduce((a, s) => a + Math.abs(got(s) - s.level), 0) / n,
      monotonicity: steps.length === 0 ? Number.NaN : steps.filter(Boolean).length / steps.length,
      offTarget: others.length === 0 ? Number.NaN : others.reduce((a, s) => a + got(s), 0) / others.length,
    };
  }
  return out;
}

/** Per-level columns fit a terminal up to this many levels; longer sweeps print only the summary. */
const MAX_LEVEL_COLUMNS = 11;

/** The table `steerlm eval adherence` prints. */
export function formatAdherence(r: AdherenceReport): string {
  const names = Object.keys(r.attributes);
  const w = Math.max(9, ...names.map((n) => n.length));
  const levels = r.attributes[names[0]!]?.requested ?? [];
  const columns = levels.length <= MAX_LEVEL_COLUMNS;
  const rho = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "n/a");
  const fixed = (x: number, width: number) => (Number.isFinite(x) ? x.toFixed(2) : "-").padStart(width);
  const head = columns
    ? levels.map((l) => `req ${l}`.padStart(6)).join(" ")
    : `levels ${levels[0]}..${levels.at(-1)} (${levels.length})`;
  const lines = [
    "Attribute adherence: measured mean at each requested level (the others at their defaults, or a derived attribute's companions)",
    `${"attribute".padEnd(w)}  ${head}  ${"spearman".padStart(8)}  ${"per-sample".padStart(10)}  ${"exact".padStart(5)}  ${"mae".padStart(5)}  monotone  off-target`,
  ];
  for (const n of names) {
    const a = r.attributes[n] as AttributeAdherence;
    const row = columns ? a.measured.map((m) => fixed(m, 6)).join(" ") : "".padEnd(head.length);
    lines.push(
      `${n.padEnd(w)}  ${row}  ${rho(a.spearman).padStart(8)}  ${rho(a.spearmanSamples).padStart(10)}  ${a.exact.toFixed(2).padStart(5)}  ${a.mae.toFixed(2).padStart(5)}  ${fixed(a.monotonicity, 8)}  ${fixed(a.offTarget, 10)}`,
    );
  }
  const speed = r.generatedTokens / r.generationSeconds;
  lines.push(
    `${r.generations} generations on ${r.prompts} prompts in ${r.seconds.toFixed(1)} s (${r.generatedTokens} tokens, ${speed.toFixed(0)} tokens/s)`,
  );
  return lines.join("\n");
}
