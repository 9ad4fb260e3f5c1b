import type { Command } from "commander";
import { formatAgreement, labelAgreement } from "../../apm/agreement.js";
import { ANNOTATE_DEFAULTS, annotateFile } from "../../apm/annotate.js";
import { runApmTrain } from "../../apm/train.js";
import { DEFAULT_SCHEMA, loadSchema } from "../../data/attributes.js";
import { parseFormat } from "../../data/read.js";
import { type SettingName, SFT_FIELDS } from "../../run/settings.js";
import { type Flags, integerFrom, numberOption, numFlag, strFlag } from "../flags.js";
import {
  addApmOption,
  addBackendOptions,
  addOverwriteOption,
  addThreadsOption,
  backendValues,
  throttleFrom,
} from "../options.js";
import { addSftSettingFlags, runTrainingJob } from "../sft-flags.js";

/** `steerlm apm train` and `steerlm annotate`: parse arguments, call src/apm, print a JSON summary. */

// SFT settings that mean nothing to the APM are not offered as flags.
const NOT_FOR_APM = new Set<SettingName>([
  "allowUnlabeled",
  "lora",
  "loraRank",
  "loraAlpha",
  "loraTargets",
  "frozen",
  "attributeTokens",
]);

// What the APM reads differently from SFT; every other setting's help is SETTINGS'.
const HELP: Partial<Record<SettingName, string>> = {
  data: "training data: NeMo regression JSONL or SteerLM JSONL (detected)",
  val: "validation data (same formats): masked MSE reported as val",
  output: "run directory (settings, tokenizer, checkpoints = the APM, metrics, loss.png)",
  model: "start from this Llama-family GGUF (every weight is trained)",
  schema: "attributes = outputs, in order (steerlm: the nine in NeMo's canonical order)",
  steps: "optimiser steps (0: epochs passes over the labelled turns)",
  seed: "seeds the weights of a new model, the regression head and the data order",
};

export function register(program: Command): void {
  const apm = program
    .command("apm")
    .description(
      "SteerLM step 1: the attribute prediction model (regression, or the paper's generative one)",
    );
  const train = apm
    .command("train")
    .summary("train an APM on labelled conversations (-o <run>)")
    .description(
      "Train a regression APM: a linear head on the last token's hidden state, one output per attribute,\n" +
        "masked MSE (-100 = missing). Settings work as in `steerlm sft` (--config, flags override, --resume).\n" +
        "The newest checkpoint of -o is the APM that `steerlm annotate --apm <run>` loads.",
    )
    .option("--config <file>", "settings file (YAML or JSON)")
    .option("--resume", "continue the run in -o from its newest checkpoint")
    .option(
      "--generative",
      "the paper's variant: a language model writes the value string after the response (needs --init)",
    );
  const fields = SFT_FIELDS.filter((k) => !NOT_FOR_APM.has(k));
  const resolve = addSftSettingFlags(train, fields, HELP);
  train.action((raw: Record<string, string | boolean | undefined>) => {
    const resolved = resolve(raw);
    return runTrainingJob(
      "steerlm apm train",
      (signal) =>
        runApmTrain(resolved, {
          resume: Boolean(raw.resume),
          signal,
          variant: raw.generative ? "generative" : raw.resume ? undefined : "regression",
        }),
      "apm",
    );
  });

  apm
    .command("agreement")
    .description("per-attribute agreement (exact, within ±1, MAE) of annotated labels with reference labels")
    .argument("<predicted>", "annotated SteerLM JSONL")
    .argument("<reference>", "the same conversations with the labels to compare against")
    .option("--schema <name|file>", "attributes to compare", DEFAULT_SCHEMA)
    .option("--json", "print JSON instead of a table")
    .action(async (predicted: string, reference: string, o: { schema: string; json?: boolean }) => {
      const r = await labelAgreement(predicted, reference, loadSchema(o.schema));
      process.stdout.write(o.json ? `${JSON.stringify(r)}\n` : `${formatAgreement(r).join("\n")}\n`);
    });

  const annotate = program
    .command("annotate")
    .description(
      "SteerLM step 2: label every assistant turn with the APM's predictions (clamped to the scale, rounded " +
        "half to even) and write SteerLM JSONL. Resumable: rerun the same command after an interruption and " +
        "it continues after the rows already written (checked against <out>.partial.json).",
    )
    .argument("<input>", "conversations: SteerLM, regression, helpsteer, oasst, chat ... (see --from)");
  addApmOption(
    annotate,
    "APM run directory (newest checkpoint) or checkpoint file; leave it out to score on the `steerlm serve --apm` at --backend",
    false,
  )
    .requiredOption("-o, --output <file>", "annotated SteerLM JSONL")
    .option("--from <format>", "input format (default: detected)")
    .option("--schema <name|file>", "write only these attributes (a subset of the APM's outputs)")
    .option("--only-unlabeled", "predict only turns without labels; keep existing labels")
    .addOption(
      numberOption(
        "--batch-size <n>",
        "turns per forward pass (with a server: per request) and records per resumable group",
        integerFrom(1),
        ANNOTATE_DEFAULTS.batchSize,
      ),
    );
  addThreadsOption(annotate);
  addBackendOptions(annotate, {
    concurrency: true,
    url:
      "without --apm: score on a `steerlm serve -m <model> --apm <apm run>` at this URL (POST /v1/steerlm/score; any APM, same output as annotating here); " +
      "with a generative --apm: decode on an OpenAI-compatible engine at this URL serving the APM as a GGUF (`steerlm export gguf <apm run>`), prompts tokenized here and sent as token ids, each value token the engine's greedy choice among the allowed ones (logit_bias)",
  });
  addOverwriteOption(annotate).action(async (input: string, raw: Flags) => {
    const from = strFlag(raw, "from");
    const r = await annotateFile({
      apm: strFlag(raw, "apm"),
      input,
      output: raw.output as string,
      format: from === undefined ? undefined : parseFormat(from),
      schema: strFlag(raw, "schema"),
      onlyUnlabeled: Boolean(raw.onlyUnlabeled),
      batchSize: numFlag(raw, "batchSize"),
      threads: numFlag(raw, "threads"),
      overwrite: Boolean(raw.overwrite),
      throttleMs: throttleFrom("STEERLM_ANNOTATE_THROTTLE_MS"),
      ...backendValues(raw),
    });
    process.stdout.write(
      `${JSON.stringify({ output: r.output, rows: r.rows, turns: r.turns, resumedRows: r.resumedRows })}\n`,
    );
  });
}
