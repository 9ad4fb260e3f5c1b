import { InputError } from "../util/errors.js";
import type { JudgePrompt, LegacyPrompt, LegacyReviewer, ModelAnswer, Question } from "./formats.js";

/**
 * Judge prompts filled exactly as FastChat fills them: its templates are Python `str.format` strings, the
 * judge sees `[system, user]`, and the judge prompt is chosen from the question's category and turn
 * (fastchat/llm_judge/gen_judgment.py: make_judge_single / make_judge_pairwise).
 */

/** Categories whose questions are judged against a reference answer (FastChat's NEED_REF_CATS). */
export const NEED_REF_CATS: readonly string[] = ["math", "reasoning", "coding"];

export interface ChatMessage {
  role: "system" | "user";
  content: string;
}

/**
 * Python's `template.format(**values)` for the subset judge templates use: `{name}` fields, `{{` and `}}`
 * escapes. Substituted text is never re-scanned (an answer containing `{question}` stays as it is). A field
 * with no value is an error, as Python's KeyError is; extra values are ignored, as in Python.
 */
export function formatTemplate(template: string, values: Readonly<Record<string, string>>): string {
  let out = "";
  let i = 0;
  while (i < template.length) {
    const c = template[i]!;
    if (c === "{" && template[i + 1] === "{") {
      out += "{";
      i += 2;
    } else if (c === "}" && template[i + 1] === "}") {
      out += "}";
      i += 2;
    } else if (c === "{") {
      const end = template.indexOf("}", i);
      const name = end < 0 ? "" : template.slice(i + 1, end);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
        throw new InputError(`unsupported template field {${name}} at offset ${i}`, {
          field: "prompt_template",
        });
      const v = values[name];
      if (v === undefined) throw new InputError(`no value for {${name}}`, { field: "prompt_template" });
      out += v;
      i = end + 1;
    } else if (c === "}") {
      throw new InputError(`single '}' at offset ${i}`, { field: "prompt_template" });
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

export type JudgeMode = "single" | "pair";

/** The FastChat judge prompt name for a question, mode and turn (turn 2 only for 2-turn questions). */
export function judgePromptName(mode: JudgeMode, category: string, turn: 1 | 2): string {
  const math = NEED_REF_CATS.includes(category);
  const base =
    mode === "single" ? (math ? "single-math-v1" : "single-v1") : math ? "pair-math-v1" : "pair-v2";
  return turn === 2 ? `${base}-multi-turn` : base;
}

/** The turns FastChat judges for a question: 1, plus 2 when it has exactly two turns. */
export function judgedTurns(q: Question): Array<1 | 2> {
  return q.turns.length === 2 ? [1, 2] : [1];
}

function firstChoice(a: ModelAnswer, need: number, who: string): string[] {
  const turns = a.choices[0]?.turns ?? [];
  if (turns.length < need)
    throw new InputError(
      `${who} has ${turns.length} turn(s) for question ${a.question_id}, the judge needs ${need}`,
      {
        field: "choices[0].turns",
      },
    );
  return turns;
}

function refValues(ref: ModelAnswer | undefined, turn: 1 | 2): Record<string, string> {
  if (!ref) return {};
  const turns = firstChoice(ref, turn, "the reference answer");
  // FastChat fills ref_answer_2 too; only the multi-turn templates use it (vicuna_bench refs have one turn).
  return turn === 2 ? { ref_answer_1: turns[0]!, ref_answer_2: turns[1]! } : { ref_answer_1: turns[0]! };
}

function questionTurns(q: Question, turn: 1 | 2): string[] {
  if (q.turns.length < turn)
    throw new InputError(`question ${q.question_id} has ${q.turns.length} turn(s)`, { field: "turns" });
  return q.turns;
}

/** A template's values: each field's first turn under its name, or both turns as `<name>_1`, `<name>_2`. */
function turnValues(turn: 1 | 2, fields: Record<string, string[]>): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [name, turns] of Object.entries(fields)) {
    if (turn === 1) values[name] = turns[0]!;
    else {
      values[`${name}_1`] = turns[0]!;
      values[`${name}_2`] = turns[1]!;
    }
  }
  return values;
}

function messages(judge: JudgePrompt, user: string): ChatMessage[] {
  return [
    { role: "system", content: judge.system_prompt },
    { role: "user", content: user },
  ];
}

/** FastChat's run_judge_single prompt: the answer's first choice, turn 1 or the two-turn conversation. */
export function singleJudgeMessages(
  judge: JudgePrompt,
  q: Question,
  answer: ModelAnswer,
  turn: 1 | 2,
  ref?: ModelAnswer,
): ChatMessage[] {
  const qt = questionTurns(q, turn);
  const at = firstChoice(answer, turn, `model ${answer.model_id}`);
  const values = turnValues(turn, { question: qt, answer: at });
  return messages(judge, formatTemplate(judge.prompt_template, { ...values, ...refValues(ref, turn) }));
}

/** FastChat's run_judge_pair prompt for one game: `a` is shown as assistant A, `b` as B. */
export function pairJudgeMessages(
  judge: JudgePrompt,
  q: Question,
  a: ModelAnswer,
  b: ModelAnswer,
  turn: 1 | 2,
  ref?: ModelAnswer,
): ChatMessage[] {
  const qt = questionTurns(q, turn);
  const at = firstChoice(a, turn, `model ${a.model_id}`);
  const bt = firstChoice(b, turn, `model ${b.model_id}`);
  const values = turnValues(turn, { question: qt, answer_a: at, answer_b: bt });
  return messages(judge, formatTemplate(judge.prompt_template, { ...values, ...refValues(ref, turn) }));
}

/**
 * The legacy Vicuna review prompt (fastchat/eval/eval_gpt_review.py gen_prompt): the first reviewer whose
 * category is the question's, else the first reviewer; its prompt by prompt_id; defaults fill `{prompt}`.
 */
export function legacyReviewMessages(
  reviewers: readonly LegacyReviewer[],
  prompts: readonly LegacyPrompt[],
  category: string,
  question: string,
  answer1: string,
  answer2: string,
): { reviewer: LegacyReviewer; messages: ChatMessage[] } {
  const reviewer = reviewers.find((r) => r.category === category) ?? reviewers[0];
  if (!reviewer) throw new InputError("no reviewers", { field: "reviewer" });
  const prompt = prompts.find((p) => p.prompt_id === reviewer.prompt_id);
  if (!prompt)
    throw new InputError(
      `reviewer ${reviewer.reviewer_id} names prompt_id ${reviewer.prompt_id}, which is not in the prompt file`,
      {
        field: "prompt_id",
      },
    );
  const user = formatTemplate(prompt.prompt_template, {
    ...prompt.defaults,
    question,
    answer_1: answer1,
    answer_2: answer2,
  });
  return {
    reviewer,
    messages: [
      { role: "system", content: prompt.system_prompt },
      { role: "user", content: user },
    ],
  };
}
