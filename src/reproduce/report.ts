import { STEERLM_ATTRIBUTE_ORDER } from "../data/attributes.js";
import { bootstrapMean, disjoint, type Estimate, type RelativeScore, relativeScore } from "../eval/stats.js";
import { type GenerationRow, type JudgeSplit, referenceScoreOf, scoreOf } from "./judge.js";
import { ARM_DESCRIPTIONS, ARMS, type Arm } from "./plan.js";

/**
 * The study's figures from its generations: per arm and split, the oracle's mean of every attribute and
 * the mean length, each with a 95% bootstrap interval over prompts (seeded) and its value per seed, and
 * the "% of reference" (the oracle's quality of the arm's responses over that of the generator's own, as
 * FastChat's total-score ratio) with win/tie/loss counts; the steering curves of the acsft arm.
 */
export const STEERED = ["toxicity", "verbosity", "quality", "helpfulness"] as const;
export const SPLIT_NAMES: readonly JudgeSplit[] = ["test", "heldout"];
const RESAMPLE = { seed: 1, resamples: 1000 };

export interface SplitFigures {
  /** Responses judged (all seeds). */
  n: number;
  attributes: Record<string, Estimate>;
  lengthChars: Estimate;
  reference: RelativeScore;
}

export interface ArmFigures {
  description: string;
  /** The value string each seed's arm was asked for (null: the bare prompt). */
  asked: Array<string | null>;
  splits: Record<JudgeSplit, SplitFigures>;
  /** Over every row of generations/<arm>.jsonl, as `steerlm bench score` computes it. */
  all: { rows: number; mean: Record<string, number> };
}

export interface CurveFigures {
  levels: number[];
  /** The steered attribute as the oracle measures it, per level. */
  measured: Estimate[];
  lengthChars: Estimate[];
}

export interface Checks {
  /** acsft's quality and helpfulness above sft's with disjoint intervals (test split). */
  acsftBeatsSft: { quality: boolean; helpfulness: boolean };
  /** Toxicity's means strictly increase and adjacent intervals are disjoint. */
  toxicityIncreasing: boolean;
  /** Mean length grows at every verbosity level. */
  verbosityLengthGrows: boolean;
}

type Scored = { row: GenerationRow; scores: Record<string, number> };

/** Rows grouped by seed, in seed order (the bootstrap redraws within each). */
function bySeed(rows: readonly Scored[], seeds: readonly number[]): Scored[][] {
  return seeds.map((s) => rows.filter((r) => r.row.seed === s));
}

function splitFigures(rows: readonly Scored[], seeds: readonly number[]): SplitFigures {
  const groups = bySeed(rows, seeds);
  const attributes: Record<string, Estimate> = {};
  for (const a of STEERLM_ATTRIBUTE_ORDER)
    attributes[a] = bootstrapMean(groups, (r) => r.scores[a]!, RESAMPLE);
  return {
    n: rows.length,
    attributes,
    lengthChars: bootstrapMean(groups, (r) => r.row.response.length, RESAMPLE),
    reference: relativeScore(
      groups.map((g) =>
        g.map((r) => ({
          candidate: r.scores.quality as number,
          reference: referenceScoreOf(r.row).quality as number,
        })),
      ),
      RESAMPLE,
    ),
  };
}

export function armFigures(arm: Arm, rows: readonly GenerationRow[], seeds: readonly number[]): ArmFigures {
  const scored = rows.map((row) => ({ row, scores: scoreOf(row) as Record<string, number> }));
  const mean: Record<string, number> = {};
  for (const a of STEERLM_ATTRIBUTE_ORDER)
    mean[a] = scored.reduce((s, r) => s + r.scores[a]!, 0) / Math.max(1, scored.length);
  return {
    description: ARM_DESCRIPTIONS[arm],
    asked: seeds.map((s) => rows.find((r) => r.seed === s)?.values ?? null),
    splits: {
      test: splitFigures(
        scored.filter((r) => r.row.split === "test"),
        seeds,
      ),
      heldout: splitFigures(
        scored.filter((r) => r.row.split === "heldout"),
        seeds,
      ),
    },
    all: { rows: rows.length, mean },
  };
}

export function curveFigures(
  rows: readonly GenerationRow[],
  attribute: string,
  seeds: readonly number[],
): CurveFigures {
  const mine = rows.filter((r) => r.sweep === attribute);
  const levels = [...new Set(mine.map((r) => r.level as number))].sort((a, b) => a - b);
  const at = (l: number) =>
    bySeed(
      mine
        .filter((r) => r.level === l)
        .map((row) => ({ row, scores: scoreOf(row) as Record<string, number> })),
      seeds,
    );
  return {
    levels,
    measured: levels.map((l) => bootstrapMean(at(l), (r) => r.scores[attribute]!, RESAMPLE)),
    lengthChars: levels.map((l) => bootstrapMean(at(l), (r) => r.row.response.length, RESAMPLE)),
  };
}

export function checks(arms: Record<Arm, ArmFigures>, curves: Record<string, CurveFigures>): Checks {
  const beats = (a: string) => {
    const acsft = arms.acsft.splits.test.attributes[a] as Estimate;
    const sft = arms.sft.splits.test.attributes[a] as Estimate;
    return acsft.mean > sft.mean && disjoint(acsft, sft);
  };
  const tox = curves.toxicity?.measured ?? [];
  const len = curves.verbosity?.lengthChars ?? [];
  return {
    acsftBeatsSft: { quality: beats("quality"), helpfulness: beats("helpfulness") },
    toxicityIncreasing:
      tox.length > 1 &&
      tox.every(
        (e, i) => i === 0 || (e.mean > (tox[i - 1] as Estimate).mean && disjoint(e, tox[i - 1] as Estimate)),
      ),
    verbosityLengthGrows:
      len.length > 1 && len.every((e, i) => i === 0 || e.mean > (len[i - 1] as Estimate).mean),
  };
}

