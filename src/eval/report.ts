import {
  type PairReport,
  relativeTo,
  reviewNamesFor,
  type ScoreTotals,
  type SingleSummary,
  scoreTotals,
  summarizePairs,
  summarizeSingle,
} from "./aggregate.js";
import { bradleyTerry, bradleyTerryDefined, pairOutcomes } from "./elo.js";
import type { LegacyReview, PairJudgment, SingleJudgment } from "./formats.js";
import { parseJudgment } from "./formats.js";
import { readJsonl } from "./jsonl.js";

/** `steerlm eval report`: every judgment file summarised by its kind (single, pair, legacy review). */
export interface EvalReport {
  single?: SingleSummary[];
  pair?: PairReport;
  /** Bradley-Terry ratings on the Elo scale from the pair judgments (null: no model is both won and beaten). */
  elo?: Record<string, number> | null;
  review?: {
    totals: ScoreTotals[];
    /** Total score relative to the baseline, directly or through a chain of compared models. */
    relative?: Record<string, { relative: number; via: string[] }>;
    baseline?: string;
  };
  files: string[];
}

export function buildReport(files: readonly string[], opts: { baseline?: string } = {}): EvalReport {
  const single: SingleJudgment[] = [];
  const pair: PairJudgment[] = [];
  const reviews: Array<{ r: LegacyReview; names: [string, string] }> = [];
  for (const file of files) {
    const names = reviewNamesFor(file);
    for (const { value: j } of readJsonl(file, parseJudgment)) {
      if (j.kind === "single") single.push(j.value);
      else if (j.kind === "pair") pair.push(j.value);
      else reviews.push({ r: j.value, names: names(j.value) });
    }
  }
  const out: EvalReport = { files: [...files] };
  if (single.length > 0) out.single = summarizeSingle(single);
  if (pair.length > 0) {
    out.pair = summarizePairs(pair, opts.baseline);
    const outcomes = pairOutcomes(pair);
    out.elo = bradleyTerryDefined(outcomes) ? Object.fromEntries(bradleyTerry(outcomes)) : null;
  }
  if (reviews.length > 0) {
    const byReview = new Map(reviews.map((x) => [x.r, x.names]));
    const totals = scoreTotals(
      reviews.map((x) => x.r),
      (r) => byReview.get(r) as [string, string],
    );
    out.review = { totals };
    const models = new Set(totals.flatMap((t) => [t.model_1, t.model_2]));
    if (opts.baseline && models.has(opts.baseline)) {
      out.review.baseline = opts.baseline;
      out.review.relative = Object.fromEntries(relativeTo(totals, opts.baseline));
    }
  }
  return out;
}

const f = (x: number | null, d = 3) => (x === null || !Number.isFinite(x) ? "-" : x.toFixed(d));

export function formatReport(r: EvalReport): string {
  const lines: string[] = [];
  if (r.single) {
    const w = Math.max(5, ...r.single.map((s) => s.model.length));
    lines.push("Single-answer grading (mean rating 1-10; ratings of -1 left out)");
    lines.push(
      `${"model".padEnd(w)}  ${"turn 1".padStart(7)}  ${"turn 2".padStart(7)}  ${"average".padStart(7)}  judged  errors`,
    );
    for (const s of r.single)
      lines.push(
        `${s.model.padEnd(w)}  ${f(s.turn1).padStart(7)}  ${f(s.turn2).padStart(7)}  ${f(s.average).padStart(7)}  ${String(s.judged).padStart(6)}  ${String(s.errors).padStart(6)}`,
      );
  }
  if (r.pair) {
    if (lines.length) lines.push("");
    const w = Math.max(5, ...r.pair.rows.map((s) => s.model.length));
    lines.push("Pairwise (a win needs both orders to agree; otherwise a tie)");
    lines.push(`${"model".padEnd(w)}  win  loss   tie  win_rate  loss_rate  win_rate_adjusted`);
    for (const s of r.pair.rows)
      lines.push(
        `${s.model.padEnd(w)}  ${String(s.win).padStart(3)}  ${String(s.loss).padStart(4)}  ${String(s.tie).padStart(4)}  ${f(s.win_rate).padStart(8)}  ${f(s.loss_rate).padStart(9)}  ${f(s.win_rate_adjusted).padStart(17)}`,
      );
    lines.push(
      `${r.pair.errors} comparisons with an unparseable verdict left out; ${r.pair.inconsistent} with disagreeing orders counted as ties`,
    );
  }
  if (r.review) {
    if (lines.length) lines.push("");
    lines.push("Total scores (legacy Vicuna reviews, both orders summed where present)");
    for (const t of r.review.totals)
      lines.push(
        `${t.model_1} ${f(t.total_1, 1)} vs ${t.model_2} ${f(t.total_2, 1)}: ${t.model_2} at ${(100 * t.relative_2_to_1).toFixed(1)}% of ${t.model_1}` +
          ` (better ${t.better_1}/${t.better_2}, tie ${t.tie}, failed ${t.failed}, ${t.reviews} reviews)`,
      );
    if (r.review.relative) {
      lines.push(`Relative to ${r.review.baseline}:`);
      for (const [m, v] of Object.entries(r.review.relative))
        lines.push(
          `  ${m.padEnd(24)} ${(100 * v.relative).toFixed(1)}%${v.via.length ? ` (via ${v.via.join(", ")})` : ""}`,
        );
    }
  }
  return lines.join("\n");
}
