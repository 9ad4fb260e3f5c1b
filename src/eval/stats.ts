import { quantile } from "../util/numbers.js";
import { Rng } from "../util/rng.js";

/**
 * Statistics over judged prompts: means with percentile-bootstrap confidence intervals (resampling prompts,
 * seeded, so a report is reproducible), the spread over training seeds, and the paper-style "% of
 * reference" (FastChat's total-score ratio, src/eval/aggregate.ts `scoreTotals`) with win/tie/loss counts.
 * Rows come in groups (one per seed): a resample redraws the prompts within each group, so every seed
 * keeps its weight.
 */

export interface Estimate {
  mean: number;
  /** 95% percentile-bootstrap interval [low, high]. */
  ci: [number, number];
  /** The statistic for each group (seed) alone. */
  perSeed: number[];
}

export interface ResampleOptions {
  /** Resamples (default 1000). */
  resamples?: number;
  seed?: number;
  /** Central coverage (default 0.95). */
  level?: number;
}

export const mean = (xs: readonly number[]): number =>
  xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length;

/** Sample standard deviation (n - 1); 0 for fewer than two values. */
export function stdev(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}

/**
 * A statistic of grouped rows with its bootstrap interval: `stat` sees the pooled rows of every group
 * (the point estimate: all rows as they are; a resample: each group's rows redrawn with replacement).
 */
export function bootstrap<T>(
  groups: ReadonlyArray<readonly T[]>,
  stat: (rows: readonly T[]) => number,
  opts: ResampleOptions = {},
): Estimate {
  const rng = new Rng(opts.seed ?? 1);
  const level = opts.level ?? 0.95;
  const draws: number[] = [];
  for (let r = 0; r < (opts.resamples ?? 1000); r++) {
    const rows: T[] = [];
    for (const g of groups) for (let i = 0; i < g.length; i++) rows.push(g[rng.int(0, g.length - 1)]!);
    const v = stat(rows);
    if (Number.isFinite(v)) draws.push(v);
  }
  draws.sort((a, b) => a - b);
  const tail = (1 - level) / 2;
  return {
    mean: stat(groups.flat()),
    ci: draws.length === 0 ? [Number.NaN, Number.NaN] : [quantile(draws, tail), quantile(draws, 1 - tail)],
    perSeed: groups.map((g) => stat(g)),
  };
}

/** The mean of a number per row, with its interval. */
export function bootstrapMean<T>(
  groups: ReadonlyArray<readonly T[]>,
  value: (row: T) => number,
  opts: ResampleOptions = {},
): Estimate {
  return bootstrap(groups, (rows) => mean(rows.map(value)), opts);
}

/** One prompt judged twice: the candidate's score and the reference's. */
export interface ScorePair {
  candidate: number;
  reference: number;
}

export interface RelativeScore extends Estimate {
  win: number;
  tie: number;
  loss: number;
}

/**
 * "% of reference" as the Vicuna blog and the SteerLM paper report it: 100 × Σ candidate / Σ reference
 * over the prompts, with its interval, and per-prompt win/tie/loss counts (all groups together).
 */
export function relativeScore(
  groups: ReadonlyArray<readonly ScorePair[]>,
  opts: ResampleOptions = {},
): RelativeScore {
  const ratio = (rows: readonly ScorePair[]) => {
    let c = 0;
    let r = 0;
    for (const p of rows) {
      c += p.candidate;
      r += p.reference;
    }
    return (100 * c) / r;
  };
  const all = groups.flat();
  return {
    ...bootstrap(groups, ratio, opts),
    win: all.filter((p) => p.candidate > p.reference).length,
    tie: all.filter((p) => p.candidate === p.reference).length,
    loss: all.filter((p) => p.candidate < p.reference).length,
  };
}

/** Two intervals share no point. */
export const disjoint = (a: Estimate, b: Estimate): boolean => a.ci[1] < b.ci[0] || b.ci[1] < a.ci[0];
