import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { annotateFile } from "../apm/annotate.js";
import { runApmTrain } from "../apm/train.js";
import { runBootstrap } from "../bootstrap/run.js";
import { latestCheckpoint } from "../run/checkpoint.js";
import { resolveSftConfig } from "../run/config.js";
import { exportGguf } from "../run/export.js";
import { runSft } from "../run/sft.js";
import { writeFileAtomic } from "../util/atomic.js";
import type { SeedData } from "./data.js";
import type { Arm, ReproducePlan } from "./plan.js";
import { PLAIN_ARMS } from "./plan.js";

/**
 * The training stages of one seed, each through the library call its command makes: `sft` (runSft),
 * `apm train` (runApmTrain), `annotate` (annotateFile), `bootstrap` (runBootstrap), `export gguf`. A
 * stage killed midway continues where its own resume leaves off: a run from its newest checkpoint,
 * annotate and bootstrap from their sidecars.
 */
export interface TrainContext {
  /** The seed's directory (runs/, models/, labels/ go in it). */
  dir: string;
  seed: number;
  plan: ReproducePlan;
  data: SeedData;
  progress?: boolean;
}

export interface TrainFigures {
  steps: number;
  trainLoss: number;
  valLoss: number | null;
  tokensPerSecond: number;
}

/** Settings every run of a seed shares: the demo's model and tokenizer, one thread (as the demo). */
function runConfig(ctx: TrainContext, data: string, output: string, extra: Record<string, unknown> = {}) {
  return resolveSftConfig({
    ...ctx.plan.sft,
    data,
    val: ctx.data.files.validation,
    output,
    init: ctx.plan.model,
    seed: ctx.seed,
    threads: 1,
    ...extra,
  });
}

export const modelPath = (ctx: Pick<TrainContext, "dir">, arm: Arm) => join(ctx.dir, "models", `${arm}.gguf`);
const runDir = (ctx: TrainContext, name: string) => join(ctx.dir, "runs", name);

/** SFT of one arm on its data, then its GGUF. */
export async function trainArm(ctx: TrainContext, arm: Arm, data: string): Promise<TrainFigures> {
  const out = runDir(ctx, arm);
  const resolved = runConfig(ctx, data, out, { allowUnlabeled: PLAIN_ARMS.includes(arm) });
  const r = await runSft(resolved, { progress: ctx.progress, resume: latestCheckpoint(out) !== undefined });
  mkdirSync(join(ctx.dir, "models"), { recursive: true });
  await exportGguf(out, modelPath(ctx, arm));
  return { steps: r.step, trainLoss: r.trainLoss, valLoss: r.valLoss, tokensPerSecond: r.tokensPerSecond };
}

export const apmDir = (ctx: TrainContext) => runDir(ctx, "apm");

/** The regression APM on the labelled fraction (same shape and tokenizer recipe as the arms). */
export async function trainApm(ctx: TrainContext): Promise<TrainFigures> {
  const out = apmDir(ctx);
  const resolved = runConfig(ctx, ctx.data.files.labelled, out, { steps: ctx.plan.apmSteps });
  const r = await runApmTrain(resolved, {
    progress: ctx.progress,
    resume: latestCheckpoint(out) !== undefined,
    variant: "regression",
  });
  return { steps: r.step, trainLoss: r.trainLoss, valLoss: r.valLoss, tokensPerSecond: r.tokensPerSecond };
}

export const labelsFile = (ctx: TrainContext, name: string) => join(ctx.dir, "labels", `${name}.jsonl`);

/** `annotate` (resumable); a finished output is kept. */
async function annotate(ctx: TrainContext, input: string, output: string, onlyUnlabeled: boolean) {
  if (existsSync(output)) return;
  await annotateFile({ apm: apmDir(ctx), input, output, onlyUnlabeled, threads: 1, progress: ctx.progress });
}

/**
 * The APM arms' data: the unlabelled rest of the training split annotated (acsft-apm), then that plus
 * the extra pool annotated (acsft-apm-more). Returns the two files.
 */
export async function annotateArms(ctx: TrainContext): Promise<{ apm: string; more: string }> {
  mkdirSync(join(ctx.dir, "labels"), { recursive: true });
  const apm = labelsFile(ctx, "acsft-apm");
  const extra = labelsFile(ctx, "extra");
  const more = labelsFile(ctx, "acsft-apm-more");
  await annotate(ctx, ctx.data.files.partlyLabelled, apm, true);
  await annotate(ctx, ctx.data.files.extra, extra, false);
  if (!existsSync(more)) writeFileAtomic(more, readFileSync(apm, "utf8") + readFileSync(extra, "utf8"));
  return { apm, more };
}

/**
 * One bootstrapping round from the acsft-apm-more model: for prompts of its data, responses at
 * top-quality combinations, re-annotated by the APM, then that data itself. The combinations come from
 * the generator's labels of the training split: the APM's labels regress to the middle and almost never
 * reach the top quality (0.6% of the generator's labels are quality 4). Returns the file.
 */
export async function bootstrapData(ctx: TrainContext, moreData: string): Promise<string> {
  const rows = labelsFile(ctx, "bootstrap-rows");
  const output = labelsFile(ctx, "bootstrap");
  if (!existsSync(rows))
    await runBootstrap({
      model: modelPath(ctx, "acsft-apm-more"),
      apm: apmDir(ctx),
      data: ctx.data.files.train,
      prompts: moreData,
      output: rows,
      limit: ctx.plan.bootstrapPrompts,
      maxTokens: ctx.plan.maxTokens,
      seed: ctx.seed,
      threads: 1,
      progress: ctx.progress,
    });
  if (!existsSync(output))
    writeFileAtomic(output, readFileSync(rows, "utf8") + readFileSync(moreData, "utf8"));
  return output;
}
