import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Batch } from "../train/batch.js";
import type { Trainer } from "../train/trainer.js";
import { writeFileAtomic } from "../util/atomic.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import type { ResolvedSftConfig } from "./config.js";
import {
  Batcher,
  type EncodedData,
  type Encoding,
  encodeRecords,
  validationBatches,
  validationLoss,
} from "./data.js";
import {
  type Objective,
  type PreparedData,
  type PrepareInput,
  type RunOptions,
  type RunResult,
  runTraining,
  type TrainBatches,
} from "./loop.js";
import type { SftConfig } from "./settings.js";
import { withModelSchema } from "./setup.js";

/**
 * Attribute-conditioned SFT as an objective of the run loop: SteerLM JSONL rendered with the `acsft`
 * template (loss on each response and its turn terminator), language-model head, validation loss per loss
 * token. A variant of SFT (SteerLM 2.0) changes only the batches and weighs each micro-batch (SftObjective).
 */

/** Which objective trained the run (absent: plain SFT), so that `--resume` continues it with the same one. */
export const OBJECTIVE_FILE = "objective.json";

/**
 * What a variant of SFT changes: the batches (over the examples encoded from the data file, one per
 * conversation, in file order) and a per-micro-batch hook. Everything else (settings, model setup,
 * tokenization, the optimiser, checkpoints and resume, metrics, export) stays SFT's.
 * SteerLM 2.0 (src/steerlm2/train.ts) is one.
 */
export interface SftObjective {
  /** Names the run in logs and in the run directory's objective.json. */
  readonly name: string;
  batches(train: EncodedData, cfg: SftConfig, padId: number): TrainBatches;
  weigh(batch: Batch, trainer: Trainer): Record<string, number>;
}

export interface SftRunOptions extends RunOptions {
  /** A variant of SFT (default: plain SFT). */
  objective?: SftObjective;
}

export type SftResult = RunResult;

export async function runSft(resolved: ResolvedSftConfig, opts: SftRunOptions = {}): Promise<SftResult> {
  return runTraining(await withModelSchema(resolved), sftObjective(opts.objective), opts);
}

/** Plain SFT, or the SFT variant `variant`. */
export function sftObjective(variant?: SftObjective): Objective {
  const name = variant?.name ?? "sft";
  return {
    name,
    title: `steerlm ${name}`,
    lossName: "loss",
    logsTokens: true,
    dataFormat: "steerlm",
    start: (runDir, resume) => checkObjective(runDir, name, resume),
    attributeTokens: (cfg) => cfg.attributeTokens,
    prepare: (input) =>
      lmData(input, "acsft", variant && ((train) => variant.batches(train, input.cfg, input.padId))),
    weigh: variant ? (batch, trainer) => variant.weigh(batch, trainer) : undefined,
  };
}

/**
 * Language-model data (SFT, the generative APM): each conversation rendered with `variant`, batched by the
 * seeded Batcher (or `batches`), validated per loss token. Logs what it made of the data.
 */
export async function lmData(
  { cfg, schema, records, readVal, setup, padId }: PrepareInput,
  variant: "acsft" | "generative-apm",
  batches?: (train: EncodedData) => TrainBatches,
): Promise<PreparedData> {
  const enc: Encoding = { tokenizer: setup.tokenizer, bos: setup.bos, schema, seqLen: cfg.seqLen };
  const train = encodeRecords(records, enc, variant);
  log.info(
    `data: ${records.length} conversations → ${train.examples.length} examples, ${train.lossTokens} loss tokens; ` +
      `longest ${train.longest} tokens, ${train.truncated} truncated at ${cfg.seqLen}, ${train.dropped} dropped`,
  );
  const valRecords = await readVal();
  const val = valRecords
    ? validationBatches(
        encodeRecords(valRecords, enc, variant).examples,
        cfg.batchSize,
        cfg.seqLen,
        cfg.evalBatches,
        padId,
      )
    : [];
  return {
    batches: batches?.(train) ?? new Batcher(train.examples, cfg.batchSize, cfg.seqLen, cfg.seed, padId),
    examples: train.examples.length,
    validate: (trainer) => validationLoss(trainer, val),
  };
}

/** Refuses to resume a run with another objective than the one it started with; records a new run's. */
export function checkObjective(runDir: string, name: string, resume: boolean): void {
  const path = join(runDir, OBJECTIVE_FILE);
  if (!resume) {
    if (name !== "sft") writeFileAtomic(path, `${JSON.stringify({ objective: name })}\n`);
    return;
  }
  const stored = existsSync(path)
    ? String((JSON.parse(readFileSync(path, "utf8")) as { objective?: unknown }).objective)
    : "sft";
  if (stored !== name) {
    throw new InputError(
      `the run was trained with the ${stored} objective, not ${name}`,
      { file: path },
      stored === "sft"
        ? "resume it with `steerlm sft --resume`"
        : `resume it with \`steerlm ${stored} train --resume\``,
    );
  }
}
