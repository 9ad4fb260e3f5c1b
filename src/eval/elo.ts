import type { PairJudgment } from "./formats.js";

/**
 * Bradley-Terry strengths from pairwise outcomes, on the Elo scale (400 points = 10× the odds), as
 * FastChat's leaderboard reports its MLE Elo. Fitted by Hunter's MM iteration (2004): p_i ←
 * W_i / Σ_j n_ij / (p_i + p_j), which converges to the maximum-likelihood solution when the comparison
 * graph is connected and no model wins or loses everything. A tie counts half a win for each side.
 * Ratings are centred so their mean is 1000.
 */
export interface Outcome {
  a: string;
  b: string;
  /** 1: a won, 0: b won, 0.5: tie. */
  score: 1 | 0 | 0.5;
}

/** Outcomes of pair judgments by FastChat's rule: a win needs both orders to agree; errors are left out. */
export function pairOutcomes(judgments: readonly PairJudgment[]): Outcome[] {
  const out: Outcome[] = [];
  for (const j of judgments) {
    if (j.g1_winner === "error" || j.g2_winner === "error") continue;
    const agreed = j.g1_winner === j.g2_winner && j.g1_winner !== "tie";
    out.push({ a: j.model_1, b: j.model_2, score: !agreed ? 0.5 : j.g1_winner === "model_1" ? 1 : 0 });
  }
  return out;
}

export function bradleyTerry(
  outcomes: readonly Outcome[],
  opts: { iterations?: number; tol?: number } = {},
): Map<string, number> {
  const models = [...new Set(outcomes.flatMap((o) => [o.a, o.b]))];
  const idx = new Map(models.map((m, i) => [m, i]));
  const n = models.length;
  const wins = new Float64Array(n);
  const games = Array.from({ length: n }, () => new Float64Array(n));
  for (const o of outcomes) {
    const [i, j] = [idx.get(o.a)!, idx.get(o.b)!];
    wins[i]! += o.score;
    wins[j]! += 1 - o.score;
    games[i]![j]! += 1;
    games[j]![i]! += 1;
  }
  let p = new Float64Array(n).fill(1);
  for (let it = 0; it < (opts.iterations ?? 10_000); it++) {
    const next = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let denom = 0;
      for (let j = 0; j < n; j++) {
        const nij = (games[i] as Float64Array)[j] as number;
        if (nij > 0) denom += nij / (p[i]! + p[j]!);
      }
      next[i] = denom > 0 ? wins[i]! / denom : p[i]!;
    }
    // Normalise to geometric mean 1: the likelihood only fixes ratios.
    const logMean = next.reduce((a, x) => a + Math.log(Math.max(x, 1e-300)), 0) / n;
    for (let i = 0; i < n; i++) next[i] = next[i]! / Math.exp(logMean);
    const delta = next.reduce((a, x, i) => Math.max(a, Math.abs(x - p[i]!)), 0);
    p = next;
    if (delta < (opts.tol ?? 1e-12)) break;
  }
  return new Map(models.map((m, i) => [m, 1000 + 400 * Math.log10(Math.max(p[i]!, 1e-300))]));
}

/** The MLE exists (finite ratings) only if no model won, or lost, every one of its games. */
export function bradleyTerryDefined(outcomes: readonly Outcome[]): boolean {
  const won = new Map<string, number>();
  const played = new Map<string, number>();
  for (const o of outcomes) {
    for (const [m, s] of [
      [o.a, o.score],
      [o.b, 1 - o.score],
    ] as const) {
      won.set(m, (won.get(m) ?? 0) + s);
      played.set(m, (played.get(m) ?? 0) + 1);
    }
  }
  return played.size >= 2 && [...played].every(([m, n]) => (won.get(m) ?? 0) > 0 && (won.get(m) ?? 0) < n);
}
