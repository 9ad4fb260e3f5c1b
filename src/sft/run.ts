import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadSchema } from "../data/attributes.js";
import { Backend } from "../ggml/backend.js";
import { LlamaModel } from "../model/model.js";
import type { Batch } from "../train/batch.js";
import { Trainer } from "../train/trainer.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import { formatDuration, Progress } from "../util/progress.js";
import { type CheckpointHeader, latestCheckpoint, resumeRun, saveRunCheckpoint } from "./checkpoint.js";
import {
  computeTypeWarning,
  formatSettings,
  optimizerOptions,
  type ResolvedSftConfig,
  resolveSftConfig,
  type SftConfig,
} from "./config.js";
import {
  Batcher,
  type DataCursor,
  type EncodedData,
  encodeRecords,
  readSteerlmRecords,
  validationBatches,
} from "./data.js";
import { type RunMetric, writeLossCurve, writeMetrics } from "./metrics.js";
import { defaultFrozenType, type ModelSetup, setupFromGguf, setupNewModel } from "./setup.js";

/**
 * One attribute-conditioned SFT run, top to bottom:
 *   settings → run dir → data → tokenizer + model → (resume) → loop { batch, step, log, validate,
 *   checkpoint } → final checkpoint, metrics, loss curve.
 *
 * Run directory:
 *   sft-config.json        the effective settings (what --resume reads back)
 *   tokenizer.json         a tokenizer trained here (--init runs)
 *   metrics.jsonl          one line per step: {"step","loss","lr","gradNorm","tokens"} (+ "valLoss")
 *   loss.png               training (blue) and validation (orange) loss
 *   checkpoints/step-NNNNNN.ckpt
 */
export const SETTINGS_FILE = "sft-config.json";
/** Which objective trained the run (absent: plain SFT), so that `--resume` continues it with the same one. */
export const OBJECTIVE_FILE = "objective.json";

/** The training batches in a resumable order: SFT's Batcher, or an objective's own. */
export interface TrainBatches {
  next(): { batch: Batch; tokens: number };
  /** The whole data state (stored in checkpoints). */
  cursor: DataCursor;
  /** Fractional epochs consumed. */
  readonly epochs: number;
}

/**
 * What a training objective other than plain SFT changes in the run; everything else (settings, model
 * setup, tokenization, the optimiser, checkpoints and resume, metrics, export) stays SFT's.
 * SteerLM 2.0 (src/steerlm2/train.ts) is one: whole groups of samples per batch, each sequence's loss
 * weighted from the model as it is at that step.
 */
export interface SftObjective {
  /** Names the run in logs and in the run directory's objective.json. */
  readonly name: string;
  /** The batches, over the examples encoded from the data file (one per conversation, in file order). */
  batches(train: EncodedData, cfg: SftConfig, padId: number): TrainBatches;
  /**
   * Called with each micro-batch before its forward/backward, with the trainer's current weights: may set
   * `batch.lossWeights`. Returns numbers to log with the step (averaged over the step's micro-batches).
   */
  weigh(batch: Batch, trainer: Trainer): Record<string, number>;
}

export interface SftRunOptions {
  /** Continue from the newest checkpoint in the run directory. */
  resume?: boolean;
  /** Aborting (Ctrl-C) makes the loop write a checkpoint and return early. */
  signal?: AbortSignal;
  /** Show a progress bar even when stderr is not a terminal (tests force it off). */
  progress?: boolean;
  /** A training objective other than plain SFT (default: SFT). */
  objective?: SftObjective;
  /**
   * Wall-clock seconds the training loop may take: once warm-up is over, the run measures its speed and
   * shortens the cosine schedule to end in time. The step count then depends on the machine's speed, so a
   * budgeted run is not reproducible bit for bit; `steerlm demo` uses it, `steerlm sft` does not.
   */
  timeBudgetSeconds?: number;
}

export interface SftResult {
  runDir: string;
  step: number;
  totalSteps: number;
  checkpoint: string;
  trainLoss: number;
  valLoss: number | null;
  /** Real (non-padding) tokens per second of training, this session. */
  tokensPerSecond: number;
  seconds: number;
  interrupted: boolean;
}

interface Metric extends RunMetric {
  tokens: number;
  /** An objective's own numbers (SftObjective.weigh). */
  [key: string]: number | undefined;
}

