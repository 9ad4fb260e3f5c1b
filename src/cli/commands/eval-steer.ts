import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { ApmScorer } from "../../apm/score.js";
import { apmMeasurer } from "../../eval/apm-measure.js";
import { formatPareto, paretoSweep } from "../../eval/pareto.js";
import { paretoChart } from "../../eval/pareto-chart.js";
import {
  evaluateReward,
  formatReward,
  NVIDIA_REWARD_WEIGHTS,
  parseWeights,
  REWARD_DEFAULTS,
  weightsText,
} from "../../eval/reward.js";
import { readPairs } from "../../eval/reward-pairs.js";
import { SWEEP_DEFAULTS, sweepPrompts } from "../../eval/sweep.js";
import type { ContrastMode } from "../../inference/mixture.js";
import { writeFileAtomic } from "../../util/atomic.js";
import { InputError } from "../../util/errors.js";
import { integerFrom, numberOption, parseLevels } from "../flags.js";
import {
  addApmOption,
  addBackendOptions,
  addContextOptions,
  addGuidanceOptions,
  addModelOptions,
  addParallelOption,
  addSamplingOptions,
  addThreadsOption,
  openModel,
} from "../options.js";

/** `steerlm eval reward` and `eval pareto`: the APM as a reward model, and two-attribute Pareto fronts. */

interface RewardFlags {
  apm: string;
  weights?: string;
  resamples: number;
  seed: number;
  limit?: number;
  json?: string;
  threads?: number;
}

type ParetoFlags = {
  model: string;
  lora?: string;
  schema?: string;
  attrs: string;
  levels?: string;
  prompts?: string;
  nPrompts: number;
  maxTokens: number;
  parallel: number;
  guidance?: number;
  contrast?: ContrastMode;
  apm?: string;
  output: string;
};

export function registerSteering(evalCmd: Command): void {
  const reward = evalCmd
    .command("reward")
    .description(
      "the APM as a reward model: accuracy on chosen/rejected pairs (RewardBench rows or HelpSteer2's preference file) per subset, with bootstrap CIs",
    )
    .argument(
      "<pairs>",
      "RewardBench JSONL/Parquet (prompt, chosen, rejected, subset) or HelpSteer2 preference rows",
    );
  addApmOption(reward)
    .option(
      "--weights <name=w,...>",
      `reward = Σ weight × predicted attribute (default: NVIDIA's Nemotron-4-340B-Reward weights, ${weightsText(NVIDIA_REWARD_WEIGHTS)})`,
    )
    .addOption(
      numberOption("--resamples <n>", "bootstrap resamples", integerFrom(1), REWARD_DEFAULTS.resamples),
    )
    .addOption(numberOption("--seed <n>", "bootstrap seed", integerFrom(0), REWARD_DEFAULTS.seed))
    .addOption(numberOption("--limit <n>", "only the first n pairs", integerFrom(1)))
    .option("--json <file>", "also write the report (with every pair's rewards) as JSON");
  addThreadsOption(reward).action(async (file: string, o: RewardFlags) => {
    const pairs = await readPairs(file, o.limit);
    const apm = await ApmScorer.load(o.apm, { threads: o.threads });
    try {
      const report = await evaluateReward({
        apm,
        pairs,
        weights: o.weights === undefined ? undefined : parseWeights(apm.schema, o.weights, "--weights"),
        resamples: o.resamples,
        seed: o.seed,
      });
      process.stdout.write(`${formatReward(report)}\n`);
      if (o.json) {
        writeFileAtomic(o.json, `${JSON.stringify(report, null, 2)}\n`);
        process.stderr.write(`report: ${o.json}\n`);
      }
    } finally {
      await apm.free();
    }
  });

  const pareto = evalCmd
    .command("pareto")
    .description(
      "sweep two attributes over a grid, measure both (SteerBench oracle or an APM): points, Pareto front, hypervolume, PNG",
    );
  addModelOptions(pareto)
    .requiredOption("--attrs <a,b>", "the two attributes, x then y")
    .option(
      "--levels <a..b[:step]|list>",
      "values requested for both, e.g. 0..4 or 0..4:0.5 (default: each attribute's integers)",
    )
    .option(
      "--prompts <file>",
      "prompts: first user turn of each record (default: SteerBench held-out prompts)",
    )
    .addOption(numberOption("--n-prompts <n>", "how many prompts", integerFrom(1), 10));
  addGuidanceOptions(pareto);
  addSamplingOptions(
    pareto,
    ["maxTokens"],
    { maxTokens: SWEEP_DEFAULTS.maxTokens },
    { maxTokens: "most tokens per response" },
  );
  addParallelOption(pareto, "generations at once (with --backend: requests in flight)", 1);
  addContextOptions(pareto);
  addBackendOptions(pareto);
  addApmOption(pareto, "measure with an attribute prediction model instead of the oracle", false)
    .requiredOption("-o, --output <dir>", "folder for pareto.json and pareto.png")
    .action(async (o: ParetoFlags) => {
      const names = o.attrs.split(",").map((s) => s.trim());
      if (names.length !== 2)
        throw new InputError(`expected two attributes a,b, got ${JSON.stringify(o.attrs)}`, {
          field: "--attrs",
        });
      const prompts = await sweepPrompts(o.prompts, o.nPrompts);
      const model = await openModel(o, { parallel: o.parallel });
      try {
        const report = await paretoSweep({
          model,
          prompts,
          attributes: [names[0]!, names[1]!],
          levels: o.levels === undefined ? undefined : parseLevels(o.levels),
          maxTokens: o.maxTokens,
          parallel: o.parallel,
          guidance: o.guidance,
          contrast: o.contrast,
          measureBatch: o.apm === undefined ? undefined : apmMeasurer(o.apm),
        });
        process.stdout.write(`${formatPareto(report)}\n`);
        mkdirSync(o.output, { recursive: true });
        writeFileAtomic(join(o.output, "pareto.json"), `${JSON.stringify(report, null, 2)}\n`);
        const scale = (name: string) => {
          const d = model.schema.attributes.find((a) => a.name === name);
          return [d?.min ?? 0, d?.max ?? 1] as const;
        };
        const chart = await paretoChart(report, [scale(report.attributes[0]), scale(report.attributes[1])]);
        writeFileAtomic(join(o.output, "pareto.png"), chart.png);
        writeFileAtomic(join(o.output, "pareto.svg"), chart.svg);
        process.stderr.write(
          `pareto: ${join(o.output, "pareto.json")}, ${join(o.output, "pareto.png")} (and .svg)\n`,
        );
      } finally {
        await model.dispose();
      }
    });
}
