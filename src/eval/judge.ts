import { existsSync } from "node:fs";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import { Progress } from "../util/progress.js";
import type { Bench } from "./bench.js";
import type { JudgeFn } from "./client.js";
import {
  type JudgePrompt,
  type Judgment,
  type LegacyPrompt,
  type LegacyReview,
  type LegacyReviewer,
  type ModelAnswer,
  type PairJudgment,
  type PairWinner,
  parseJudgment,
  type Question,
  type SingleJudgment,
} from "./formats.js";
import { appendJsonl, readJsonl, shortUuid } from "./jsonl.js";
import {
  judgedTurns,
  judgePromptName,
  legacyReviewMessages,
  NEED_REF_CATS,
  pairJudgeMessages,
  singleJudgeMessages,
} from "./prompts.js";
import { type GameWinner, type Parsed, parseGame, parseLegacyScores, parseRating } from "./verdict.js";

/**
 * Judging model answers with an LLM judge, in FastChat's formats:
 * - single: each answer rated 1..10 (single-v1 / single-math-v1 with a reference; turn 2 for 2-turn questions)
 * - pair: each answer against the baseline's, in both orders (pair-v2 / pair-math-v1)
 * - review: the legacy Vicuna review (two scores on the first line) in both orders: the SteerLM paper's
 *   "% of ChatGPT" is the ratio of the total scores
 * Resumable: the output is appended one judgment a line; a rerun skips what is already there.
 */
export type EvalJudgeMode = "single" | "pair" | "review";

export interface AnswerSet {
  model: string;
  file: string;
  answers: Map<string, ModelAnswer>;
}

export interface JudgeRunOptions {
  bench: Bench;
  mode: EvalJudgeMode;
  answers: readonly AnswerSet[];
  /** pair and review modes. */
  baseline?: AnswerSet;
  judge: JudgeFn;
  /** The judge model's name, as written into each judgment. */
  judgeModel: string;
  /** single and pair modes: judge_prompts.jsonl by name. */
  judgePrompts?: Map<string, JudgePrompt>;
  /** review mode: the legacy reviewer.jsonl and prompt.jsonl. */
  legacy?: { reviewers: LegacyReviewer[]; prompts: LegacyPrompt[] };
  output: string;
  /** Judge calls in flight at once (default 1). */
  parallel?: number;
  progress?: boolean;
}

export interface JudgeRunResult {
  written: number;
  skipped: number;
  /** Judgments written whose verdict could not be parsed (score -1, winner "error", score [-1, -1]). */
  errors: number;
  output: string;
}

interface Match {
  key: string;
  run: () => Promise<{ record: SingleJudgment | PairJudgment | LegacyReview; error?: string }>;
}

export function judgmentKey(j: Judgment): string {
  const v = j.value;
  if (j.kind === "single") {
    const s = v as SingleJudgment;
    return ["single", s.question_id, s.model, s.turn, s.judge[0], s.judge[1]].join("\u0000");
  }
  if (j.kind === "pair") {
    const p = v as PairJudgment;
    return ["pair", p.question_id, p.model_1, p.model_2, p.turn, p.judge[0], p.judge[1]].join("\u0000");
  }
  const r = v as LegacyReview;
  const md = r.metadata ?? {};
  return ["review", r.question_id, String(md.model_1), String(md.model_2), String(md.judge)].join("\u0000");
}

/** Model name of an answer file: the answers' model_id (all lines must agree). */
export function answerSet(file: string, answers: Map<string, ModelAnswer>): AnswerSet {
  const ids = new Set([...answers.values()].map((a) => a.model_id));
  if (ids.size === 0) throw new InputError("no answers", { file });
  if (ids.size > 1)
    throw new InputError(`answers of several models (${[...ids].join(", ")}): one model per file`, {
      file,
      field: "model_id",
    });
  return { model: [...ids][0] as string, file, answers };
}

