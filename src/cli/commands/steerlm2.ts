import type { Command } from "commander";
import type { SamplingName } from "../../inference/sampling.js";
import { SFT_FIELDS } from "../../run/settings.js";
import { type PriorValues, runSample, SAMPLE_DEFAULTS } from "../../steerlm2/sample.js";
import { noStartingModel, runSteerlm2Train, steerlm2Model } from "../../steerlm2/train.js";
import { InputError } from "../../util/errors.js";
import { type Flags, integerFrom, numberOption, numFlag, strFlag } from "../flags.js";
import { addGenerationJobOptions, generationJobValues, throttleFrom } from "../options.js";
import { addSftSettingFlags, runTrainingJob } from "../sft-flags.js";

/**
 * `steerlm steerlm2 …`: SteerLM 2.0 (HelpSteer2 paper). This file registers the command group; each
 * subcommand is one `.command()` on `group` (sample: the data half; train: the training half).
 */

const SAMPLE_DESCRIPTION = `SteerLM 2.0, the data half: for each prompt x and attribute values a
(the record's own label, or --values top), draw --samples n responses
y_1..y_n from the SFT model Q'(y|a,x) (top-k ${SAMPLE_DEFAULTS.topK}, temperature ${SAMPLE_DEFAULTS.temperature}, seeded)
and give each the target weight
  w_i = softmax_i( log P(a|x,y_i) + log P(y_i|x) - log Q'(y_i|a,x) )
over its group. P(a|x,y): the regression APM's prediction r (0..4) per
attribute, scaled to r' = clamp(r/4), as Beta(24r', 24-24r'); a level v
has the mass of its bin [v/5, (v+1)/5). P(y|x): --prior, by default the
SFT model itself prompted with the schema's default values (an
approximation of the unconditioned model). log Q' is summed over exactly
the tokens \`steerlm sft\` trains (the response and its turn terminator).
Writes SteerLM JSONL, one line per sample, groups on consecutive lines,
with a "steerlm2" key (group, sample, n, log_q, log_prior, log_p_attrs,
target_weight). Resumable: rerun the same command after an interruption;
the file is byte-identical to an uninterrupted run.`;

const SAMPLING: readonly SamplingName[] = ["seed", "temperature", "topK", "maxTokens"];

function values(flags: Flags): "label" | "top" | undefined {
  const v = strFlag(flags, "values");
  if (v === undefined || v === "label" || v === "top") return v;
  throw new InputError(`expected "label" or "top", got ${JSON.stringify(v)}`, { field: "--values" });
}

export function register(program: Command): void {
  const group = program
    .command("steerlm2")
    .summary("SteerLM 2.0 (HelpSteer2): sample weighted responses, train on them")
    .description("SteerLM 2.0 (HelpSteer2 paper): `sample` writes the weighted samples training reads.");
  // One line per subcommand: each registers itself on the group.
  registerSample(group);
  registerTrain(group);
}

function registerSample(group: Command): void {
  const cmd = group
    .command("sample")
    .summary("draw n responses per (prompt, values) and weight them (-o <file>)")
    .description(SAMPLE_DESCRIPTION);
  const help = {
    model: "the SFT model Q' that samples",
    lora: false as const,
    apm: "regression APM run directory or checkpoint: P(a|x,y)",
    data: "prompts with attribute labels (the response after the last user turn is dropped)",
    output: "SteerLM JSONL with a steerlm2 key per line",
    qualityKey: "with --values top: attribute whose top value selects combinations",
    seed: "seeds each group's values and sampling",
  };
  addGenerationJobOptions(cmd, help, SAMPLING, SAMPLE_DEFAULTS, (c) =>
    c
      .option("--prior <gguf>", "the prior P(y|x) (default: the SFT model at the schema's default values)")
      .option(
        "--prior-values <how>",
        "how the prior is prompted: default (the schema's default values in place of a) or none (no value lines: a model trained without attributes, the paper's P(y|x))",
      )
      .option(
        "--values <label|top>",
        "which values a: each record's own label, or top-quality combinations",
        "label",
      )
      .addOption(
        numberOption(
          "--samples <n>",
          "responses per (prompt, values)",
          integerFrom(1),
          SAMPLE_DEFAULTS.samples,
        ),
      ),
  ).action(async (flags: Flags) => {
    const r = await runSample({
      ...generationJobValues(flags, SAMPLING),
      prior: strFlag(flags, "prior"),
      priorValues: priorValuesFlag(strFlag(flags, "priorValues")),
      values: values(flags),
      samples: numFlag(flags, "samples"),
      throttleMs: throttleFrom("STEERLM_STEERLM2_THROTTLE_MS"),
    });
    process.stdout.write(`${JSON.stringify(r)}\n`);
  });
}

