import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { BUILTIN_SCHEMAS } from "../data/attributes.js";
import { DERIVED_ATTRIBUTES } from "../steerbench/compose.js";
import { type Companions, companionsFrom, requestFor, turnLabels } from "../steerbench/derived.js";
import type { JobContext } from "../train/isolate.js";
import { log, setLogSink } from "../util/log.js";
import { prepareSeedData, type SeedData } from "./data.js";
import { type GenerationRow, generateRows, type Job, judgePrompts, writeRows } from "./judge.js";
import { ARMS, type Arm, PLAIN_ARMS, type ReproducePlan } from "./plan.js";
import { SPLIT_NAMES, STEERED } from "./report.js";
import type { StageRecord } from "./state.js";
import { annotateArms, bootstrapData, modelPath, type TrainContext, trainApm, trainArm } from "./train.js";

/**
 * One seed's pipeline, run in its own process (runIsolated) so that seeds train side by side on separate
 * cores: data → sft, sft-hq, acsft → APM → annotate → acsft-apm, acsft-apm-more → bootstrap round →
 * bootstrap → judge every arm → steer acsft. The parent owns state.json: it passes in the stages already
 * done (with their results, which later stages need) and records each stage this process reports.
 */
export interface SeedJob {
  /** The seed's directory, `<run>/seed-<s>`. */
  dir: string;
  seed: number;
  plan: ReproducePlan;
  progress?: boolean;
  /** Stages finished by an earlier run (by stage name), from the parent's state.json. */
  done: Record<string, StageRecord>;
}

/** What a seed process sends its parent after each stage it ran. */
export interface StageDone {
  stage: string;
  record: StageRecord;
}

export const SEED_STAGES = 3 + 1 + 1 + 2 + 1 + 1 + ARMS.length + 1;

export const judgeFile = (seedDir: string, arm: Arm) => join(seedDir, "generations", `${arm}.jsonl`);
export const steerFile = (seedDir: string) => join(seedDir, "generations", "steer-acsft.jsonl");

export async function runSeed(job: SeedJob, ctx: JobContext): Promise<void> {
  // several seeds write to one terminal: every line says whose it is
  setLogSink((level, text) =>
    process.stderr.write(`[seed ${job.seed}] ${level === "info" ? "" : `[${level}] `}${text}\n`),
  );
  let n = 0;
  const stage = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    n++;
    const prior = job.done[name];
    log.info(`reproduce [${n}/${SEED_STAGES}] ${name}${prior ? " (done)" : ""}`);
    if (prior) return prior.result as T;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const result = await fn();
    const cpu = process.cpuUsage(cpu0);
    const record: StageRecord = {
      seconds: (performance.now() - t0) / 1000,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      result,
    };
    ctx.send({ stage: name, record } satisfies StageDone);
    return result;
  };

  const data = prepareSeedData(job.dir, job.seed, job.plan);
  const tc: TrainContext = { dir: job.dir, seed: job.seed, plan: job.plan, data, progress: job.progress };
  const f = data.files;
  for (const [arm, file] of [
    ["sft", f.plain],
    ["sft-hq", f.highQuality],
    ["acsft", f.train],
  ] as const)
    await stage(`train ${arm}`, () => trainArm(tc, arm, file));
  await stage("train apm", () => trainApm(tc));
  const labels = await stage("annotate", () => annotateArms(tc));
  await stage("train acsft-apm", () => trainArm(tc, "acsft-apm", labels.apm));
  await stage("train acsft-apm-more", () => trainArm(tc, "acsft-apm-more", labels.more));
  const boot = await stage("bootstrap round", () => bootstrapData(tc, labels.more));
  await stage("train bootstrap", () => trainArm(tc, "bootstrap", boot));
  const companions = companionsOf(data);
  for (const arm of ARMS)
    await stage(`judge ${arm}`, async () => {
      writeRows(judgeFile(job.dir, arm), await judge(tc, arm, companions));
    });
  await stage("steer acsft", async () => {
    writeRows(steerFile(job.dir), await steer(tc, companions));
  });
}

/** The derived attributes' companions from the seed's training labels (the generator's). */
function companionsOf(data: SeedData): Companions {
  const schema = BUILTIN_SCHEMAS.steerlm;
  return companionsFrom(turnLabels(data.bench.splits.train, schema), schema, DERIVED_ATTRIBUTES);
}

/**
 * One arm's answers on the test split and the held-out family: an ACSFT arm at the best value string
 * (top quality, with the combination of the others most often seen with it in training, which also
 * has top helpfulness), a plain-SFT arm on the bare prompt.
 */
async function judge(ctx: TrainContext, arm: Arm, companions: Companions): Promise<GenerationRow[]> {
  const best = PLAIN_ARMS.includes(arm) ? null : requestFor(companions, "quality", 4);
  const jobs: Job[] = SPLIT_NAMES.flatMap((split) =>
    judgePrompts(ctx.data.bench, split, ctx.plan.judgePrompts).map((p) => ({
      ...p,
      attributes: best,
      split,
    })),
  );
  mkdirSync(join(ctx.dir, "generations"), { recursive: true });
  return generateRows(modelPath(ctx, arm), jobs, meta(ctx, arm, `judge ${arm}`));
}

/** The acsft arm at each level of each steered attribute (derived ones with their companions). */
async function steer(ctx: TrainContext, companions: Companions): Promise<GenerationRow[]> {
  const prompts = judgePrompts(ctx.data.bench, "test", ctx.plan.steerPrompts);
  const jobs: Job[] = STEERED.flatMap((sweep) =>
    [0, 1, 2, 3, 4].flatMap((level) =>
      prompts.map(({ system, prompt }) => ({
        system,
        prompt,
        split: "test" as const,
        attributes: requestFor(DERIVED_ATTRIBUTES.includes(sweep) ? companions : undefined, sweep, level),
        sweep,
        level,
      })),
    ),
  );
  mkdirSync(join(ctx.dir, "generations"), { recursive: true });
  return generateRows(modelPath(ctx, "acsft"), jobs, meta(ctx, "acsft", "steer acsft"));
}

const meta = (ctx: TrainContext, arm: Arm, label: string) => ({
  arm,
  seed: ctx.seed,
  maxTokens: ctx.plan.maxTokens,
  progress: ctx.progress,
  label,
});
