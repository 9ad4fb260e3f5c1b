import type { ApmScorer } from "../apm/score.js";
import { type AttributeSchema, attributeDef } from "../data/attributes.js";
import { InputError } from "../util/errors.js";
import { checkNumber } from "../util/numbers.js";
import { Rng } from "../util/rng.js";
import type { PairFile, PreferencePair } from "./reward-pairs.js";

/**
 * The APM as a reward model: a reply's reward is a weighted sum of its predicted attributes (the raw
 * predictions, before rounding), and a preference pair counts as correct when the chosen reply's reward
 * is strictly higher (RewardBench's rule: a tie is wrong). Accuracy per subset and overall, each with a
 * percentile bootstrap confidence interval over the pairs.
 */

/**
 * Default weights: the ones NVIDIA publishes for Nemotron-4-340B-Reward used as a single scalar (its
 * model card: 0 for quality, toxicity, humor, creativity; helpfulness 0.3, correctness 0.74, coherence
 * 0.46, complexity 0.47, verbosity -0.33). Attributes the APM does not predict must not be weighted.
 */
export const NVIDIA_REWARD_WEIGHTS: Readonly<Record<string, number>> = {
  helpfulness: 0.3,
  correctness: 0.74,
  coherence: 0.46,
  complexity: 0.47,
  verbosity: -0.33,
};

export const REWARD_DEFAULTS = { resamples: 1000, confidence: 0.95, seed: 1 };

export interface RewardOptions {
  apm: ApmScorer;
  pairs: PairFile;
  /** Attribute -> weight; default NVIDIA_REWARD_WEIGHTS. */
  weights?: Readonly<Record<string, number>>;
  resamples?: number;
  seed?: number;
}

export interface Accuracy {
  pairs: number;
  correct: number;
  accuracy: number;
  /** Percentile bootstrap interval at REWARD_DEFAULTS.confidence. */
  ci: [number, number];
}

export interface RewardReport {
  format: PairFile["format"];
  weights: Record<string, number>;
  overall: Accuracy;
  subsets: Record<string, Accuracy>;
  /** Pairs whose two rewards were equal (counted wrong). */
  ties: number;
  /** Rows with no preference (HelpSteer2 strength 0), left out. */
  skipped: number;
  resamples: number;
  seconds: number;
  /** Every pair's rewards, in file order. */
  details: Array<{ subset: string; line: number; chosen: number; rejected: number }>;
}

/** `helpfulness=0.3,verbosity=-0.33` against the APM's outputs (unknown names are refused, as attributes are). */
export function parseWeights(
  schema: AttributeSchema,
  text: string,
  field = "weights",
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const pair of text.split(",")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new InputError(`"${pair}" is not name=weight`, { field });
    const name = pair.slice(0, eq).trim();
    const place = { field: `${field}.${name}` };
    attributeDef(schema, name, place);
    const raw = pair.slice(eq + 1).trim();
    out[name] = checkNumber(raw === "" ? Number.NaN : Number(raw), {}, place, raw);
  }
  return out;
}

/** The weights checked against the APM's outputs. */
function checkWeights(
  schema: AttributeSchema,
  weights: Readonly<Record<string, number>>,
): Record<string, number> {
  const known = schema.attributes.map((a) => a.name);
  for (const name of Object.keys(weights)) {
    if (!known.includes(name)) {
      throw new InputError(
        `the APM does not predict "${name}", which the weights use`,
        { setting: "weights" },
        `pass weights over its outputs (${known.join(", ")})`,
      );
    }
  }
  return { ...weights };
}

export async function evaluateReward(opts: RewardOptions): Promise<RewardReport> {
  const t0 = performance.now();
  const weights = checkWeights(opts.apm.schema, opts.weights ?? NVIDIA_REWARD_WEIGHTS);
  const { pairs } = opts.pairs;
  if (pairs.length === 0) throw new InputError("no preference pairs", { setting: "pairs" });
  // Chosen and rejected replies alternate, so both of a pair are scored in the same group.
  const scores = await opts.apm.score(pairs.flatMap((p) => [p.chosen, p.rejected]));
  const reward = (i: number) =>
    Object.entries(weights).reduce(
      (sum, [name, w]) => sum + w * (scores[i]?.attributes[name] ?? Number.NaN),
      0,
    );
  const details = pairs.map((p, i) => ({
    subset: p.subset,
    line: p.origin.line,
    chosen: reward(2 * i),
    rejected: reward(2 * i + 1),
  }));
  const right = details.map((d) => d.chosen > d.rejected);
  const resamples = opts.resamples ?? REWARD_DEFAULTS.resamples;
  const rng = new Rng(opts.seed ?? REWARD_DEFAULTS.seed);
  const subsets: Record<string, Accuracy> = {};
  for (const name of [...new Set(pairs.map((p) => p.subset))].sort())
    subsets[name] = accuracy(
      right.filter((_, i) => (pairs[i] as PreferencePair).subset === name),
      resamples,
      rng,
    );
  return {
    format: opts.pairs.format,
    weights,
    overall: accuracy(right, resamples, rng),
    subsets,
    ties: details.filter((d) => d.chosen === d.rejected).length,
    skipped: opts.pairs.skipped,
    resamples,
    seconds: (performance.now() - t0) / 1000,
    details,
  };
}

/** Accuracy with a percentile bootstrap interval (resampling the pairs with replacement). */
export function accuracy(right: readonly boolean[], resamples: number, rng: Rng): Accuracy {
  const n = right.length;
  const correct = right.filter(Boolean).length;
  const means = Array.from({ length: resamples }, () => {
    let c = 0;
    for (let i = 0; i < n; i++) if (right[rng.int(0, n - 1)]) c++;
    return c / n;
  }).sort((a, b) => a - b);
  const tail = (1 - REWARD_DEFAULTS.confidence) / 2;
  const at = (q: number) => means[Math.min(resamples - 1, Math.max(0, Math.floor(q * resamples)))]!;
  return {
    pairs: n,
    correct,
    accuracy: correct / n,
    ci: resamples > 0 ? [at(tail), at(1 - tail)] : [Number.NaN, Number.NaN],
  };
}

/** The table `steerlm eval reward` prints. */
/** Weights as `--weights` takes them: `helpfulness=0.3,correctness=0.74,...`. */
export function weightsText(weights: Readonly<Record<string, number>>): string {
  return Object.entries(weights)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

export function formatReward(r: RewardReport): string {
  const names = Object.keys(r.subsets);
  const w = Math.max(8, ...names.map((n) => n.length));
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(7);
  const row = (name: string, a: Accuracy) =>
    `${name.padEnd(w)}  ${String(a.pairs).padStart(6)}  ${pct(a.accuracy)}  [${pct(a.ci[0])}, ${pct(a.ci[1])}]`;
  return [
    `Preference accuracy (reward = ${weightsText(r.weights)}; ${Math.round(100 * REWARD_DEFAULTS.confidence)}% bootstrap CI, ${r.resamples} resamples)`,
    `${"subset".padEnd(w)}  ${"pairs".padStart(6)}  ${"acc".padStart(7)}  ci`,
    ...names.map((n) => row(n, r.subsets[n] as Accuracy)),
    row("overall", r.overall),
    `${r.ties} ties (counted wrong)${r.skipped ? `, ${r.skipped} rows without a preference left out` : ""}; ${r.seconds.toFixed(1)} s`,
  ].join("\n");
}
