import { existsSync } from "node:fs";
import { join } from "node:path";
import { type Command, Option } from "commander";
import { type AttributeValues, BUILTIN_SCHEMAS, parseAttributes } from "../../data/attributes.js";
import { readRecords } from "../../data/read.js";
import { formatAdherence, measureAdherence } from "../../eval/adherence.js";
import { ANSWER_MAX_TOKENS, generateAnswers } from "../../eval/answer.js";
import { apmMeasurer } from "../../eval/apm-measure.js";
import { fastchatDir, loadBench } from "../../eval/bench.js";
import { JUDGE_DEFAULTS, openAiJudge } from "../../eval/client.js";
import { readAnswers, readJudgePrompts, readLegacyPrompts, readLegacyReviewers } from "../../eval/formats.js";
import { answerSet, type EvalJudgeMode, runJudgments } from "../../eval/judge.js";
import { buildReport, formatReport } from "../../eval/report.js";
import { SWEEP_DEFAULTS, sweepPrompts } from "../../eval/sweep.js";
import type { Generator } from "../../inference/generator.js";
import type { ContrastMode } from "../../inference/mixture.js";
import { SAMPLING_SETTINGS } from "../../inference/sampling.js";
import { DERIVED_ATTRIBUTES } from "../../steerbench/compose.js";
import { companionsFrom, turnLabels } from "../../steerbench/derived.js";
import { synthesize } from "../../steerbench/synth.js";
import { checkOutputs, writeFileAtomic } from "../../util/atomic.js";
import { InputError } from "../../util/errors.js";
import { integerFrom, numberOption, parseLevels, parseNumberFlag } from "../flags.js";
import {
  addBackendOptions,
  addContextOptions,
  addGuidanceOptions,
  addModelOptions,
  addParallelOption,
  addSamplingOptions,
  openModel,
} from "../options.js";
import { registerSteering } from "./eval-steer.js";

const attrs = (model: Generator, text: string | undefined): AttributeValues | undefined =>
  text === undefined ? undefined : parseAttributes(model.schema, text, { field: "--attr" });

/** `--first <n>`: only the first n questions. */
const addFirstOption = (cmd: Command, help: string): Command =>
  cmd.addOption(numberOption("--first <n>", help, integerFrom(1)));

type AnswerFlags = {
  model: string;
  lora?: string;
  schema?: string;
  bench: string;
  output: string;
  attr?: string;
  modelId?: string;
  system?: string;
  maxTokens?: number;
  temperature: number | "fastchat";
  seed?: number;
  parallel: number;
  fastchatDir?: string;
  first?: number;
};

interface JudgeFlags {
  answers: string[];
  baseline?: string;
  bench: string;
  ref?: string;
  judgeUrl: string;
  judgeModel: string;
  apiKey?: string;
  mode: string;
  output?: string;
  judgePrompts?: string;
  fastchatDir?: string;
  parallel: number;
  maxTokens: number;
  first?: number;
}

type AdherenceFlags = {
  model: string;
  lora?: string;
  schema?: string;
  prompts?: string;
  nPrompts: number;
  levels?: string;
  attributes?: string;
  maxTokens: number;
  parallel: number;
  json?: string;
  apm?: string;
  companionsFrom?: string;
  guidance?: number;
  contrast?: ContrastMode;
};

