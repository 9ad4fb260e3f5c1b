import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadSchema } from "../data/attributes.js";
import { Backend } from "../ggml/backend.js";
import { LlamaModel } from "../model/model.js";
import {
  type CheckpointHeader,
  latestCheckpoint,
  readCheckpoint,
  resumeRun,
  saveRunCheckpoint,
} from "../sft/checkpoint.js";
import {
  computeTypeWarning,
  formatSettings,
  optimizerOptions,
  type ResolvedSftConfig,
} from "../sft/config.js";
import { Batcher, validationBatches } from "../sft/data.js";
import { type RunMetric as Metric, writeLossCurve } from "../sft/metrics.js";
import { SETTINGS_FILE } from "../sft/run.js";
import { type ModelSetup, setupFromGguf, setupNewModel } from "../sft/setup.js";
import type { Batch } from "../train/batch.js";
import { Trainer } from "../train/trainer.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import { formatDuration, Progress } from "../util/progress.js";
import {
  ApmBatcher,
  type ApmCursor,
  type ApmExample,
  encodeApmRecords,
  packApmBatch,
  readApmRecords,
} from "./data.js";
import { encodeGenerativeRecords } from "./generative.js";
import { APM_TASK, type ApmInfo, type ApmVariant, apmInfoOf } from "./model.js";

/**
 * One regression APM training run, top to bottom, on SFT's machinery: the same settings (defaults <
 * --config < flags, resolved by src/sft/config.ts), the same run directory (sft-config.json, tokenizer.json,
 * metrics.jsonl, loss.png, checkpoints/step-NNNNNN.ckpt) and the same bit-exact resume. What differs: the
 * data (one example per labelled assistant turn, regression template), the model (a K-output head on the
 * last token) and the loss (masked MSE, -100 = missing). The newest checkpoint IS the exported APM.
 * LoRA is not offered: the head needs the backbone's features to move.
 */
export interface ApmRunOptions {
  /** "regression" (default, NeMo's): head + masked MSE; "generative" (the paper's): LM writes the values. */
  variant?: ApmVariant;
  resume?: boolean;
  signal?: AbortSignal;
  progress?: boolean;
}

export interface ApmResult {
  runDir: string;
  checkpoint: string;
  step: number;
  totalSteps: number;
  trainLoss: number;
  /** Masked MSE on the validation file (null: none given). */
  valLoss: number | null;
  seconds: number;
  interrupted: boolean;
}

