import { basename } from "node:path";
import type { LegacyReview, PairJudgment, SingleJudgment } from "./formats.js";

/**
 * Aggregates by FastChat's rules (fastchat/llm_judge/show_result.py, fastchat/eval/
 * aggregate_scores_from_table.py) plus the "% of ChatGPT" total-score ratio the Vicuna blog and the
 * SteerLM paper report. Error rows are counted, never averaged in.
 */

export interface SingleSummary {
  model: string;
  /** Mean rating per turn (null when that turn has no valid rating). */
  turn1: number | null;
  turn2: number | null;
  /** Mean over every valid rating of the model (FastChat's "Average" over both turns). */
  average: number | null;
  judged: number;
  /** Ratings of -1 (no verdict in the judgment): left out of the means. */
  errors: number;
}

const mean = (xs: readonly number[]) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length);

export function summarizeSingle(judgments: readonly SingleJudgment[]): SingleSummary[] {
  const byModel = new Map<string, SingleJudgment[]>();
  for (const j of judgments) byModel.set(j.model, [...(byModel.get(j.model) ?? []), j]);
  const out: SingleSummary[] = [];
  for (const [model, js] of byModel) {
    const valid = js.filter((j) => j.score !== -1);
    out.push({
      model,
      turn1: mean(valid.filter((j) => j.turn === 1).map((j) => j.score)),
      turn2: mean(valid.filter((j) => j.turn === 2).map((j) => j.score)),
      average: mean(valid.map((j) => j.score)),
      judged: js.length,
      errors: js.length - valid.length,
    });
  }
  return out.sort((a, b) => (b.average ?? -1) - (a.average ?? -1));
}

export interface PairSummary {
  model: string;
  win: number;
  loss: number;
  tie: number;
  win_rate: number;
  loss_rate: number;
  /** A tie counts half a win (FastChat's win_rate_adjusted). */
  win_rate_adjusted: number;
}

export interface PairReport {
  rows: PairSummary[];
  /** Comparisons left out because a game's verdict was "error". */
  errors: number;
  /** Comparisons whose two games disagreed (counted as ties). */
  inconsistent: number;
}

/**
 * FastChat's pairwise table: a win only when both games (both presentation orders) name the same winner;
 * a tie in game 1 or two games that disagree is a tie for both models. Rows with an "error" game are
 * dropped (and counted). With a baseline, only comparisons involving it count and it leaves the table.
 */
export function summarizePairs(judgments: readonly PairJudgment[], baseline?: string): PairReport {
  const tally = new Map<string, { win: number; loss: number; tie: number }>();
  const add = (m: string, k: "win" | "loss" | "tie") => {
    const t = tally.get(m) ?? { win: 0, loss: 0, tie: 0 };
    t[k]++;
    tally.set(m, t);
  };
  let errors = 0;
  let inconsistent = 0;
  for (const j of judgments) {
    if (j.g1_winner === "error" || j.g2_winner === "error") {
      errors++;
      continue;
    }
    if (baseline !== undefined && j.model_1 !== baseline && j.model_2 !== baseline) continue;
    if (j.g1_winner === "tie" || j.g1_winner !== j.g2_winner) {
      if (j.g1_winner !== j.g2_winner) inconsistent++;
      add(j.model_1, "tie");
      add(j.model_2, "tie");
    } else {
      const [w, l] = j.g1_winner === "model_1" ? [j.model_1, j.model_2] : [j.model_2, j.model_1];
      add(w, "win");
      add(l, "loss");
    }
  }
  const rows: PairSummary[] = [];
  for (const [model, t] of tally) {
    if (model === baseline) continue;
    const n = t.win + t.loss + t.tie;
    rows.push({
      model,
      ...t,
      win_rate: t.win / n,
      loss_rate: t.loss / n,
      win_rate_adjusted: (t.win + 0.5 * t.tie) / n,
    });
  }
  rows.sort((a, b) => b.win_rate_adjusted - a.win_rate_adjusted);
  return { rows, errors, inconsistent };
}

