import { type Command, Option } from "commander";
import { BOOTSTRAP_DEFAULTS, runBootstrap } from "../../bootstrap/run.js";
import { parseFormat } from "../../data/read.js";
import type { SamplingName } from "../../inference/sampling.js";
import { type Flags, integerFrom, numberOption, numFlag, optionForSetting, strFlag } from "../flags.js";
import { addGenerationJobOptions, generationJobValues, throttleFrom } from "../options.js";

const SAMPLING: readonly SamplingName[] = ["seed", "temperature", "topK", "topP", "maxTokens"];

/** `steerlm bootstrap`: parse arguments, call src/bootstrap, print a JSON summary. */

const DESCRIPTION = `SteerLM step 4, bootstrapping with high-quality samples:
 1. collect the attribute combinations of the training responses whose
    quality attribute (--quality-key) has the top value of its scale;
 2. for each prompt (those of --data, or --prompts) draw one of them,
    uniformly over those responses and seeded per row, and sample a
    response from the SFT model at those values (top-k ${BOOTSTRAP_DEFAULTS.topK}, temperature ${BOOTSTRAP_DEFAULTS.temperature});
 3. re-annotate each response with the APM and write SteerLM JSONL
    (prompt, generated response, the APM's values) for a second round
    of \`steerlm sft\` (--mix-original appends the training data).
The drawn combination is kept in each row's "bootstrap" key. Resumable:
rerun the same command after an interruption and it continues after the
rows already written; the file is byte-identical to an uninterrupted run.`;

export function register(program: Command): void {
  const cmd = program
    .command("bootstrap")
    .summary("SteerLM step 4: generate at top-quality values, re-annotate with the APM (-o <file>)")
    .description(DESCRIPTION);
  const help = {
    model: "the SFT model that generates",
    apm: "APM run directory (newest checkpoint) or checkpoint file",
    data: "labelled training data: the source of the top-quality combinations",
    output: "bootstrapped SteerLM JSONL",
    qualityKey: "attribute whose top value selects combinations (default: quality, else helpfulness)",
    seed: "seeds each row's combination and sampling",
  };
  addGenerationJobOptions(cmd, help, SAMPLING, BOOTSTRAP_DEFAULTS, (c) =>
    c
      .option(
        "--prompts <file>",
        "prompts to answer (default: those of --data); trailing responses are dropped",
      )
      .addOption(
        optionForSetting(
          new Option("--prompts-from <format>", "format of --prompts (default: detected)"),
          "promptsFormat",
        ),
      )
      .option("--unique-prompts", "answer each distinct prompt once")
      .option("--mix-original", "append the training data (as SteerLM JSONL) after the bootstrapped rows")
      .addOption(
        numberOption(
          "--batch-size <n>",
          "APM batch and rows per resumable group",
          integerFrom(1),
          BOOTSTRAP_DEFAULTS.batchSize,
        ),
      ),
  ).action(async (flags: Flags) => {
    const promptsFrom = strFlag(flags, "promptsFrom");
    const r = await runBootstrap({
      ...generationJobValues(flags, SAMPLING),
      lora: strFlag(flags, "lora"),
      prompts: strFlag(flags, "prompts"),
      promptsFormat: promptsFrom === undefined ? undefined : parseFormat(promptsFrom),
      uniquePrompts: Boolean(flags.uniquePrompts),
      mixOriginal: Boolean(flags.mixOriginal),
      batchSize: numFlag(flags, "batchSize"),
      throttleMs: throttleFrom("STEERLM_BOOTSTRAP_THROTTLE_MS"),
    });
    process.stdout.write(`${JSON.stringify(r)}\n`);
  });
}
