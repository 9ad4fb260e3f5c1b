import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { readGguf } from "../gguf/reader.js";
import { ggufStorage } from "../model/load.js";
import { latestCheckpoint } from "../run/checkpoint.js";
import type { ResolvedSftConfig } from "../run/config.js";
import { SETTINGS_FILE } from "../run/config.js";
import { type EncodedData, EpochSampler, type Example, packBatch } from "../run/data.js";
import { exportGguf } from "../run/export.js";
import type { SftConfig } from "../run/settings.js";
import { withModelSchema } from "../run/setup.js";
import { checkObjective, runSft, type SftObjective, type SftResult, type SftRunOptions } from "../run/sft.js";
import type { Batch } from "../train/batch.js";
import type { Trainer } from "../train/trainer.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import { readSamples, type SampleInfo, STEERLM2_KEY } from "./format.js";
import { groupCoefficients, labelledCount, lossWeights } from "./train-weights.js";

/**
 * SteerLM 2.0 training (HelpSteer2 paper): `steerlm sft` with the `steerlm2` objective. The data is the
 * file `steerlm steerlm2 sample` writes (format.ts); the model starts from the SFT model Q' that sampled
 * it (a GGUF, or an SFT run directory, exported once to `<run>/sft-init.gguf`). Each step takes G whole
 * groups (batchSize = G·n), computes log Q_θ(y_i|a,x) with the weights as they are now, and trains with
 * Batch.lossWeights set so that the loss is −(1/G) Σ_i (w'_i − w_i) log Q_θ(y_i|a,x) (train-weights.ts).
 * Settings, tokenization, checkpoints, --resume (bit-exact), metrics and export are SFT's.
 * metrics.jsonl adds per step `meanAbsC` (mean |w'_i − w_i|) and `drift` (mean log Q_θ − log Q').
 */
export const STEERLM2_OBJECTIVE = "steerlm2";

/** The SFT run a steerlm2 run starts from, as a GGUF in the run directory. */
export const SFT_INIT_FILE = "sft-init.gguf";

/** One group's examples (in sample order) with what the file says about them. */
interface GroupExamples {
  examples: Example[];
  logQ: number[];
  target: number[];
}

interface BatchInfo {
  logQ: Float64Array;
  target: Float64Array;
  groups: number;
}

/**
 * Whole groups in a seeded order (SFT's EpochSampler over groups, so the cursor is again the whole data
 * state), packed G at a time into one [G·n, T] batch.
 */
class GroupBatcher extends EpochSampler<GroupExamples> {
  constructor(
    groups: readonly GroupExamples[],
    readonly groupsPerBatch: number,
    readonly seqLen: number,
    seed: number,
    readonly padId: number,
    readonly info: WeakMap<Batch, BatchInfo>,
  ) {
    super(groups, seed, "no sample groups");
  }

  next(): { batch: Batch; tokens: number } {
    const picked = this.take(this.groupsPerBatch);
    const packed = packBatch(
      picked.flatMap((g) => g.examples),
      this.seqLen,
      this.padId,
    );
    this.info.set(packed.batch, {
      logQ: Float64Array.from(picked.flatMap((g) => g.logQ)),
      target: Float64Array.from(picked.flatMap((g) => g.target)),
      groups: picked.length,
    });
    return packed;
  }
}

/** The objective for runSft, over the samples' file information in file order (one entry per line). */
export function steerlm2Objective(samples: readonly SampleInfo[], n: number, file: string): SftObjective {
  const info = new WeakMap<Batch, BatchInfo>();
  return {
    name: STEERLM2_OBJECTIVE,
    batches(train: EncodedData, cfg: SftConfig, padId: number) {
      // log_q covers exactly the tokens SFT trains: a cut or dropped sample would compare different sums
      if (train.truncated > 0 || train.dropped > 0 || train.examples.length !== samples.length)
        throw new InputError(
          `${train.truncated} samples are longer than seqLen ${cfg.seqLen} (the longest: ${train.longest} tokens)` +
            `, ${train.dropped} have no response tokens`,
          { file, field: "seqLen" },
          `raise --seq-len to at least ${train.longest}, so that log Q_θ and log_q sum over the same tokens`,
        );
      if (cfg.batchSize % n !== 0)
        throw new InputError(
          `batch size ${cfg.batchSize} is not a multiple of the group size n = ${n}`,
          { field: "batchSize" },
          "each batch holds whole groups: use --batch-size n·G",
        );
      const groups: GroupExamples[] = [];
      for (let i = 0; i < samples.length; i += n) {
        const slice = samples.slice(i, i + n);
        groups.push({
          examples: train.examples.slice(i, i + n),
          logQ: slice.map((s) => s.logQ),
          target: slice.map((s) => s.targetWeight),
        });
      }
      return new GroupBatcher(groups, cfg.batchSize / n, cfg.seqLen, cfg.seed, padId, info);
    },
    weigh(batch: Batch, trainer: Trainer) {
      const meta = info.get(batch);
      if (!meta) throw new Error("steerlm2: a batch that did not come from the group batcher");
      const { sequences } = trainer.logProbs(batch);
      const { c } = groupCoefficients(sequences, meta.logQ, meta.target, n);
      const nValid = labelledCount(batch, trainer.batchSize, trainer.seqLen);
      batch.lossWeights = lossWeights(c, nValid, meta.groups);
      let absC = 0;
      let drift = 0;
      for (let i = 0; i < c.length; i++) {
        absC += Math.abs(c[i]!);
        drift += sequences[i]! - meta.logQ[i]!;
      }
      return { meanAbsC: absC / c.length, drift: drift / c.length };
    },
  };
}

