import { latestCheckpoint, readCheckpoint } from "../run/checkpoint.js";
import type { ResolvedSftConfig } from "../run/config.js";
import type { Encoding } from "../run/data.js";
import { type Objective, type RunOptions, type RunResult, runTraining } from "../run/loop.js";
import { lmData } from "../run/sft.js";
import { IGNORE } from "../train/batch.js";
import type { Trainer } from "../train/trainer.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import { ApmBatcher, type ApmExample, encodeApmRecords, packApmBatch } from "./data.js";
import { APM_TASK, type ApmInfo, type ApmVariant, apmInfoOf } from "./model.js";

/**
 * APM training as objectives of the run loop (src/run/loop.ts): the same settings, run directory
 * (sft-config.json, tokenizer.json, metrics.jsonl, loss.png, checkpoints/step-NNNNNN.ckpt) and bit-exact
 * resume as SFT. What differs: the data (regression: one example per labelled assistant turn, regression
 * template; generative: the value lines after each response), the head (regression: K outputs on the last
 * token; generative: the language model's) and the loss (masked MSE, -100 = missing; generative: value-token
 * cross-entropy). The newest checkpoint IS the APM: its header carries `task: "apm"` and the variant.
 * LoRA is not offered: the head needs the backbone's features to move.
 */
export interface ApmRunOptions extends RunOptions {
  /** "regression" (default, NeMo's): head + masked MSE; "generative" (the paper's): LM writes the values. */
  variant?: ApmVariant;
}

export type ApmResult = RunResult;

export async function runApmTrain(resolved: ResolvedSftConfig, opts: ApmRunOptions = {}): Promise<ApmResult> {
  if (resolved.config.lora)
    throw new InputError("the APM trains every weight; LoRA is not supported", { field: "lora" });
  const variant = runVariant(resolved.config.output, opts);
  if (variant === "generative" && resolved.config.model !== null)
    // its constrained decoding picks one token per attribute setting: a vocabulary steerlm trains has them
    throw new InputError(
      "a generative APM needs a vocabulary with one token per attribute setting, which a new model's has",
      { field: "model" },
      "train it from --init (a model config), or train the regression APM on this model",
    );
  return runTraining(resolved, apmObjective(variant), opts);
}

/** The variant a run trains: a resumed run's own (its checkpoint says), else the one asked for. */
function runVariant(runDir: string, opts: ApmRunOptions): ApmVariant {
  const resumeFrom = opts.resume ? latestCheckpoint(runDir) : undefined;
  if (!resumeFrom) return opts.variant ?? "regression";
  const variant = apmInfoOf(readCheckpoint(resumeFrom), resumeFrom).variant;
  if (opts.variant && opts.variant !== variant)
    throw new InputError(`the run trains a ${variant} APM`, { file: runDir, field: "variant" });
  return variant;
}

export function apmObjective(variant: ApmVariant): Objective {
  const generative = variant === "generative";
  return {
    name: "apm",
    title: `steerlm apm train (${variant})`,
    lossName: generative ? "value-token cross-entropy" : "mse",
    logsTokens: false,
    // NeMo regression JSONL or SteerLM JSONL, detected
    dataFormat: undefined,
    // nothing to record: the checkpoints name the APM and its variant (runVariant reads it back)
    start: () => {},
    // One token per attribute setting is what the generative APM's constrained decoding chooses among.
    attributeTokens: () => generative,
    async prepare(input) {
      const { cfg, schema, setup, padId } = input;
      const K = schema.attributes.length;
      const info: ApmInfo = { variant, schema, bos: setup.bos, seqLen: cfg.seqLen };
      const header = { schema: JSON.stringify(schema), settings: { task: APM_TASK, apm: info } };
      if (generative) {
        const data = await lmData(input, "generative-apm");
        return { ...data, head: ", LM head (generative)", header };
      }
      const valRecords = await input.readVal();
      const enc: Encoding = { tokenizer: setup.tokenizer, bos: setup.bos, schema, seqLen: cfg.seqLen };
      const train = encodeApmRecords(input.records, enc);
      log.info(
        `data: ${input.records.length} conversations → ${train.examples.length} labelled turns (${K} outputs: ` +
          `${schema.attributes.map((a) => a.name).join(",")}); ${train.truncated} cut to the last ${cfg.seqLen} tokens, ` +
          `${train.unusable} without any attribute of schema ${schema.name}`,
      );
      const val = valRecords ? encodeApmRecords(valRecords, enc) : null;
      return {
        batches: new ApmBatcher(train.examples, cfg.batchSize, cfg.seqLen, K, cfg.seed, padId),
        examples: train.examples.length,
        validate: (trainer) =>
          val ? meanValLoss(trainer, val.examples, cfg.batchSize, cfg.seqLen, K, padId) : null,
        regressionOutputs: K,
        head: `, head ${setup.config.hiddenSize}→${K}`,
        header,
      };
    },
  };
}

/** Masked MSE over a whole validation set: Σ over present labels / their count (filler rows add nothing). */
function meanValLoss(
  trainer: Trainer,
  examples: readonly ApmExample[],
  B: number,
  T: number,
  K: number,
  pad: number,
): number | null {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < examples.length; i += B) {
    const chunk = examples.slice(i, i + B);
    let present = 0;
    for (const ex of chunk) for (const v of ex.targets) if (v !== IGNORE) present++;
    if (present === 0) continue;
    sum += trainer.evaluate(packApmBatch(chunk, B, T, K, pad).batch).loss * present;
    n += present;
  }
  return n > 0 ? sum / n : null;
}
