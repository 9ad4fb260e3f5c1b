import { statSync } from "node:fs";
import type { Command } from "commander";
import { STEERLM_ATTRIBUTE_ORDER } from "../../data/attributes.js";
import { parseFormat } from "../../data/read.js";
import {
  FAMILIES,
  type Family,
  SYNTH_DEFAULTS,
  scoreFile,
  synthesize,
  writeBench,
  writeRowScores,
} from "../../steerbench/index.js";
import { log } from "../../util/log.js";
import { Progress } from "../../util/progress.js";
import { integerFrom, numberOption } from "../flags.js";

/** `steerlm bench synth|score`: SteerBench data and its oracle. Parsing and printing only. */
export function register(program: Command): void {
  const bench = program
    .command("bench")
    .description("SteerBench: synthetic steerability data with an oracle that scores attributes from text");

  bench
    .command("synth")
    .description(
      "write train/validation/test/heldout SteerLM JSONL (+ steerbench.json, README.md) to a folder",
    )
    .addOption(
      numberOption(
        "--n <count>",
        "conversations in all splits together",
        integerFrom(1),
      ).makeOptionMandatory(),
    )
    .option("--seed <seed>", "random seed (same seed, same bytes)", "0")
    .requiredOption("-o, --out <dir>", "output folder")
    .option(
      "--heldout-family <family>",
      `task family kept for heldout.jsonl (${FAMILIES.join(", ")})`,
      SYNTH_DEFAULTS.heldoutFamily,
    )
    .addOption(
      numberOption(
        "--multi-turn <fraction>",
        "share of conversations with 2-3 exchanges",
        { min: 0, max: 1 },
        SYNTH_DEFAULTS.multiTurnFraction,
      ),
    )
    .action((o: { n: number; seed: string; out: string; heldoutFamily: string; multiTurn: number }) => {
      const n = o.n;
      const seed = /^\d+$/.test(o.seed) && Number(o.seed) <= 0xffffffff ? Number(o.seed) : o.seed;
      const multiTurnFraction = o.multiTurn;
      const progress = new Progress({ label: "synth", total: n });
      let last = 0;
      const t0 = performance.now();
      const result = synthesize({
        n,
        seed,
        heldoutFamily: o.heldoutFamily as Family,
        multiTurnFraction,
        onProgress: (done) => {
          progress.tick(done - last);
          last = done;
        },
      });
      progress.finish();
      const files = writeBench(o.out, result);
      const s = result.meta.sizes;
      log.info(`SteerBench: ${n} conversations in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      process.stdout.write(
        `wrote ${o.out}: train ${s.train}, validation ${s.validation}, test ${s.test}, heldout ${s.heldout} ` +
          `(seed ${seed}, heldout family ${result.meta.heldoutFamily})\n`,
      );
      for (const f of files) log.debug(`wrote ${f}`);
    });

  bench
    .command("score")
    .description("score the last assistant turn of each conversation with the oracle; compare with labels")
    .argument("<file>", "SteerLM chat JSONL")
    .option("--json", "print a JSON summary (with an agreement map per attribute)", false)
    .option("-o, --out <file>", "per-row scores JSONL (default: <file> without its extension, .scores.jsonl)")
    .option("--from <format>", "input format (default: detected from the file)")
    .action(async (file: string, o: { json: boolean; out?: string; from?: string }) => {
      // JSONL progress counts bytes of the file; Parquet counts rows, whose total is unknown here.
      const size = /\.parquet$/i.test(file) ? undefined : statSizeOrUndefined(file);
      const progress = new Progress({ label: "score", total: size });
      const { rows, summary } = await scoreFile(file, {
        format: o.from ? parseFormat(o.from) : undefined,
        onProgress: (n) => progress.tick(n),
      });
      progress.finish();
      const out = o.out ?? `${file.replace(/\.(jsonl(\.gz)?|json|parquet)$/i, "")}.scores.jsonl`;
      writeRowScores(out, rows);
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ ...summary, output: out }, null, 2)}\n`);
        return;
      }
      const lines = [
        `${summary.scored} of ${summary.rows} conversations scored from ${file} (${summary.labelled} labelled)`,
        `${"attribute".padEnd(12)} ${"mean".padStart(5)} ${"exact".padStart(7)} ${"±1".padStart(7)}`,
      ];
      for (const name of STEERLM_ATTRIBUTE_ORDER) {
        const a = summary.agreement[name];
        const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(7);
        lines.push(
          `${name.padEnd(12)} ${(summary.mean[name] ?? Number.NaN).toFixed(2).padStart(5)} ` +
            (a ? `${pct(a.exact)} ${pct(a.within1)}` : `${"-".padStart(7)} ${"-".padStart(7)}`),
        );
      }
      lines.push(`per-row scores: ${out}`);
      process.stdout.write(`${lines.join("\n")}\n`);
    });
}

function statSizeOrUndefined(file: string): number | undefined {
  try {
    return statSync(file).size;
  } catch {
    return undefined; // the reader reports a missing file with its own message
  }
}
