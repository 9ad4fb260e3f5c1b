import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { InputError } from "../util/errors.js";
import { type ModelAnswer, type Question, readAnswers, readQuestions } from "./formats.js";

/**
 * Where FastChat's data lives. The benchmark files are not shipped with steerlm (they are FastChat's, under
 * Apache-2.0): point `--fastchat-dir` or STEERLM_FASTCHAT_DATA at a folder laid out like
 * ../shared/data/fastchat (vicuna_bench/, mt_bench/, judge_prompts.jsonl, vicuna_eval_legacy/).
 */
export const FASTCHAT_ENV = "STEERLM_FASTCHAT_DATA";

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export function fastchatDir(explicit?: string): string {
  const candidates = [
    explicit,
    process.env[FASTCHAT_ENV],
    join(packageRoot, "..", "shared", "data", "fastchat"),
  ];
  for (const c of candidates) if (c && existsSync(join(c, "judge_prompts.jsonl"))) return c;
  throw new InputError(
    `no FastChat data folder found (looked for judge_prompts.jsonl in ${candidates.filter(Boolean).join(", ")})`,
    { setting: "fastchatDir" },
    `pass --fastchat-dir or set ${FASTCHAT_ENV} to a copy of FastChat's fastchat/llm_judge/data`,
  );
}

/** Named benchmarks: the folder under the FastChat data folder. */
export const BENCHES: Readonly<Record<string, string>> = { vicuna: "vicuna_bench", "mt-bench": "mt_bench" };

export interface Bench {
  name: string;
  questionFile: string;
  questions: Question[];
  /** GPT-4 reference answers by question_id (for the math/reasoning/coding judges). */
  refs: Map<string, ModelAnswer>;
  refFile?: string;
}

/**
 * `vicuna`, `mt-bench`, or a question.jsonl path. References: `--ref`, else the benchmark's
 * reference_answer_gpt-4.jsonl or FastChat's reference_answer/gpt-4.jsonl beside the question file.
 */
export function loadBench(spec: string, opts: { fastchatDir?: string; refFile?: string } = {}): Bench {
  const named = BENCHES[spec];
  const questionFile = named ? join(fastchatDir(opts.fastchatDir), named, "question.jsonl") : spec;
  if (!named && !existsSync(questionFile))
    throw new InputError(
      "no such file",
      { file: questionFile, setting: "bench" },
      `or name a benchmark: ${Object.keys(BENCHES).join(", ")}`,
    );
  const dir = dirname(questionFile);
  const refFile =
    opts.refFile ??
    [join(dir, "reference_answer_gpt-4.jsonl"), join(dir, "reference_answer", "gpt-4.jsonl")].find((f) =>
      existsSync(f),
    );
  return {
    name: named ? spec : questionFile,
    questionFile,
    questions: readQuestions(questionFile),
    refs: refFile ? readAnswers(refFile) : new Map(),
    refFile,
  };
}