/** Every sample of the file, checked group by group (format.ts), and the group size. */
export async function readSampleInfos(
  path: string,
  schema: string,
): Promise<{ samples: SampleInfo[]; n: number }> {
  const samples: SampleInfo[] = [];
  let n = 0;
  for await (const g of readSamples(path, { schema })) {
    const first = g.samples[0];
    const size = g.samples.length;
    if (n === 0) n = size;
    else if (size !== n)
      throw new InputError(
        `group ${g.group} has ${size} samples, the first group ${n}`,
        { file: path, line: first?.record.origin?.line, field: `${STEERLM2_KEY}.n` },
        "every group of a training file must have the same n (batches hold whole groups)",
      );
    for (const s of g.samples) samples.push(s.info);
  }
  if (samples.length === 0) throw new InputError("no samples in the file", { file: path });
  return { samples, n };
}

/** steerlm2 trains the model that sampled its data, which only `model` can name (it has no `init`). */
export function noStartingModel(): InputError {
  return new InputError(
    "no starting model",
    { setting: "model" },
    "pass --model <the SFT model Q' that sampled the data: a GGUF or a `steerlm sft` run directory>",
  );
}

const isDirectory = (path: string) => statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;

/**
 * The model file a steerlm2 run trains from, and stores in its settings, for `--model`: a `steerlm sft` run
 * directory is exported into the run as SFT_INIT_FILE. What a --resume compares its --model with.
 */
export function steerlm2Model(model: string, runDir: string): string {
  return isDirectory(model) && existsSync(join(model, SETTINGS_FILE)) ? join(runDir, SFT_INIT_FILE) : model;
}

/**
 * A run directory of `steerlm sft`, exported to a GGUF in the steerlm2 run directory when the run starts
 * (a run that already has checkpoints keeps its file: runSft then refuses to start over it).
 */
async function sftRunAsGguf(model: string, runDir: string): Promise<string> {
  const out = steerlm2Model(model, runDir);
  if (!latestCheckpoint(runDir)) {
    mkdirSync(runDir, { recursive: true });
    const r = await exportGguf(model, out, { type: "F32" });
    log.info(`${model}: the SFT run's step ${r.step} (${r.checkpoint}) exported to ${out} as Q'`);
  }
  return out;
}

/**
 * `steerlm steerlm2 train`: checks the data and the starting model, then runs the training loop with
 * SFT's objective, varied by steerlm2's batches and weights. `resolved` comes from resolveSftConfig (or resolveResumeConfig with `resume`).
 */
export async function runSteerlm2Train(
  resolved: ResolvedSftConfig,
  opts: Omit<SftRunOptions, "objective" | "timeBudgetSeconds"> = {},
): Promise<SftResult> {
  const cfg = resolved.config;
  // first: another command's run says so, before this command's own checks of its settings and data
  if (opts.resume) checkObjective(cfg.output, STEERLM2_OBJECTIVE, true);
  if (cfg.init !== null)
    throw new InputError(
      "steerlm2 trains the SFT model that sampled the data, not a new one",
      { field: "init" },
      "pass --model <the SFT GGUF or run directory> instead",
    );
  if (cfg.model === null) throw noStartingModel();
  let config = cfg;
  if (steerlm2Model(cfg.model, cfg.output) !== cfg.model)
    config = { ...cfg, model: await sftRunAsGguf(cfg.model, cfg.output) };
  if (config.lora && config.frozen === null && config.model !== null && !isDirectory(config.model)) {
    // Q_θ must start as Q' exactly (the samples' log Q' were scored on the file's own values): LoRA keeps
    // the base as stored, never rounded to bf16 as other LoRA runs keep an F32 base
    config = { ...config, frozen: ggufStorage(await readGguf(config.model)) };
  }
  // the samples' value strings are the SFT model's schema, as `steerlm2 sample` read them
  const decided = await withModelSchema({ ...resolved, config });
  config = decided.config;
  const { samples, n } = await readSampleInfos(config.data, config.schema);
  log.info(
    `steerlm2: ${samples.length / n} groups of n = ${n} samples, ${config.batchSize / n} groups per batch`,
  );
  return runSft(decided, { ...opts, objective: steerlm2Objective(samples, n, config.data) });
}
