import { mkdirSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { BUILTIN_SCHEMAS } from "../data/attributes.js";
import { DERIVED_ATTRIBUTES } from "../steerbench/compose.js";
import { type Companions, companionsFrom, requestFor, turnLabels } from "../steerbench/derived.js";
import { log } from "../util/log.js";
import { version } from "../version.js";
import { prepareSeedData, type SeedData } from "./data.js";
import { type GenerationRow, generateRows, type Job, judgePrompts, readRows, writeRows } from "./judge.js";
import { ARMS, type Arm, PLAIN_ARMS, REPRODUCE_PLANS, type ReproducePlan } from "./plan.js";
import { writePlots } from "./plots.js";
import {
  type ArmFigures,
  armFigures,
  type CurveFigures,
  checks,
  curveFigures,
  formatReport,
  type ReproduceReport,
  SPLIT_NAMES,
  STEERED,
} from "./report.js";
import { ReproduceState, writeAtomic } from "./state.js";
import { annotateArms, bootstrapData, modelPath, type TrainContext, trainApm, trainArm } from "./train.js";

/**
 * `steerlm reproduce`: the SteerLM paper's ablation on SteerBench, top to bottom. For each seed:
 *   data → sft, sft-hq, acsft → APM on the labelled fraction → annotate the rest and the extra pool →
 *   acsft-apm, acsft-apm-more → one bootstrapping round → bootstrap → judge every arm (test split and
 *   held-out family) → steer acsft (toxicity, verbosity, quality, helpfulness 0..4);
 * then the report from the generations (report.json, report.md, charts). Each stage is recorded in
 * state.json when it finishes; --resume skips those and continues the one that was cut.
 *
 * Output directory:
 *   report.json, report.md, arms-*.{svg,png}, steer-*.{svg,png}
 *   generations/<arm>.jsonl      every judged response, all seeds (SteerLM JSONL; `steerlm bench score`)
 *   generations/steer-acsft.jsonl  the steering sweeps
 *   seed-<s>/data, runs/<arm>, runs/apm, models/<arm>.gguf, labels/, generations/
 *   state.json
 */
export interface ReproduceOptions {
  dir: string;
  /** Training seeds (default [1, 2, 3]; the quick run: [1]). */
  seeds?: number[];
  quick?: boolean;
  resume?: boolean;
  progress?: boolean;
  /** Sizes other than the built-in plans (tests use a tiny one). */
  plan?: ReproducePlan;
}

export async function runReproduce(opts: ReproduceOptions): Promise<ReproduceReport> {
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const plan = opts.plan ?? REPRODUCE_PLANS[opts.quick ? "quick" : "full"];
  const seeds = opts.seeds ?? (opts.quick ? [1] : [1, 2, 3]);
  const settings = { quick: Boolean(opts.quick), seeds, plan };
  const state = new ReproduceState(dir, settings, Boolean(opts.resume));
  const stagesPerSeed = 3 + 1 + 1 + 2 + 1 + 1 + ARMS.length + 1;
  let n = 0;
  const total = stagesPerSeed * seeds.length;
  const stage = <T>(seed: number, name: string, fn: () => Promise<T>) => {
    const key = `seed-${seed}/${name}`;
    n++;
    log.info(`reproduce [${n}/${total}] seed ${seed}: ${name}${state.done(key) ? " (done)" : ""}`);
    return state.stage(key, fn);
  };

  for (const seed of seeds) {
    const seedDir = join(dir, `seed-${seed}`);
    const data = prepareSeedData(seedDir, seed, plan);
    const ctx: TrainContext = { dir: seedDir, seed, plan, data, progress: opts.progress };
    const f = data.files;
    for (const [arm, file] of [
      ["sft", f.plain],
      ["sft-hq", f.highQuality],
      ["acsft", f.train],
    ] as const)
      await stage(seed, `train ${arm}`, () => trainArm(ctx, arm, file));
    await stage(seed, "train apm", () => trainApm(ctx));
    const labels = await stage(seed, "annotate", () => annotateArms(ctx));
    await stage(seed, "train acsft-apm", () => trainArm(ctx, "acsft-apm", labels.apm));
    await stage(seed, "train acsft-apm-more", () => trainArm(ctx, "acsft-apm-more", labels.more));
    const boot = await stage(seed, "bootstrap round", () => bootstrapData(ctx, labels.more));
    await stage(seed, "train bootstrap", () => trainArm(ctx, "bootstrap", boot));
    const companions = companionsOf(data);
    for (const arm of ARMS)
      await stage(seed, `judge ${arm}`, async () => {
        writeRows(judgeFile(seedDir, arm), await judge(ctx, arm, companions));
      });
    await stage(seed, "steer acsft", async () => {
      writeRows(steerFile(seedDir), await steer(ctx, companions));
    });
  }

  // ---- the report: from the generation files, so a resumed run reports the same ----
  log.info("reproduce: report");
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const genDir = join(dir, "generations");
  mkdirSync(genDir, { recursive: true });
  const arms = {} as Record<Arm, ArmFigures>;
  for (const arm of ARMS) {
    const rows = seeds.flatMap((s) => readRows(judgeFile(join(dir, `seed-${s}`), arm)));
    writeRows(join(genDir, `${arm}.jsonl`), rows);
    arms[arm] = armFigures(arm, rows, seeds);
  }
  const steerRows: GenerationRow[] = seeds.flatMap((s) => readRows(steerFile(join(dir, `seed-${s}`))));
  writeRows(join(genDir, "steer-acsft.jsonl"), steerRows);
  const steering: Record<string, CurveFigures> = {};
  for (const a of STEERED) steering[a] = curveFigures(steerRows, a, seeds);
  const cpu = process.cpuUsage(cpu0);
  const stages: ReproduceReport["time"]["stages"] = {};
  for (const [k, v] of Object.entries(state.stages))
    stages[k] = { seconds: v.seconds, cpuSeconds: v.cpuSeconds };
  stages.report = { seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
  // the sum of the stages: each is recorded once, so a resumed run counts the work, not the pauses
  const sum = (k: "seconds" | "cpuSeconds") => Object.values(stages).reduce((a, x) => a + x[k], 0);
  const report: ReproduceReport = {
    steerlm: version,
    settings,
    arms,
    steering,
    checks: checks(arms, steering),
    time: { seconds: sum("seconds"), cpuSeconds: sum("cpuSeconds"), load: loadavg(), stages },
  };
  writeAtomic(join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  writeAtomic(join(dir, "report.md"), formatReport(report));
  await writePlots(dir, report);
  return report;
}

const judgeFile = (seedDir: string, arm: Arm) => join(seedDir, "generations", `${arm}.jsonl`);
const steerFile = (seedDir: string) => join(seedDir, "generations", "steer-acsft.jsonl");

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