const TRAIN_DESCRIPTION = `SteerLM 2.0, the training half: start from the SFT model Q'
(--model: its GGUF or its \`steerlm sft\` run directory) and train on
the file \`steerlm steerlm2 sample\` wrote (--data) with the gradient
  -(1/G) sum_groups sum_i (w'_i - w_i) grad log Q_theta(y_i|a,x),
  w_i = softmax_i( log Q_theta(y_i|a,x) - log Q'(y_i|a,x) ),
w_i recomputed from the current model at every step. --batch-size
must be a multiple of the group size n (G = batch size / n).
Settings, checkpoints, Ctrl-C and --resume (bit-exact) are those of
\`steerlm sft\`; metrics.jsonl adds meanAbsC (mean |w'_i - w_i|) and
drift (mean log Q_theta - log Q'). Export: \`steerlm export gguf <run>\`.`;

/** `steerlm steerlm2 train`: `steerlm sft`'s settings and flags, with the SteerLM 2.0 objective. */
function registerTrain(group: Command): void {
  const cmd = group
    .command("train")
    .summary(
      "train Q_θ from the SFT model on `sample`'s weighted groups (SFT's flags, checkpoints, --resume)",
    )
    .description(TRAIN_DESCRIPTION)
    .option("--config <file>", "settings file (YAML or JSON)")
    .option("--resume", "continue the run in -o from its newest checkpoint (its stored settings apply)");
  const fields = SFT_FIELDS.filter(
    (k) =>
      k !== "init" &&
      k !== "initStd" &&
      k !== "tokenizerVocabSize" &&
      k !== "attributeTokens" &&
      k !== "allowUnlabeled",
  );
  const resolve = addSftSettingFlags(cmd, fields, {
    data: "the weighted samples (`steerlm steerlm2 sample -o`)",
    val: "validation data (SteerLM JSONL): plain SFT loss",
    output: "run directory (settings, checkpoints, metrics, loss.png)",
    model: "the SFT model Q' that sampled --data: a GGUF or a `steerlm sft` run directory",
  });
  cmd.action((raw: Record<string, string | boolean | undefined>) => {
    // the run stores the file it trains from: an SFT run directory's export (a resume compares with it)
    const { model, output } = raw;
    // before the settings' own check, which would offer --init, a setting this command does not take
    if (!raw.resume && model === undefined && raw.config === undefined) throw noStartingModel();
    const resolved = resolve(
      raw.resume && typeof model === "string" && typeof output === "string"
        ? { ...raw, model: steerlm2Model(model, output) }
        : raw,
    );
    return runTrainingJob("steerlm steerlm2 train", (signal) =>
      runSteerlm2Train(resolved, { resume: Boolean(raw.resume), signal }),
    );
  });
}

/** `--prior-values`: default or none, refused otherwise. */
function priorValuesFlag(text: string | undefined): PriorValues | undefined {
  if (text === undefined || text === "default" || text === "none") return text;
  throw new InputError(`expected default or none, got ${JSON.stringify(text)}`, { setting: "priorValues" });
}