/** Refuses to resume a run with another objective than the one it started with; records a new run's. */
function checkObjective(runDir: string, name: string, resume: boolean): void {
  const path = join(runDir, OBJECTIVE_FILE);
  if (!resume) {
    if (name !== "sft") writeFileSync(path, `${JSON.stringify({ objective: name })}\n`);
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

/** The settings of a resumed run: the stored ones, with flags allowed only where they agree. */
export function resolveResumeConfig(
  runDir: string,
  flags: Partial<Record<keyof SftConfig, unknown>>,
): ResolvedSftConfig {
  const stored = join(runDir, SETTINGS_FILE);
  if (!existsSync(stored)) {
    throw new InputError(
      `no ${SETTINGS_FILE} here: not a steerlm sft run directory`,
      { file: runDir },
      "start a run with -o <dir> first",
    );
  }
  const before = resolveSftConfig({}, stored).config;
  const after = resolveSftConfig(flags, stored);
  for (const key of Object.keys(flags) as Array<keyof SftConfig>) {
    if (flags[key] === undefined) continue;
    if (JSON.stringify(before[key]) !== JSON.stringify(after.config[key])) {
      throw new InputError(
        `${JSON.stringify(after.config[key])} differs from the run's ${JSON.stringify(before[key])}`,
        { field: key },
        key === "computeType"
          ? `the run trains with ${before.computeType} GEMMs and a resumed run keeps them (bf16 and f32 ` +
              "products differ in the last bits, so switching would break the bit-exact resume): drop --compute"
          : "a resumed run keeps its settings so that it ends exactly where an uninterrupted run would",
      );
    }
  }
  return after;
}

export async function runSft(resolved: ResolvedSftConfig, opts: SftRunOptions = {}): Promise<SftResult> {
  const t0 = performance.now();
  const cfg: SftConfig = { ...resolved.config };
  const runDir = cfg.output;
  const ckptDir = join(runDir, "checkpoints");
  const resumeFrom = opts.resume ? latestCheckpoint(runDir) : undefined;
  if (opts.resume && !resumeFrom) {
    throw new InputError("--resume: the run directory has no checkpoint yet", { file: ckptDir });
  }
  if (!opts.resume && latestCheckpoint(runDir)) {
    throw new InputError(
      "the run directory already has checkpoints",
      { file: runDir },
      "pass --resume to continue it, or choose a new -o",
    );
  }
  mkdirSync(ckptDir, { recursive: true });
  const objective = opts.objective?.name ?? "sft";
  checkObjective(runDir, objective, Boolean(opts.resume));
  let shown = resolved;
  if (cfg.lora && cfg.frozen === null) {
    // decided once and stored in the settings, so a resumed run keeps it
    cfg.frozen = await defaultFrozenType(cfg.model as string);
    shown = { ...resolved, config: cfg, sources: { ...resolved.sources, frozen: "model" } };
  }
  log.info(`steerlm ${objective}${resumeFrom ? ` (resuming from ${resumeFrom})` : ""}: settings`);
  for (const line of formatSettings(shown)) log.info(line);
  if (!opts.resume) writeFileSync(join(runDir, SETTINGS_FILE), `${JSON.stringify(cfg, null, 2)}\n`);

  // ---- data and model ----
  const schema = loadSchema(cfg.schema);
  const records = await readSteerlmRecords(cfg.data, schema);
  const setup: ModelSetup =
    cfg.init !== null
      ? setupNewModel(
          runDir,
          cfg.init,
          records,
          schema,
          cfg.tokenizerVocabSize,
          cfg.seqLen,
          cfg.attributeTokens,
        )
      : await setupFromGguf(cfg.model as string, runDir);
  const pad = setup.tokenizer.eosId ?? 0;
  const train = encodeRecords(records, setup.tokenizer, schema, cfg.seqLen, setup.bos);
  log.info(
    `data: ${records.length} conversations → ${train.examples.length} examples, ${train.lossTokens} loss tokens; ` +
      `longest ${train.longest} tokens, ${train.truncated} truncated at ${cfg.seqLen}, ${train.dropped} dropped`,
  );
  const val = cfg.val
    ? encodeRecords(await readSteerlmRecords(cfg.val, schema), setup.tokenizer, schema, cfg.seqLen, setup.bos)
    : null;
  const valBatches = val
    ? validationBatches(val.examples, cfg.batchSize, cfg.seqLen, cfg.evalBatches, pad)
    : [];
  const batcher: TrainBatches = opts.objective
    ? opts.objective.batches(train, cfg, pad)
    : new Batcher(train.examples, cfg.batchSize, cfg.seqLen, cfg.seed, pad);
  const perStep = cfg.batchSize * cfg.gradAccum;
  let totalSteps = cfg.steps > 0 ? cfg.steps : Math.ceil((cfg.epochs * train.examples.length) / perStep);

  const backend = new Backend(cfg.threads);
  const lora = cfg.lora ? { rank: cfg.loraRank, alpha: cfg.loraAlpha, targets: cfg.loraTargets } : undefined;
  const model = await LlamaModel.create(backend, setup.config, setup.source, {
    lora,
    seed: cfg.seed,
    initStd: cfg.initStd,
    frozenType: cfg.frozen ?? undefined,
    computeType: cfg.computeType,
  });
  // Kept by reference: a time budget shortens `totalSteps` (the cosine schedule) while the run goes.
  const optimizer = optimizerOptions(cfg, totalSteps);
  const trainer = new Trainer(backend, model, { batchSize: cfg.batchSize, seqLen: cfg.seqLen, optimizer });
  const trained = trainer.trainedTensors;
  const shapes = new Map(model.params.map((p) => [p.name, p.shape]));
  const nParams = trained.reduce((a, n) => a + (shapes.get(n) as number[]).reduce((x, y) => x * y, 1), 0);
  log.info(
    `model: ${setup.config.numLayers} layers, d ${setup.config.hiddenSize}, vocab ${setup.config.vocabSize}; ` +
      `${nParams} trained parameters in ${trained.length} tensors; ${totalSteps} steps of ${perStep} sequences × ${cfg.seqLen}; ` +
      `${cfg.computeType} GEMMs, ggml ${backend.info.cpuVariant}, ${backend.info.threads} threads`,
  );
  const slow = computeTypeWarning(cfg.computeType, backend.info.cpuVariant);
  if (slow) log.warn(slow);

  // ---- resume ----
  const metrics: Metric[] = [];
  if (resumeFrom) {
    const { checkpoint: ck, metrics: before } = resumeRun<Metric>(resumeFrom, runDir, trainer, batcher);
    for (const m of before) metrics.push(m); // not push(...before): a long run's metrics overflow the stack
    log.info(`resumed at step ${ck.header.step} (epoch ${batcher.epochs.toFixed(2)})`);
  }

  const header = (step: number): Omit<CheckpointHeader, "tensors"> => ({
    format: "steerlm-sft-checkpoint",
    step,
    totalSteps,
    cursor: batcher.cursor,
    model: setup.config,
    lora: lora ?? null,
    baseModel: setup.baseModel,
    tokenizer: setup.tokenizerJson,
    schema: cfg.schema,
    settings: cfg as unknown as Record<string, unknown>,
  });
  const saveCheckpoint = (step: number): string =>
    saveRunCheckpoint(runDir, header(step), trainer, metrics, cfg.keepCheckpoints);
  const validate = (): number | null => {
    if (valBatches.length === 0) return null;
    let sum = 0;
    let n = 0;
    for (const { batch, lossTokens } of valBatches) {
      if (lossTokens === 0) continue;
      sum += trainer.evaluate(batch).loss * lossTokens;
      n += lossTokens;
    }
    return n > 0 ? sum / n : null;
  };

  // ---- the loop ----
  const showBar = opts.progress ?? Boolean(process.stderr.isTTY);
  const progress = new Progress({ label: objective, total: totalSteps - trainer.step, enabled: showBar });
  const logEvery = Math.max(1, Math.round(totalSteps / 20));
  let tokens = 0;
  let trainSeconds = 0;
  let lastLoss = Number.NaN;
  let lastVal: number | null = null;
  let checkpoint = resumeFrom ?? "";
  let interrupted = false;
  const loopStart = performance.now();
  const firstStep = trainer.step;
  let budgetLogged = 0;
  const plannedSteps = totalSteps;
  const stepTimes: number[] = [loopStart];
  while (trainer.step < totalSteps) {
    const ts = performance.now();
    let stepTokens = 0;
    const extra: Record<string, number> = {};
    for (let k = 0; k < cfg.gradAccum; k++) {
      const { batch, tokens: n } = batcher.next();
      const own = opts.objective?.weigh(batch, trainer) ?? {};
      for (const [key, v] of Object.entries(own)) extra[key] = (extra[key] ?? 0) + v / cfg.gradAccum;
      trainer.accumulate(batch);
      stepTokens += n;
    }
    const r = trainer.applyUpdate();
    trainSeconds += (performance.now() - ts) / 1000;
    tokens += stepTokens;
    lastLoss = r.loss;
    if (!Number.isFinite(r.loss)) {
      throw new InputError(
        `the loss is ${r.loss} at step ${r.step}`,
        { field: "lr" },
        "lower the learning rate or raise warmupSteps",
      );
    }
    const m: Metric = {
      step: r.step,
      loss: r.loss,
      lr: r.lr,
      gradNorm: r.gradNorm,
      tokens: stepTokens,
      ...extra,
    };
    const last = r.step === totalSteps;
    if (last || (cfg.evalEvery > 0 && r.step % cfg.evalEvery === 0)) {
      lastVal = validate();
      if (lastVal !== null) m.valLoss = lastVal;
    }
    metrics.push(m);
    stepTimes.push(performance.now());
    if (
      opts.timeBudgetSeconds !== undefined &&
      r.step >= Math.max(cfg.warmupSteps, firstStep + 10) &&
      r.step % 10 === 0
    ) {
      // Speed over the last 100 steps: the machine's load changes, so the end moves both ways (never past
      // the planned steps); the cosine schedule follows it.
      const now = performance.now();
      const window = Math.min(100, stepTimes.length - 1);
      const perStepSeconds = (now - (stepTimes[stepTimes.length - 1 - window] as number)) / 1000 / window;
      const remaining = opts.timeBudgetSeconds - (now - loopStart) / 1000;
      const fit = Math.min(
        plannedSteps,
        Math.max(r.step + 1, r.step + Math.floor(remaining / perStepSeconds)),
      );
      if (fit !== totalSteps) {
        totalSteps = fit;
        optimizer.totalSteps = totalSteps;
        if (budgetLogged === 0 || Math.abs(totalSteps - budgetLogged) > 0.05 * budgetLogged) {
          budgetLogged = totalSteps;
          log.info(
            `time budget ${opts.timeBudgetSeconds} s at ${perStepSeconds.toFixed(2)} s/step: the run ends at step ${totalSteps}`,
          );
        }
      }
    }
    const tps = tokens / Math.max(trainSeconds, 1e-9);
    progress.tick(1, {
      step: `${r.step}/${totalSteps}`,
      loss: r.loss,
      ...extra,
      "tok/s": tps,
      ...(lastVal !== null ? { val: lastVal } : {}),
    });
    if (!showBar && (r.step % logEvery === 0 || last)) {
      const eta = ((totalSteps - r.step) * (performance.now() - loopStart)) / 1000 / (r.step - firstStep);
      log.info(
        `step ${r.step}/${totalSteps}  loss ${r.loss.toFixed(4)}${m.valLoss !== undefined ? `  val ${m.valLoss.toFixed(4)}` : ""}` +
          Object.entries(extra)
            .map(([key, v]) => `  ${key} ${v.toFixed(4)}`)
            .join("") +
          `  lr ${r.lr.toExponential(2)}  ${tps.toFixed(0)} tok/s  eta ${formatDuration(eta)}`,
      );
    }
    if (last || (cfg.checkpointEvery > 0 && r.step % cfg.checkpointEvery === 0)) {
      checkpoint = saveCheckpoint(r.step);
      writeLossCurve(runDir, metrics);
    }
    // Let signal handlers run between steps (ggml computes synchronously).
    await new Promise((res) => setImmediate(res));
    if (opts.signal?.aborted && trainer.step < totalSteps) {
      checkpoint = saveCheckpoint(trainer.step);
      writeLossCurve(runDir, metrics);
      interrupted = true;
      log.info(`interrupted: checkpoint written at step ${trainer.step}: ${checkpoint}`);
      break;
    }
  }
  progress.finish();
  if (!checkpoint) checkpoint = saveCheckpoint(trainer.step);
  writeMetrics(runDir, metrics);
  writeLossCurve(runDir, metrics);
  trainer.free();
  model.free();
  backend.free();
  await setup.tokenizer.dispose();
  const result: SftResult = {
    runDir,
    step: trainer.step,
    totalSteps,
    checkpoint,
    trainLoss: lastLoss,
    valLoss: lastVal,
    tokensPerSecond: tokens / Math.max(trainSeconds, 1e-9),
    seconds: (performance.now() - t0) / 1000,
    interrupted,
  };
  log.info(
    `${objective}: step ${result.step}/${totalSteps}, train loss ${Number.isFinite(lastLoss) ? lastLoss.toFixed(4) : "-"}` +
      `${lastVal !== null ? `, val loss ${lastVal.toFixed(4)}` : ""}, ${result.tokensPerSecond.toFixed(0)} tok/s, ` +
      `${formatDuration(result.seconds)}; checkpoint ${checkpoint}`,
  );
  return result;
}