export async function runApmTrain(resolved: ResolvedSftConfig, opts: ApmRunOptions = {}): Promise<ApmResult> {
  const t0 = performance.now();
  const cfg = resolved.config;
  const runDir = cfg.output;
  const ckptDir = join(runDir, "checkpoints");
  if (cfg.lora) throw new InputError("the APM trains every weight; LoRA is not supported", { field: "lora" });
  const resumeFrom = opts.resume ? latestCheckpoint(runDir) : undefined;
  if (opts.resume && !resumeFrom)
    throw new InputError("--resume: the run directory has no checkpoint yet", { file: ckptDir });
  if (!opts.resume && latestCheckpoint(runDir)) {
    throw new InputError(
      "the run directory already has checkpoints",
      { file: runDir },
      "pass --resume, or choose a new -o",
    );
  }
  const variant: ApmVariant = resumeFrom
    ? apmInfoOf(readCheckpoint(resumeFrom), resumeFrom).variant
    : (opts.variant ?? "regression");
  if (resumeFrom && opts.variant && opts.variant !== variant)
    throw new InputError(`the run trains a ${variant} APM`, { file: runDir, field: "variant" });
  mkdirSync(ckptDir, { recursive: true });
  log.info(`steerlm apm train (${variant})${resumeFrom ? ` (resuming from ${resumeFrom})` : ""}: settings`);
  for (const line of formatSettings(resolved)) log.info(line);
  if (!opts.resume) writeFileSync(join(runDir, SETTINGS_FILE), `${JSON.stringify(cfg, null, 2)}\n`);

  // ---- data and model ----
  const schema = loadSchema(cfg.schema);
  const K = schema.attributes.length;
  const records = await readApmRecords(cfg.data, schema);
  // The tokenizer of a new model is trained on the same template texts SFT uses. One token per attribute
  // setting is what the generative APM's constrained decoding chooses among; the regression APM needs none.
  const generative = variant === "generative";
  const setup: ModelSetup =
    cfg.init !== null
      ? setupNewModel(runDir, cfg.init, records, schema, cfg.tokenizerVocabSize, cfg.seqLen, generative)
      : await setupFromGguf(cfg.model as string, runDir);
  const pad = setup.tokenizer.eosId ?? 0;
  const valRecords = cfg.val ? await readApmRecords(cfg.val, schema) : null;
  let batcher: { next(): { batch: Batch }; cursor: ApmCursor };
  let nExamples: number;
  let validate: (t: Trainer) => number | null;
  if (generative) {
    const train = encodeGenerativeRecords(records, setup.tokenizer, schema, cfg.seqLen, setup.bos);
    log.info(
      `data: ${records.length} conversations → ${train.examples.length} examples (value lines after each response); ` +
        `${train.truncated} cut at ${cfg.seqLen} tokens, ${train.dropped} dropped`,
    );
    batcher = new Batcher(train.examples, cfg.batchSize, cfg.seqLen, cfg.seed, pad);
    nExamples = train.examples.length;
    const val = valRecords
      ? validationBatches(
          encodeGenerativeRecords(valRecords, setup.tokenizer, schema, cfg.seqLen, setup.bos).examples,
          cfg.batchSize,
          cfg.seqLen,
          cfg.evalBatches,
          pad,
        )
      : [];
    validate = (t) => {
      let sum = 0;
      let n = 0;
      for (const { batch, lossTokens } of val) {
        if (lossTokens === 0) continue;
        sum += t.evaluate(batch).loss * lossTokens;
        n += lossTokens;
      }
      return n > 0 ? sum / n : null;
    };
  } else {
    const train = encodeApmRecords(records, setup.tokenizer, schema, cfg.seqLen, setup.bos);
    log.info(
      `data: ${records.length} conversations → ${train.examples.length} labelled turns (${K} outputs: ` +
        `${schema.attributes.map((a) => a.name).join(",")}); ${train.truncated} cut to the last ${cfg.seqLen} tokens, ` +
        `${train.unusable} without any attribute of schema ${schema.name}`,
    );
    batcher = new ApmBatcher(train.examples, cfg.batchSize, cfg.seqLen, K, cfg.seed, pad);
    nExamples = train.examples.length;
    const val = valRecords
      ? encodeApmRecords(valRecords, setup.tokenizer, schema, cfg.seqLen, setup.bos)
      : null;
    validate = (t) => (val ? meanValLoss(t, val.examples, cfg.batchSize, cfg.seqLen, K, pad) : null);
  }
  const lossName = generative ? "value-token cross-entropy" : "mse";
  const perStep = cfg.batchSize * cfg.gradAccum;
  const totalSteps = cfg.steps > 0 ? cfg.steps : Math.ceil((cfg.epochs * nExamples) / perStep);

  const backend = new Backend(cfg.threads);
  const model = await LlamaModel.create(backend, setup.config, setup.source, {
    regressionOutputs: generative ? undefined : K,
    seed: cfg.seed,
    initStd: cfg.initStd,
    computeType: cfg.computeType,
  });
  const trainer = new Trainer(backend, model, {
    batchSize: cfg.batchSize,
    seqLen: cfg.seqLen,
    task: generative ? "lm" : "regression",
    optimizer: optimizerOptions(cfg, totalSteps),
  });
  log.info(
    `model: ${setup.config.numLayers} layers, d ${setup.config.hiddenSize}, vocab ${setup.config.vocabSize}, ` +
      `${generative ? "LM head (generative)" : `head ${setup.config.hiddenSize}→${K}`}; ${totalSteps} steps of ${perStep} turns × ${cfg.seqLen} tokens; ` +
      `${cfg.computeType} GEMMs, ggml ${backend.info.cpuVariant}, ${backend.info.threads} threads`,
  );
  const slow = computeTypeWarning(cfg.computeType, backend.info.cpuVariant);
  if (slow) log.warn(slow);

  // ---- resume ----
  const metrics: Metric[] = [];
  if (resumeFrom) {
    const { checkpoint: ck, metrics: before } = resumeRun<Metric>(resumeFrom, runDir, trainer, batcher);
    for (const m of before) metrics.push(m); // not push(...before): a long run's metrics overflow the stack
    log.info(`resumed at step ${ck.header.step}`);
  }

  const info: ApmInfo = { variant, schema, bos: setup.bos, seqLen: cfg.seqLen };
  const header = (step: number): Omit<CheckpointHeader, "tensors"> => ({
    format: "steerlm-sft-checkpoint",
    step,
    totalSteps,
    cursor: batcher.cursor,
    model: setup.config,
    lora: null,
    baseModel: setup.baseModel,
    tokenizer: setup.tokenizerJson,
    schema: schema.name,
    settings: { ...(cfg as unknown as Record<string, unknown>), task: APM_TASK, apm: info },
  });
  const saveCheckpoint = (step: number): string => {
    const path = saveRunCheckpoint(runDir, header(step), trainer, metrics, cfg.keepCheckpoints);
    writeLossCurve(runDir, metrics);
    return path;
  };

  // ---- the loop ----
  const showBar = opts.progress ?? Boolean(process.stderr.isTTY);
  const progress = new Progress({ label: "apm", total: totalSteps - trainer.step, enabled: showBar });
  const logEvery = Math.max(1, Math.round(totalSteps / 20));
  let lastLoss = Number.NaN;
  let lastVal: number | null = null;
  let checkpoint = resumeFrom ?? "";
  let interrupted = false;
  while (trainer.step < totalSteps) {
    for (let k = 0; k < cfg.gradAccum; k++) trainer.accumulate(batcher.next().batch);
    const r = trainer.applyUpdate();
    lastLoss = r.loss;
    if (!Number.isFinite(r.loss)) {
      throw new InputError(
        `the loss is ${r.loss} at step ${r.step}`,
        { field: "lr" },
        "lower the learning rate",
      );
    }
    const m: Metric = { step: r.step, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm };
    const last = r.step === totalSteps;
    if (last || (cfg.evalEvery > 0 && r.step % cfg.evalEvery === 0)) {
      lastVal = validate(trainer);
      if (lastVal !== null) m.valLoss = lastVal;
    }
    metrics.push(m);
    progress.tick(1, {
      step: `${r.step}/${totalSteps}`,
      loss: r.loss,
      ...(lastVal !== null ? { val: lastVal } : {}),
    });
    if (!showBar && (r.step % logEvery === 0 || last)) {
      log.info(
        `step ${r.step}/${totalSteps}  ${lossName} ${r.loss.toFixed(4)}${m.valLoss !== undefined ? `  val ${m.valLoss.toFixed(4)}` : ""}  lr ${r.lr.toExponential(2)}`,
      );
    }
    if (last || (cfg.checkpointEvery > 0 && r.step % cfg.checkpointEvery === 0))
      checkpoint = saveCheckpoint(r.step);
    await new Promise((res) => setImmediate(res)); // let a SIGINT handler run between steps
    if (opts.signal?.aborted && trainer.step < totalSteps) {
      checkpoint = saveCheckpoint(trainer.step);
      interrupted = true;
      log.info(`interrupted: checkpoint written at step ${trainer.step}: ${checkpoint}`);
      break;
    }
  }
  progress.finish();
  if (!checkpoint) checkpoint = saveCheckpoint(trainer.step);
  trainer.free();
  model.free();
  backend.free();
  await setup.tokenizer.dispose();
  const seconds = (performance.now() - t0) / 1000;
  log.info(
    `apm: step ${trainer.step}/${totalSteps}, ${lossName} ${lastLoss.toFixed(4)}${lastVal !== null ? `, val ${lossName} ${lastVal.toFixed(4)}` : ""}, ` +
      `${formatDuration(seconds)}; APM ${checkpoint}`,
  );
  return {
    runDir,
    checkpoint,
    step: trainer.step,
    totalSteps,
    trainLoss: lastLoss,
    valLoss: lastVal,
    seconds,
    interrupted,
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
    for (const ex of chunk) for (const v of ex.targets) if (v !== -100) present++;
    if (present === 0) continue;
    sum += trainer.evaluate(packApmBatch(chunk, B, T, K, pad).batch).loss * present;
    n += present;
  }
  return n > 0 ? sum / n : null;
}
