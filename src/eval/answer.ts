import { existsSync } from "node:fs";
import type { AttributeValues } from "../data/attributes.js";
import { DEFAULT_SYSTEM_PROMPT, type Turn } from "../data/template.js";
import type { Generator } from "../inference/generator.js";
import { writeFileAtomic } from "../util/atomic.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import { Progress } from "../util/progress.js";
import { type ModelAnswer, type Question, readAnswers } from "./formats.js";
import { appendJsonl, shortUuid } from "./jsonl.js";

/**
 * Model answers to a benchmark in FastChat's model-answer format, generated at chosen attribute values.
 * Multi-turn questions are answered turn by turn, each answer going back into the conversation (as
 * FastChat's gen_model_answer does). Resumable: questions already answered in the output are skipped;
 * the file is rewritten sorted by question_id at the end (FastChat's reorg_answer_file).
 */
export type AnswerModel = Pick<Generator, "generate" | "renderPrompt">;

/**
 * FastChat's gen_model_answer temperatures by MT-Bench category; other categories get 0.7, and a
 * temperature below 1e-4 means greedy decoding.
 */
/** The most tokens a turn gets when maxTokens is unset (and fewer where the context has less room): FastChat's max_new_token. */
export const ANSWER_MAX_TOKENS = 1024;

export const FASTCHAT_TEMPERATURES: Readonly<Record<string, number>> = {
  writing: 0.7,
  roleplay: 0.7,
  extraction: 0.0,
  math: 0.0,
  coding: 0.0,
  reasoning: 0.0,
  stem: 0.1,
  humanities: 0.1,
};

/** The sampling temperature for a question: a number for all, or FastChat's per-category choice. */
export function temperatureFor(q: Question, temperature: number | "fastchat" = 0): number {
  if (temperature !== "fastchat") return temperature;
  const t = FASTCHAT_TEMPERATURES[q.category] ?? 0.7;
  return t < 1e-4 ? 0 : t;
}

export interface AnswerOptions {
  model: AnswerModel;
  modelId: string;
  questions: readonly Question[];
  output: string;
  attributes?: AttributeValues;
  system?: string;
  /** Per turn; unset: what fits in the context, at most ANSWER_MAX_TOKENS. */
  maxTokens?: number;
  /** 0 (default): greedy; "fastchat": FASTCHAT_TEMPERATURES by category. */
  temperature?: number | "fastchat";
  seed?: number;
  /** Questions answered at once (up to the model's parallel sequences). */
  parallel?: number;
  progress?: boolean;
}

export interface AnswerResult {
  written: number;
  skipped: number;
  /** Turns that failed (the prompt did not fit the context): written as "ERROR", as FastChat does. */
  errors: number;
}

export async function generateAnswers(opts: AnswerOptions): Promise<AnswerResult> {
  const done = existsSync(opts.output) ? readAnswers(opts.output) : new Map<string, ModelAnswer>();
  const values = runValues(opts);
  checkSameRun(opts, values, done);
  const todo = opts.questions.filter((q) => !done.has(String(q.question_id)));
  if (done.size > 0) log.info(`answer: ${done.size} questions already answered in ${opts.output}`);
  const progress = new Progress({ label: "answering", total: todo.length, enabled: opts.progress });
  let errors = 0;
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const q = todo[next++] as Question;
      const turns: Turn[] = [];
      const answers: string[] = [];
      for (const [i, text] of q.turns.entries()) {
        turns.push({ role: "user", text });
        let reply: string;
        try {
          const r = await opts.model.generate({
            conversation: { system: opts.system ?? DEFAULT_SYSTEM_PROMPT, turns: [...turns] },
            attributes: opts.attributes,
            maxTokens: opts.maxTokens,
            maxTokensDefault: ANSWER_MAX_TOKENS,
            temperature: temperatureFor(q, opts.temperature),
            seed: opts.seed,
          });
          reply = r.text.trim();
        } catch (err) {
          if ((err as Error).name !== "ContextLengthError") throw err;
          errors++;
          log.warn(
            `answer: question ${q.question_id} turn ${i + 1}: ${(err as Error).message}; written as "ERROR"`,
          );
          reply = "ERROR";
        }
        answers.push(reply);
        turns.push({ role: "assistant", text: reply, values });
      }
      const record: ModelAnswer = {
        question_id: q.question_id,
        answer_id: shortUuid(),
        model_id: opts.modelId,
        choices: [{ index: 0, turns: answers }],
        tstamp: Date.now() / 1000,
        // Ours, beside FastChat's keys: the value string the answers were generated at.
        steerlm_values: values,
      };
      appendJsonl(opts.output, record);
      progress.tick(1, { errors });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.parallel ?? 1) }, worker));
  progress.finish();
  sortAnswerFile(opts.output);
  return { written: todo.length, skipped: opts.questions.length - todo.length, errors };
}

/** The value string every answer of this run is generated at (recorded even where a turn failed). */
function runValues(opts: AnswerOptions): string {
  return opts.model.renderPrompt({
    conversation: { system: opts.system ?? DEFAULT_SYSTEM_PROMPT, turns: [{ role: "user", text: "" }] },
    attributes: opts.attributes,
  }).values;
}

/**
 * The answers already in the output are skipped, so they must be this run's: the same model id and, where
 * steerlm wrote them, the same value string. Otherwise a rerun at other attributes would report the old
 * answers as its own.
 */
function checkSameRun(opts: AnswerOptions, values: string, done: ReadonlyMap<string, ModelAnswer>): void {
  for (const a of done.values()) {
    const other =
      a.model_id !== opts.modelId
        ? `model ${JSON.stringify(a.model_id)}, this run ${JSON.stringify(opts.modelId)}`
        : // "": written by an earlier steerlm for a question whose every turn failed
          a.steerlm_values !== undefined && a.steerlm_values !== "" && a.steerlm_values !== values
          ? `values ${a.steerlm_values}, this run ${values}`
          : undefined;
    if (other !== undefined)
      throw new InputError(
        `holds answers of another run (question ${a.question_id}: ${other})`,
        { file: opts.output, setting: "output" },
        "write to another file (-o), or delete this one to answer again",
      );
  }
}

/** Rewrites an answer file sorted by question_id, one answer per question (the last one wins). */
export function sortAnswerFile(path: string): void {
  if (!existsSync(path)) return;
  const answers = [...readAnswers(path).values()].sort((a, b) =>
    typeof a.question_id === "number" && typeof b.question_id === "number"
      ? a.question_id - b.question_id
      : String(a.question_id).localeCompare(String(b.question_id)),
  );
  writeFileAtomic(path, answers.map((a) => `${JSON.stringify(a)}\n`).join(""));
}
