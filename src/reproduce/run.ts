import { mkdirSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { runIsolated } from "../train/isolate.js";
import { writeFileAtomic } from "../util/atomic.js";
import { log } from "../util/log.js";
import { version } from "../version.js";
import { type GenerationRow, readRows, writeRows } from "./judge.js";
import { ARMS, type Arm, REPRODUCE_PLANS, REPRODUCE_SEEDS, type ReproducePlan } from "./plan.js";
import { writePlots } from "./plots.js";
import {
  type ArmFigures,
  armFigures,
  type CurveFigures,
  checks,
  curveFigures,
  formatReport,
  type ReproduceReport,
  STEERED,
} from "./report.js";
import { judgeFile, type SeedJob, type StageDone, steerFile } from "./seed.js";
import { ReproduceState } from "./state.js";

/**
 * `steerlm reproduce`: the SteerLM paper's ablation on SteerBench, top to bottom. For each seed:
 *   data → sft, sft-hq, acsft → APM on the labelled fraction → annotate the rest and the extra pool →
 *   acsft-apm, acsft-apm-more → one bootstrapping round → bootstrap → judge every arm (test split and
 *   held-out family) → steer acsft (toxicity, verbosity, quality, helpfulness 0..4);
 * then the report from the generations (report.json, report.md, charts). Each seed's pipeline runs in its
 * own process (src/reproduce/seed.ts), `jobs` of them at a time: seeds are independent and every stage is
 * single-threaded, so two seeds use two cores. Each stage is recorded in state.json when it finishes (by
 * this process only, from the seeds' messages); --resume skips those and continues the one that was cut.
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
  /** Training seeds (default: REPRODUCE_SEEDS of the plan). */
  seeds?: number[];
  quick?: boolean;
  resume?: boolean;
  progress?: boolean;
  /** Seeds run at the same time, each in its own process (default: the number of CPU cores). */
  jobs?: number;
  /** Sizes other than the built-in plans (tests use a tiny one). */
  plan?: ReproducePlan;
}

export async function runReproduce(opts: ReproduceOptions): Promise<ReproduceReport> {
  const started = performance.now();
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const plan = opts.plan ?? REPRODUCE_PLANS[opts.quick ? "quick" : "full"];
  const seeds = opts.seeds ?? [...REPRODUCE_SEEDS[opts.quick ? "quick" : "full"]];
  // each seed's folder, and the prefix of its stages in the state file
  const seedName = (seed: number) => `seed-${seed}`;
  const settings = { quick: Boolean(opts.quick), seeds, plan };
  const state = new ReproduceState(dir, settings, Boolean(opts.resume));
  const jobs = opts.jobs ?? availableParallelism();
  if (!Number.isInteger(jobs) || jobs < 1)
    throw new RangeError(`jobs must be a positive integer, got ${jobs}`);
  await runSeeds(
    seeds.map((seed) => ({
      dir: join(dir, seedName(seed)),
      seed,
      plan,
      progress: opts.progress,
      done: state.stagesOf(`${seedName(seed)}/`),
    })),
    jobs,
    (seed, { stage, record }) => state.record(`${seedName(seed)}/${stage}`, record),
  );

  // ---- the report: from the generation files, so a resumed run reports the same ----
  log.info("reproduce: report");
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const genDir = join(dir, "generations");
  mkdirSync(genDir, { recursive: true });
  const arms = {} as Record<Arm, ArmFigures>;
  for (const arm of ARMS) {
    const rows = seeds.flatMap((s) => readRows(judgeFile(join(dir, seedName(s)), arm)));
    writeRows(join(genDir, `${arm}.jsonl`), rows);
    arms[arm] = armFigures(arm, rows, seeds);
  }
  const steerRows: GenerationRow[] = seeds.flatMap((s) => readRows(steerFile(join(dir, seedName(s)))));
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
    time: {
      elapsed: (performance.now() - started) / 1000,
      jobs,
      seconds: sum("seconds"),
      cpuSeconds: sum("cpuSeconds"),
      load: loadavg(),
      stages,
    },
  };
  writeFileAtomic(join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  writeFileAtomic(join(dir, "report.md"), formatReport(report));
  await writePlots(dir, report);
  return report;
}

const SEED_MODULE = new URL(import.meta.url.endsWith(".ts") ? "./seed.ts" : "./seed.js", import.meta.url);

/**
 * Runs each seed's pipeline in a child process, at most `jobs` at a time. The first failure stops the
 * others (their stages so far stay recorded, for --resume) and fails the run with its message. A child
 * exits when this process dies (src/train/child.ts), so a killed run leaves no orphans.
 */
async function runSeeds(
  seedJobs: SeedJob[],
  jobs: number,
  onStage: (seed: number, done: StageDone) => void,
): Promise<void> {
  const abort = new AbortController();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < seedJobs.length && !abort.signal.aborted) {
      const job = seedJobs[next++] as SeedJob;
      await runIsolated<SeedJob, void>(SEED_MODULE, "runSeed", job, {
        onMessage: (m) => onStage(job.seed, m as StageDone),
        signal: abort.signal,
      });
    }
  };
  const workers = Array.from({ length: Math.min(jobs, seedJobs.length) }, () =>
    worker().catch((e: unknown) => {
      abort.abort();
      throw e;
    }),
  );
  // the first failure, not the AbortErrors of the siblings it stopped
  const failed: unknown[] = [];
  await Promise.all(workers.map((w) => w.catch((e: unknown) => void failed.push(e))));
  if (failed.length > 0) throw failed[0];
}