export interface ReproduceReport {
  steerlm: string;
  settings: unknown;
  arms: Record<Arm, ArmFigures>;
  /** The acsft arm steered on test prompts (derived attributes with their companions). */
  steering: Record<string, CurveFigures>;
  checks: Checks;
  time: {
    /** Wall-clock seconds of this invocation, start to report (a resumed run: its own part only). */
    elapsed: number;
    /** Seeds run at the same time. */
    jobs: number;
    /** Every stage's wall-clock seconds summed: the work, which seeds run side by side overlap. */
    seconds: number;
    cpuSeconds: number;
    /** 1, 5 and 15-minute load averages at the end. */
    load: number[];
    stages: Record<string, { seconds: number; cpuSeconds: number }>;
  };
}

const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");
const est = (e: Estimate, d = 2) => `${e.mean.toFixed(d)} [${e.ci[0].toFixed(d)}, ${e.ci[1].toFixed(d)}]`;

/** report.md: the tables, the paper's figures beside them, the time. */
export function formatReport(r: ReproduceReport): string {
  const out: string[] = ["# SteerLM's ablation on SteerBench (`steerlm reproduce`)", ""];
  const seeds = (r.settings as { seeds: number[] }).seeds;
  out.push(
    `steerlm ${r.steerlm}; seeds ${seeds.join(", ")}; means with 95% bootstrap intervals over prompts; ` +
      "the oracle scores every response (0-4).",
    "",
  );
  for (const split of SPLIT_NAMES) {
    out.push(
      `## Arms, ${split === "test" ? "test split (prompts never seen in training)" : "held-out task family"}`,
      "",
      "| arm | quality | helpfulness | correctness | % of reference | win/tie/loss | quality per seed |",
      "|---|---|---|---|---|---|---|",
    );
    for (const arm of ARMS) {
      const s = r.arms[arm].splits[split];
      const a = s.attributes;
      out.push(
        `| ${arm} | ${est(a.quality as Estimate)} | ${est(a.helpfulness as Estimate)} | ${est(a.correctness as Estimate)} | ` +
          `${est(s.reference, 1)} | ${s.reference.win}/${s.reference.tie}/${s.reference.loss} | ${(a.quality as Estimate).perSeed.map(f2).join(", ")} |`,
      );
    }
    out.push("");
  }
  out.push(
    "## Every attribute, test split (mean)",
    "",
    `| arm | ${STEERLM_ATTRIBUTE_ORDER.join(" | ")} | length (chars) |`,
    `|---|${STEERLM_ATTRIBUTE_ORDER.map(() => "---").join("|")}|---|`,
  );
  for (const arm of ARMS) {
    const s = r.arms[arm].splits.test;
    out.push(
      `| ${arm} | ${STEERLM_ATTRIBUTE_ORDER.map((a) => f2((s.attributes[a] as Estimate).mean)).join(" | ")} | ${s.lengthChars.mean.toFixed(0)} |`,
    );
  }
  out.push("", "What each arm is:", "", ...ARMS.map((a) => `- \`${a}\`: ${r.arms[a].description}`), "");
  out.push(
    "## Steering the acsft arm (test prompts)",
    "",
    `| level | ${STEERED.map((a) => `${a} (measured)`).join(" | ")} | length at verbosity (chars) |`,
    `|---|${STEERED.map(() => "---").join("|")}|---|`,
  );
  const levels = r.steering.toxicity?.levels ?? [];
  for (const [i, l] of levels.entries()) {
    const cells = STEERED.map((a) => {
      const e = r.steering[a]?.measured[i];
      return e ? est(e) : "n/a";
    });
    const len = r.steering.verbosity?.lengthChars[i];
    out.push(`| ${l} | ${cells.join(" | ")} | ${len ? est(len, 0) : "n/a"} |`);
  }
  out.push(
    "",
    "quality and helpfulness are requested with the combination of the other attributes most often seen " +
      "with that level in training (their protocol: docs/reproduce.md); toxicity and verbosity with the others " +
      "at their defaults.",
    "",
    "## Checks",
    "",
    `- acsft beats sft with disjoint intervals (test): quality ${r.checks.acsftBeatsSft.quality}, helpfulness ${r.checks.acsftBeatsSft.helpfulness}`,
    `- toxicity strictly increasing, adjacent intervals disjoint: ${r.checks.toxicityIncreasing}`,
    `- length grows at every verbosity level: ${r.checks.verbosityLengthGrows}`,
    "",
    "## The paper's figures (for comparison)",
    "",
    "Ablation, % of ChatGPT on the Vicuna benchmark: SFT without attributes 79.7, + attributes 96.2, " +
      "high-quality subset 98.1, APM labels 102.7, + more data 103.7, + bootstrapping 104.2. Toxicity " +
      "steered 0/3/6/9: Perspective 0.063/0.086/0.096/0.104. HelpSteer verbosity: mean length 422 → 1,125 characters.",
    "",
    "## Time",
    "",
    `${r.time.elapsed.toFixed(0)} s elapsed, ${r.time.jobs} seed(s) at a time (this invocation; a resumed run ` +
      `counts its own part); the stages' wall clock summed ${r.time.seconds.toFixed(0)} s, their CPU ` +
      `${r.time.cpuSeconds.toFixed(0)} s; load average at the end ${r.time.load.map((x) => x.toFixed(1)).join(" / ")}.`,
    "",
  );
  return out.join("\n");
}