export async function runJudgments(opts: JudgeRunOptions): Promise<JudgeRunResult> {
  const done = new Set<string>();
  if (existsSync(opts.output))
    for (const { value } of readJsonl(opts.output, parseJudgment)) done.add(judgmentKey(value));
  const matches = buildMatches(opts);
  const todo = matches.filter((m) => !done.has(m.key));
  log.info(`judge: ${matches.length} judgments, ${matches.length - todo.length} already in ${opts.output}`);
  const progress = new Progress({
    label: `judging (${opts.mode})`,
    total: todo.length,
    enabled: opts.progress,
  });
  let errors = 0;
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const m = todo[next++] as Match;
      const { record, error } = await m.run();
      if (error) {
        errors++;
        log.warn(`judge: ${error}`);
      }
      appendJsonl(opts.output, record);
      progress.tick(1, { errors });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.parallel ?? 1) }, worker));
  progress.finish();
  return { written: todo.length, skipped: matches.length - todo.length, errors, output: opts.output };
}

function answerFor(set: AnswerSet, q: Question): ModelAnswer {
  const a = set.answers.get(String(q.question_id));
  if (!a)
    throw new InputError(
      `no answer to question ${q.question_id}`,
      { file: set.file },
      "judge the answers with the question file they were generated from (--bench)",
    );
  return a;
}

function refFor(bench: Bench, q: Question): ModelAnswer | undefined {
  if (!NEED_REF_CATS.includes(q.category)) return undefined;
  const ref = bench.refs.get(String(q.question_id));
  if (!ref)
    throw new InputError(
      `question ${q.question_id} (${q.category}) needs a reference answer`,
      { file: bench.refFile ?? bench.questionFile },
      "pass --ref <reference_answer.jsonl>",
    );
  return ref;
}

function promptFor(opts: JudgeRunOptions, name: string): JudgePrompt {
  const p = opts.judgePrompts?.get(name);
  if (!p) throw new InputError(`judge prompt "${name}" is missing`, { field: "judge_prompts" });
  return p;
}

/**
 * What is judged: single: each answer set; pair/review: each set against the baseline (FastChat's
 * pairwise-baseline), or without a baseline every pair of sets (pairwise-all).
 */
function comparisons(opts: JudgeRunOptions): Array<{ set: AnswerSet; against?: AnswerSet }> {
  const names = opts.answers.map((a) => a.model);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new InputError(`two answer files of model ${dup}`, { setting: "answers" });
  if (opts.mode === "single") return opts.answers.map((set) => ({ set }));
  const baseline = opts.baseline;
  if (baseline)
    return opts.answers.filter((a) => a.model !== baseline.model).map((set) => ({ set, against: baseline }));
  if (opts.answers.length < 2)
    throw new InputError(`mode ${opts.mode} needs a baseline or at least two answer files`, {
      setting: "baseline",
    });
  return opts.answers.flatMap((set, i) => opts.answers.slice(i + 1).map((against) => ({ set, against })));
}

/** A game's verdict as a pair judgment's winner; `[a, b]`: the models shown as assistants A and B. */
function winnerOf(v: Parsed<GameWinner>, [a, b]: [PairWinner, PairWinner]): PairWinner {
  if (!v.ok) return "error";
  return v.value === "tie" ? "tie" : v.value === "A" ? a : b;
}