/** Totals of one pair of models over review records (legacy scores, either order). */
export interface ScoreTotals {
  model_1: string;
  model_2: string;
  total_1: number;
  total_2: number;
  /** Reviews where model_1 scored higher, lower, the same. */
  better_1: number;
  better_2: number;
  tie: number;
  /** Reviews with score [-1, -1] (no parseable first line): left out of the totals. */
  failed: number;
  reviews: number;
  /** total_2 / total_1: model_2's total score relative to model_1's ("% of ChatGPT" when model_1 is it). */
  relative_2_to_1: number;
}

/** Which model each review's score[0] and score[1] belong to. */
export type ReviewNames = (r: LegacyReview) => [string, string];

/**
 * Names for reviews: `metadata.model_1/model_2` when present (what `steerlm eval judge --mode review`
 * writes, as each order swaps them), else from a FastChat file name `review_<model1>_<model2>.jsonl`.
 */
export function reviewNamesFor(file: string): ReviewNames {
  const m = /^review_([^_]+)_([^_]+)\.jsonl$/.exec(basename(file));
  const fallback: [string, string] = m ? [m[1]!, m[2]!] : ["assistant_1", "assistant_2"];
  return (r) => {
    const md = r.metadata ?? {};
    return typeof md.model_1 === "string" && typeof md.model_2 === "string"
      ? [md.model_1, md.model_2]
      : fallback;
  };
}

/**
 * Total scores per unordered pair of models, summing both presentation orders. The pair is keyed in
 * first-seen order (a legacy file's assistant 1 first).
 */
export function scoreTotals(reviews: readonly LegacyReview[], names: ReviewNames): ScoreTotals[] {
  const pairs = new Map<string, ScoreTotals>();
  for (const r of reviews) {
    const [n1, n2] = names(r);
    const key = [n1, n2].sort().join("\u0000");
    let t = pairs.get(key);
    if (!t) {
      t = {
        model_1: n1,
        model_2: n2,
        total_1: 0,
        total_2: 0,
        better_1: 0,
        better_2: 0,
        tie: 0,
        failed: 0,
        reviews: 0,
        relative_2_to_1: Number.NaN,
      };
      pairs.set(key, t);
    }
    t.reviews++;
    const [s1, s2] = r.score;
    if (s1 === -1 || s2 === -1) {
      t.failed++;
      continue;
    }
    // Map the review's order onto the pair's order.
    const [a, b] = n1 === t.model_1 ? [s1, s2] : [s2, s1];
    t.total_1 += a;
    t.total_2 += b;
    if (a > b) t.better_1++;
    else if (b > a) t.better_2++;
    else t.tie++;
  }
  for (const t of pairs.values()) t.relative_2_to_1 = t.total_2 / t.total_1;
  return [...pairs.values()];
}

/**
 * Each model's total score relative to `baseline`, through chains of compared pairs when the model was
 * never compared with the baseline directly (the Vicuna blog's Figure 1: LLaMA vs Vicuna × Vicuna vs
 * ChatGPT). Shortest chain first; models with no chain are absent.
 */
export function relativeTo(
  totals: readonly ScoreTotals[],
  baseline: string,
): Map<string, { relative: number; via: string[] }> {
  const edges = new Map<string, Array<{ to: string; ratio: number }>>();
  const link = (from: string, to: string, ratio: number) =>
    edges.set(from, [...(edges.get(from) ?? []), { to, ratio }]);
  for (const t of totals) {
    link(t.model_2, t.model_1, t.total_2 / t.total_1); // model_2's score relative to model_1's
    link(t.model_1, t.model_2, t.total_1 / t.total_2);
  }
  // Breadth-first from the baseline: rel(m) = rel(parent) × total(m) / total(parent).
  const out = new Map<string, { relative: number; via: string[] }>([[baseline, { relative: 1, via: [] }]]);
  let frontier = [baseline];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const p of frontier) {
      const rp = out.get(p) as { relative: number; via: string[] };
      for (const { to: m, ratio } of edges.get(p) ?? []) {
        if (out.has(m)) continue;
        // edges p -> m carry total(p)/total(m); we need total(m)/total(p)
        out.set(m, { relative: rp.relative / ratio, via: p === baseline ? [] : [...rp.via, p] });
        next.push(m);
      }
    }
    frontier = next;
  }
  return out;
}