export function register(program: Command): void {
  const evalCmd = program
    .command("eval")
    .description(
      "benchmarks in FastChat's formats (answers, LLM-judge judgments, reports) and attribute adherence",
    );

  const answer = evalCmd
    .command("answer")
    .description(
      "answer a benchmark's questions with a steerable model, in FastChat's model-answer format (resumable)",
    );
  addModelOptions(answer)
    .requiredOption("--bench <vicuna|mt-bench|file>", "benchmark name or a question.jsonl")
    .requiredOption(
      "-o, --output <answers.jsonl>",
      "answer file (appended to; answered questions are skipped)",
    )
    .option("-a, --attr <k=v,...>", "attribute values to answer at (others take the schema defaults)")
    .option("--model-id <id>", "model_id written into the answers (default: the model file's name)")
    .option("--system <text>", "system prompt (default: SteerLM's)");
  addSamplingOptions(
    answer,
    ["maxTokens"],
    {},
    {
      maxTokens: `most tokens per turn (default: what fits, at most ${ANSWER_MAX_TOKENS})`,
    },
  ).addOption(
    new Option(
      "-t, --temperature <t|fastchat>",
      "sampling temperature (0: greedy), or fastchat: FastChat's per-category choice",
    )
      .argParser((t: string) =>
        t === "fastchat" ? t : parseNumberFlag(t, SAMPLING_SETTINGS.temperature.range, "--temperature"),
      )
      .default(SAMPLING_SETTINGS.temperature.default),
  );
  addSamplingOptions(answer, ["seed"]);
  addParallelOption(answer, "questions answered at once (with --backend: requests in flight)", 1);
  addContextOptions(answer);
  addBackendOptions(answer);
  addFirstOption(answer, "only the first n questions")
    .option("--fastchat-dir <dir>", "FastChat data folder for named benchmarks")
    .action(async (o: AnswerFlags) => {
      const bench = loadBench(o.bench, { fastchatDir: o.fastchatDir });
      const questions = bench.questions.slice(0, o.first);
      const parallel = o.parallel;
      const model = await openModel(o, { parallel });
      try {
        const r = await generateAnswers({
          model,
          modelId: o.modelId ?? model.id,
          questions,
          output: o.output,
          attributes: attrs(model, o.attr),
          system: o.system,
          maxTokens: o.maxTokens,
          temperature: o.temperature,
          seed: o.seed,
          parallel,
        });
        process.stderr.write(
          `answers: ${r.written} written, ${r.skipped} already there, ${r.errors} turn errors -> ${o.output}\n`,
        );
      } finally {
        await model.dispose();
      }
    });

  const judge = evalCmd
    .command("judge")
    .description(
      "judge answers with an LLM judge behind an OpenAI-compatible endpoint, in FastChat's judgment format (resumable)",
    )
    .requiredOption(
      "--answers <files...>",
      "answer files (FastChat's model-answer format or the legacy table's)",
    )
    .option(
      "--baseline <file>",
      "baseline answers (pair and review modes), e.g. the legacy answer_gpt35.jsonl; without it: every pair of --answers",
    )
    .requiredOption("--bench <vicuna|mt-bench|file>", "the questions the answers are for")
    .option(
      "--ref <file>",
      "reference answers for math/reasoning/coding (default: the benchmark's GPT-4 references)",
    )
    .requiredOption("--judge-url <url>", "OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1")
    .requiredOption(
      "--judge-model <name>",
      "judge model name sent to the endpoint and written into judgments",
    )
    .option("--api-key <key>", "bearer token for the judge (default: $OPENAI_API_KEY)")
    .option(
      "--mode <single|pair|review>",
      "single: 1-10 ratings; pair: [[A]]/[[B]]/[[C]] in both orders; review: legacy Vicuna two-score review in both orders (% of baseline)",
      "single",
    )
    .option("-o, --output <file>", "judgment file (default: <judge-model>_<mode>.jsonl)")
    .option("--judge-prompts <file>", "judge_prompts.jsonl (default: the FastChat data folder's)")
    .option("--fastchat-dir <dir>", "FastChat data folder");
  addParallelOption(judge, "judge requests at once", 1);
  addSamplingOptions(
    judge,
    ["maxTokens"],
    { maxTokens: JUDGE_DEFAULTS.maxTokens },
    { maxTokens: "judge max_tokens" },
  );
  addFirstOption(judge, "only the first n questions (as answered with eval answer --first)").action(
    async (o: JudgeFlags) => {
      if (!["single", "pair", "review"].includes(o.mode))
        throw new InputError(`expected single, pair or review, got ${JSON.stringify(o.mode)}`, {
          field: "--mode",
        });
      const mode = o.mode as EvalJudgeMode;
      const bench = loadBench(o.bench, { fastchatDir: o.fastchatDir, refFile: o.ref });
      bench.questions = bench.questions.slice(0, o.first);
      const answers = o.answers.map((f) => answerSet(f, readAnswers(f)));
      const baseline = o.baseline === undefined ? undefined : answerSet(o.baseline, readAnswers(o.baseline));
      const promptsFile =
        o.judgePrompts ??
        (mode === "review" ? undefined : join(fastchatDir(o.fastchatDir), "judge_prompts.jsonl"));
      let legacy: Parameters<typeof runJudgments>[0]["legacy"];
      if (mode === "review") {
        const dir = join(fastchatDir(o.fastchatDir), "vicuna_eval_legacy");
        legacy = {
          reviewers: readLegacyReviewers(join(dir, "reviewer.jsonl")),
          prompts: readLegacyPrompts(join(dir, "prompt.jsonl")),
        };
      }
      const output = o.output ?? `${o.judgeModel.replace(/[^\w.-]+/g, "_")}_${mode}.jsonl`;
      const r = await runJudgments({
        bench,
        mode,
        answers,
        baseline,
        judge: openAiJudge({
          url: o.judgeUrl,
          model: o.judgeModel,
          apiKey: o.apiKey ?? process.env.OPENAI_API_KEY,
          maxTokens: o.maxTokens,
        }),
        judgeModel: o.judgeModel,
        judgePrompts: promptsFile ? readJudgePrompts(promptsFile) : undefined,
        legacy,
        output,
        parallel: o.parallel,
      });
      process.stderr.write(
        `judgments: ${r.written} written (${r.errors} without a parseable verdict), ${r.skipped} already there -> ${output}\n`,
      );
    },
  );

  evalCmd
    .command("report")
    .description(
      "summarise judgment files: mean ratings, pairwise win rates, total-score ratios (% of baseline)",
    )
    .argument("<judgments...>", "single, pair or legacy review JSONL files")
    .option(
      "--baseline <model>",
      "pairwise: only comparisons with this model; reviews: ratios relative to it",
    )
    .option("--json", "print the report as JSON")
    .action((files: string[], o: { baseline?: string; json?: boolean }) => {
      const report = buildReport(files, { baseline: o.baseline });
      process.stdout.write(`${o.json ? JSON.stringify(report, null, 2) : formatReport(report)}\n`);
    });

  const adherence = evalCmd
    .command("adherence")
    .description(
      "asked vs measured attribute values (SteerBench oracle) on held-out prompts: table, Spearman, JSON",
    );
  addModelOptions(adherence)
    .option(
      "--prompts <file>",
      "prompts: SteerLM/chat JSONL, first user turn of each (default: SteerBench held-out prompts)",
    )
    .addOption(numberOption("--n-prompts <n>", "how many prompts", integerFrom(1), 10))
    .option(
      "--levels <a..b[:step]|list>",
      "levels to request, e.g. 0..4, 0..4:0.1 (fractions are mixed) or 0,2,4 (default: each attribute's range)",
    )
    .option("--attributes <names>", "comma-separated attributes to sweep (default: all)")
    .option(
      "--companions-from <file>",
      "labelled training data: a derived attribute (quality, helpfulness) at level k is requested with the others at their most frequent values among turns labelled k (default with SteerBench prompts: SteerBench's training labels; with --prompts: the others at defaults)",
    );
  addGuidanceOptions(adherence);
  addSamplingOptions(
    adherence,
    ["maxTokens"],
    { maxTokens: SWEEP_DEFAULTS.maxTokens },
    { maxTokens: "most tokens per response" },
  );
  addParallelOption(
    adherence,
    "generations at once (above 1 is faster, but llama.cpp's greedy output then depends on which sequences share a batch; with --backend: requests in flight)",
    1,
  );
  addContextOptions(adherence);
  addBackendOptions(adherence)
    .option("--json <file>", "also write the full report (with every sample) as JSON")
    .option(
      "--apm <run|ckpt>",
      "measure with an attribute prediction model (steerlm apm train) instead of the oracle",
    )
    .action(async (o: AdherenceFlags) => {
      const n = o.nPrompts;
      checkOutputs(
        { json: o.json },
        { model: o.model, prompts: o.prompts, companionsFrom: o.companionsFrom },
      );
      const prompts = await sweepPrompts(o.prompts, n);
      const parallel = o.parallel;
      const model = await openModel(o, { parallel });
      try {
        const labels = o.companionsFrom
          ? await labelsFrom(o.companionsFrom)
          : o.prompts
            ? undefined
            : turnLabels(synthesize({ n: 4000, seed: 1 }).splits.train, BUILTIN_SCHEMAS.steerlm);
        const derived = DERIVED_ATTRIBUTES.filter((a) => model.schema.attributes.some((d) => d.name === a));
        const companions = labels && companionsFrom(labels, model.schema, derived);
        const report = await measureAdherence({
          model,
          prompts,
          attributes: o.attributes?.split(",").map((s) => s.trim()),
          levels: o.levels === undefined ? undefined : parseLevels(o.levels),
          maxTokens: o.maxTokens,
          parallel,
          companions,
          guidance: o.guidance,
          contrast: o.contrast,
          measureBatch: o.apm === undefined ? undefined : apmMeasurer(o.apm),
        });
        process.stdout.write(`${formatAdherence(report)}\n`);
        if (o.json) {
          writeFileAtomic(o.json, `${JSON.stringify(report, null, 2)}\n`);
          process.stderr.write(`report: ${o.json}\n`);
        }
      } finally {
        await model.dispose();
      }
    });

  registerSteering(evalCmd);
}

async function labelsFrom(file: string): Promise<AttributeValues[]> {
  if (!existsSync(file)) throw new InputError("no such file", { file, setting: "companionsFrom" });
  const out: AttributeValues[] = [];
  for await (const rec of readRecords(file, { allowUnlabeled: true }))
    for (const t of rec.turns) if (t.labels) out.push(t.labels);
  if (out.length === 0)
    throw new InputError(
      "no labelled turns",
      { file, setting: "companionsFrom" },
      "give labelled training data",
    );
  return out;
}
