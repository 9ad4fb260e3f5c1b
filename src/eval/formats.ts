import { InputError, type Place } from "../util/errors.js";
import { type JsonRecord, num, optStr, questionId, readJsonl, str, strings } from "./jsonl.js";

/**
 * FastChat's evaluation files (lm-sys/FastChat fastchat/llm_judge/data and the older fastchat/eval/table).
 * Readers keep unknown keys out of the typed view but never reject them: other tools add fields.
 */

/** A benchmark question: `{question_id, category, turns: [...], reference?: [...]}` (MT-Bench has 2 turns). */
export interface Question {
  question_id: number | string;
  category: string;
  turns: string[];
  /** MT-Bench carries short reference answers inline for some questions (not used by the judges). */
  reference?: string[];
}

/** A model answer: `{question_id, answer_id, model_id, choices: [{index, turns}], tstamp}`. */
export interface ModelAnswer {
  question_id: number | string;
  answer_id: string;
  model_id: string;
  choices: Array<{ index: number; turns: string[] }>;
  tstamp: number;
  /** Extra keys we write (the attribute values the answer was generated at). */
  [extra: string]: unknown;
}

/** A judge prompt from judge_prompts.jsonl. */
export interface JudgePrompt {
  name: string;
  type: "single" | "pairwise";
  system_prompt: string;
  prompt_template: string;
  description: string;
  category: string;
  /** `[[rating]]`, `[[A]]` or `[[rating_a,rating_b]]`: how the verdict is written. */
  output_format: string;
}

/** One single-answer grading: FastChat's `model_judgment/<judge>_single.jsonl` line. */
export interface SingleJudgment {
  question_id: number | string;
  model: string;
  /** [judge model, judge prompt name] */
  judge: [string, string];
  user_prompt: string;
  judgment: string;
  /** -1 when the judgment holds no parseable rating (FastChat's convention). */
  score: number;
  turn: number;
  tstamp: number;
  /** Ours, beside FastChat's keys: why `score` is -1. */
  error?: string;
}

export type PairWinner = "model_1" | "model_2" | "tie" | "error";

/** One pairwise comparison, judged in both orders: FastChat's `<judge>_pair.jsonl` line. */
export interface PairJudgment {
  question_id: number | string;
  model_1: string;
  model_2: string;
  /** Game 1: model_1 shown as A. Game 2: model_2 shown as A. Winners mapped back to model_1/model_2. */
  g1_winner: PairWinner;
  g2_winner: PairWinner;
  judge: [string, string];
  g1_user_prompt: string;
  g1_judgment: string;
  g2_user_prompt: string;
  g2_judgment: string;
  turn: number;
  tstamp: number;
  error?: string;
}

// ---- the legacy Vicuna evaluation (fastchat/eval/table) ----

export interface LegacyQuestion {
  question_id: number | string;
  text: string;
  category: string;
}

export interface LegacyAnswer {
  answer_id: string;
  question_id: number | string;
  model_id: string;
  text: string;
  metadata: Record<string, unknown>;
}

/** A GPT-4 review of two answers: `score: [s1, s2]`, [-1, -1] when the first line did not parse. */
export interface LegacyReview {
  review_id: string;
  question_id: number | string;
  answer1_id: string;
  answer2_id: string;
  text: string;
  score: [number, number];
  reviewer_id: string | number;
  metadata: Record<string, unknown>;
  /** Ours: why score is [-1, -1]. */
  error?: string;
}

export interface LegacyReviewer {
  reviewer_id: string;
  prompt_id: number;
  category: string;
  metadata: Record<string, unknown>;
}

export interface LegacyPrompt {
  prompt_id: number;
  system_prompt: string;
  prompt_template: string;
  defaults: Record<string, string>;
  category: string;
}

// ---- readers ----

/** Both question formats: `turns` (llm_judge) or `text` (the legacy table) become `turns`. */
export function parseQuestion(obj: JsonRecord, at: Place): Question {
  const turns =
    obj.turns === undefined && typeof obj.text === "string" ? [obj.text] : strings(obj, "turns", at);
  if (turns.length === 0)
    throw new InputError("a question needs at least one turn", { ...at, field: "turns" });
  const q: Question = {
    question_id: questionId(obj, at),
    category: optStr(obj, "category", at) ?? "",
    turns,
  };
  if (obj.reference !== undefined) q.reference = strings(obj, "reference", at);
  return q;
}

export function readQuestions(path: string): Question[] {
  const rows = readJsonl(path, parseQuestion);
  const seen = new Map<string, number>();
  for (const r of rows) {
    const key = String(r.value.question_id);
    const first = seen.get(key);
    if (first !== undefined)
      throw new InputError(`question_id ${key} repeats line ${first}`, {
        file: path,
        line: r.line,
        field: "question_id",
      });
    seen.set(key, r.line);
  }
  return rows.map((r) => r.value);
}

/** Both answer formats: `choices` (llm_judge) or a legacy `text` answer (one choice, one turn). */
export function parseAnswer(obj: JsonRecord, at: Place): ModelAnswer {
  const base = {
    ...obj,
    question_id: questionId(obj, at),
    answer_id: optStr(obj, "answer_id", at) ?? "",
    model_id: str(obj, "model_id", at),
    tstamp: typeof obj.tstamp === "number" ? obj.tstamp : 0,
  };
  if (obj.choices === undefined && typeof obj.text === "string") {
    return { ...base, choices: [{ index: 0, turns: [obj.text] }] };
  }
  const choices = obj.choices;
  if (!Array.isArray(choices) || choices.length === 0)
    throw new InputError("expected a non-empty array of {index, turns}", { ...at, field: "choices" });
  return {
    ...base,
    choices: choices.map((c, i) => {
      const where = { ...at, field: `choices[${i}]` };
      if (c === null || typeof c !== "object") throw new InputError("expected {index, turns}", where);
      const rec = c as JsonRecord;
      return {
        index: typeof rec.index === "number" ? rec.index : i,
        turns: strings(rec, "turns", { ...at }),
      };
    }),
  };
}