function buildMatches(opts: JudgeRunOptions): Match[] {
  const { bench, judge, judgeModel } = opts;
  const matches: Match[] = [];
  const entries = comparisons(opts);
  for (const q of bench.questions) {
    const ref = opts.mode === "review" ? undefined : refFor(bench, q);
    for (const { set, against } of entries) {
      const answer = answerFor(set, q);
      if (opts.mode === "single") {
        for (const turn of judgedTurns(q)) {
          const jp = promptFor(opts, judgePromptName("single", q.category, turn));
          const messages = singleJudgeMessages(jp, q, answer, turn, ref);
          const base = {
            question_id: q.question_id,
            model: set.model,
            judge: [judgeModel, jp.name] as [string, string],
            turn,
          };
          matches.push({
            key: judgmentKey({ kind: "single", value: { ...base } as SingleJudgment }),
            run: async () => {
              const judgment = await judge(messages);
              const r = parseRating(judgment);
              const record: SingleJudgment = {
                ...base,
                user_prompt: messages[1]?.content as string,
                judgment,
                score: r.ok ? r.value : -1,
                tstamp: Date.now() / 1000,
              };
              if (!r.ok) record.error = r.error;
              return {
                record,
                error: r.ok ? undefined : `question ${q.question_id} turn ${turn} (${set.model}): ${r.error}`,
              };
            },
          });
        }
        continue;
      }
      const baseline = against as AnswerSet;
      const other = answerFor(baseline, q);
      if (opts.mode === "pair") {
        for (const turn of judgedTurns(q)) {
          const jp = promptFor(opts, judgePromptName("pair", q.category, turn));
          const g1 = pairJudgeMessages(jp, q, answer, other, turn, ref);
          const g2 = pairJudgeMessages(jp, q, other, answer, turn, ref);
          const base = {
            question_id: q.question_id,
            model_1: set.model,
            model_2: baseline.model,
            judge: [judgeModel, jp.name] as [string, string],
            turn,
          };
          matches.push({
            key: judgmentKey({ kind: "pair", value: base as PairJudgment }),
            run: async () => {
              const [j1, j2] = [await judge(g1), await judge(g2)];
              const v1 = parseGame(jp.output_format, j1);
              const v2 = parseGame(jp.output_format, j2);
              // Game 1 shows model_1 as A; game 2 shows model_2 as A.
              const w1 = winnerOf(v1, ["model_1", "model_2"]);
              const w2 = winnerOf(v2, ["model_2", "model_1"]);
              const problems = [v1.ok ? "" : `g1: ${v1.error}`, v2.ok ? "" : `g2: ${v2.error}`]
                .filter(Boolean)
                .join("; ");
              const record: PairJudgment = {
                ...base,
                g1_winner: w1,
                g2_winner: w2,
                g1_user_prompt: g1[1]?.content as string,
                g1_judgment: j1,
                g2_user_prompt: g2[1]?.content as string,
                g2_judgment: j2,
                tstamp: Date.now() / 1000,
              };
              if (problems) record.error = problems;
              return {
                record,
                error: problems ? `question ${q.question_id} turn ${turn}: ${problems}` : undefined,
              };
            },
          });
        }
        continue;
      }
      // review: legacy two-score prompt on the first turn, in both orders
      if (!opts.legacy)
        throw new InputError("mode review needs the legacy reviewer and prompt files", {
          setting: "legacy",
        });
      const legacy = opts.legacy;
      for (const [first, second] of [
        [set, baseline],
        [baseline, set],
      ] as const) {
        const a1 = answerFor(first, q);
        const a2 = answerFor(second, q);
        const { reviewer, messages } = legacyReviewMessages(
          legacy.reviewers,
          legacy.prompts,
          q.category,
          q.turns[0]!,
          a1.choices[0]?.turns[0] ?? "",
          a2.choices[0]?.turns[0] ?? "",
        );
        const metadata = { model_1: first.model, model_2: second.model, judge: judgeModel };
        matches.push({
          key: judgmentKey({
            kind: "review",
            value: { question_id: q.question_id, metadata } as unknown as LegacyReview,
          }),
          run: async () => {
            const text = await judge(messages);
            const s = parseLegacyScores(text);
            const record: LegacyReview = {
              review_id: shortUuid(),
              question_id: q.question_id,
              answer1_id: a1.answer_id,
              answer2_id: a2.answer_id,
              text,
              score: s.ok ? s.value : [-1, -1],
              reviewer_id: reviewer.reviewer_id,
              metadata,
            };
            if (!s.ok) record.error = s.error;
            return {
              record,
              error: s.ok ? undefined : `question ${q.question_id} (${first.model} first): ${s.error}`,
            };
          },
        });
      }
    }
  }
  return matches;
}
