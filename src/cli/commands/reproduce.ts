import type { Command } from "commander";
import { REPRODUCE_SEEDS } from "../../reproduce/plan.js";
import { formatReport } from "../../reproduce/report.js";
import { runReproduce } from "../../reproduce/run.js";
import { integerFrom, numberOption } from "../flags.js";

export function register(program: Command): void {
  program
    .command("reproduce")
    .summary("the SteerLM paper's ablation on SteerBench: arms with CIs, steering curves, plots")
    .description(
      "SteerLM's ablation on SteerBench, offline: for each seed, train six arms with the same model and token " +
        "budget (plain SFT, SFT on the high-quality subset, ACSFT with the generator's labels, with APM labels, " +
        "with an extra APM-annotated pool, and after one bootstrapping round), judge them with the oracle on the " +
        "test split and the held-out family, and steer toxicity, verbosity, quality and helpfulness. Seeds run " +
        "side by side, one process each (--jobs). Writes report.json, report.md, charts (SVG and PNG) and " +
        "generations/<arm>.jsonl. --resume continues a killed run.",
    )
    .option("-o, --output <dir>", "output directory", "steerlm-reproduce")
    .addOption(
      numberOption(
        "--seeds <n>",
        `training seeds 1..n (default ${REPRODUCE_SEEDS.full.length}; --quick: ${REPRODUCE_SEEDS.quick.length})`,
        integerFrom(1),
      ),
    )
    .option("--quick", "one seed and a small budget: the study end to end in minutes")
    .option("--resume", "continue the run in -o, skipping the stages it finished")
    .addOption(
      numberOption(
        "--jobs <n>",
        "seeds run at the same time, one process each (default: the number of CPU cores)",
        integerFrom(1),
      ),
    )
    .action(
      async (o: { output: string; seeds?: number; quick?: boolean; resume?: boolean; jobs?: number }) => {
        const n = o.seeds;
        const report = await runReproduce({
          dir: o.output,
          quick: Boolean(o.quick),
          resume: Boolean(o.resume),
          jobs: o.jobs,
          seeds: n === undefined ? undefined : Array.from({ length: n }, (_, i) => i + 1),
        });
        process.stdout.write(formatReport(report));
        process.stderr.write(`report: ${o.output}/report.json, ${o.output}/report.md\n`);
      },
    );
}
