import type { Command } from "commander";
import { formatDemoReport, runDemo } from "../../demo/demo.js";
import { integerFrom, numberOption } from "../flags.js";

export function register(program: Command): void {
  program
    .command("demo")
    .summary(
      "the main job: SteerBench data → train a steerable model from scratch → GGUF → steerability table",
    )
    .description(
      "The main job, offline: synthesise SteerBench data, train a small steerable model from scratch, export\n" +
        "it to GGUF, then steer it on held-out prompts (each attribute at each level 0..4, the others at their\n" +
        "defaults; quality and helpfulness, which SteerBench derives from the others, with the others' most\n" +
        "common setting for that level) and measure the responses with the SteerBench oracle. Prints the\n" +
        "steerability table and samples; writes <dir>/report.json. About 3 minutes on 2 CPU cores (--quick:\n" +
        "about 30 s).",
    )
    .option("-o, --output <dir>", "output directory", "steerlm-demo")
    .option("--quick", "a tiny run that checks the pipeline end to end (no steerability target)")
    .addOption(
      numberOption("--seed <n>", "seed of the data, the weights and the data order", integerFrom(0), 1),
    )
    .action(async (opts: { output: string; quick?: boolean; seed: number }) => {
      const report = await runDemo({ dir: opts.output, quick: Boolean(opts.quick), seed: opts.seed });
      process.stdout.write(`${formatDemoReport(report)}\n`);
      process.stderr.write(`report: ${opts.output}/report.json\n`);
    });
}