/** Answers keyed by question_id; a later line for the same question replaces an earlier one. */
export function readAnswers(path: string): Map<string, ModelAnswer> {
  const out = new Map<string, ModelAnswer>();
  for (const { value } of readJsonl(path, parseAnswer)) out.set(String(value.question_id), value);
  return out;
}

export function parseJudgePrompt(obj: JsonRecord, at: Place): JudgePrompt {
  const type = str(obj, "type", at);
  if (type !== "single" && type !== "pairwise")
    throw new InputError(`expected "single" or "pairwise", got ${JSON.stringify(type)}`, {
      ...at,
      field: "type",
    });
  return {
    name: str(obj, "name", at),
    type,
    system_prompt: str(obj, "system_prompt", at),
    prompt_template: str(obj, "prompt_template", at),
    description: optStr(obj, "description", at) ?? "",
    category: optStr(obj, "category", at) ?? "",
    output_format: str(obj, "output_format", at),
  };
}

export function readJudgePrompts(path: string): Map<string, JudgePrompt> {
  return new Map(readJsonl(path, parseJudgePrompt).map(({ value }) => [value.name, value]));
}

function judgeField(obj: JsonRecord, at: Place): [string, string] {
  const j = obj.judge;
  if (!Array.isArray(j) || j.length !== 2 || typeof j[0] !== "string" || typeof j[1] !== "string")
    throw new InputError("expected [judge model, prompt name]", { ...at, field: "judge" });
  return [j[0], j[1]];
}

const WINNERS = new Set(["model_1", "model_2", "tie", "error"]);

function winner(obj: JsonRecord, field: string, at: Place): PairWinner {
  const w = str(obj, field, at);
  if (!WINNERS.has(w))
    throw new InputError(`expected model_1, model_2, tie or error, got ${JSON.stringify(w)}`, {
      ...at,
      field,
    });
  return w as PairWinner;
}

export type Judgment =
  | { kind: "single"; value: SingleJudgment }
  | { kind: "pair"; value: PairJudgment }
  | { kind: "review"; value: LegacyReview };

/** Any of the three judgment formats, told apart by their keys. */
export function parseJudgment(obj: JsonRecord, at: Place): Judgment {
  if (Array.isArray(obj.score)) return { kind: "review", value: parseReview(obj, at) };
  if (obj.g1_winner !== undefined) {
    return {
      kind: "pair",
      value: {
        ...(obj as object),
        question_id: questionId(obj, at),
        model_1: str(obj, "model_1", at),
        model_2: str(obj, "model_2", at),
        g1_winner: winner(obj, "g1_winner", at),
        g2_winner: winner(obj, "g2_winner", at),
        judge: judgeField(obj, at),
        turn: typeof obj.turn === "number" ? obj.turn : 1,
      } as PairJudgment,
    };
  }
  if (obj.score !== undefined && obj.model !== undefined) {
    return {
      kind: "single",
      value: {
        ...(obj as object),
        question_id: questionId(obj, at),
        model: str(obj, "model", at),
        judge: judgeField(obj, at),
        score: num(obj, "score", at),
        turn: typeof obj.turn === "number" ? obj.turn : 1,
      } as SingleJudgment,
    };
  }
  throw new InputError(
    "not a judgment: expected FastChat's single (model, score), pair (g1_winner, g2_winner) or legacy review (score: [s1, s2]) keys",
    at,
  );
}

export function parseReview(obj: JsonRecord, at: Place): LegacyReview {
  const s = obj.score;
  if (!Array.isArray(s) || s.length !== 2 || typeof s[0] !== "number" || typeof s[1] !== "number")
    throw new InputError("expected [s1, s2]", { ...at, field: "score" });
  return {
    ...(obj as object),
    review_id: optStr(obj, "review_id", at) ?? "",
    question_id: questionId(obj, at),
    answer1_id: str(obj, "answer1_id", at),
    answer2_id: str(obj, "answer2_id", at),
    text: str(obj, "text", at),
    score: [s[0], s[1]],
    reviewer_id:
      typeof obj.reviewer_id === "number" ? obj.reviewer_id : (optStr(obj, "reviewer_id", at) ?? ""),
    metadata: (obj.metadata as Record<string, unknown>) ?? {},
  } as LegacyReview;
}

export function readReviews(path: string): LegacyReview[] {
  return readJsonl(path, parseReview).map((r) => r.value);
}

export function readLegacyReviewers(path: string): LegacyReviewer[] {
  return readJsonl(path, (obj, at) => ({
    reviewer_id: str(obj, "reviewer_id", at),
    prompt_id: num(obj, "prompt_id", at),
    category: optStr(obj, "category", at) ?? "",
    metadata: (obj.metadata as Record<string, unknown>) ?? {},
  })).map((r) => r.value);
}

export function readLegacyPrompts(path: string): LegacyPrompt[] {
  return readJsonl(path, (obj, at) => {
    const defaults = (obj.defaults ?? {}) as Record<string, unknown>;
    for (const [k, v] of Object.entries(defaults))
      if (typeof v !== "string") throw new InputError("expected a string", { ...at, field: `defaults.${k}` });
    return {
      prompt_id: num(obj, "prompt_id", at),
      system_prompt: str(obj, "system_prompt", at),
      prompt_template: str(obj, "prompt_template", at),
      defaults: defaults as Record<string, string>,
      category: optStr(obj, "category", at) ?? "",
    };
  }).map((r) => r.value);
}
