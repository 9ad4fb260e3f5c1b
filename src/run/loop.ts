import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { type AttributeSchema, loadSchema } from "../data/attributes.js";
import type { DataFormat, DataRecord } from "../data/record.js";
import { Backend } from "../ggml/backend.js";
import { bf16OnAmx } from "../ggml/index.js";
import { LlamaModel } from "../model/model.js";
import { padTokenId } from "../tokenizer/types.js";
import type { Batch } from "../train/batch.js";
import { Trainer } from "../train/trainer.js";
import { removeLeftoverTemps, writeFileAtomic } from "../util/atomic.js";
import { atFile } from "../util/errno.js";
import { InputError } from "../util/errors.js";
import { acquireLock, type FileLock } from "../util/lock.js";
import { log } from "../util/log.js";
import { formatDuration, Progress } from "../util/progress.js";
import {
  type CheckpointHeader,
  checkpointBase,
  checkpointDir,
  checkSameModel,
  latestCheckpoint,
  readCheckpointHeader,
  recordBase,
  resumeRun,
  saveRunCheckpoint,
} from "./checkpoint.js";
import {
  amxHint,
  computeTypeWarning,
  formatSettings,
  optimizerOptions,
  type ResolvedSftConfig,
  SETTINGS_FILE,
} from "./config.js";
import { type DataCursor, readSteerlmRecords } from "./data.js";
import { checkDataFiles, recordDataFiles } from "./data-files.js";
import { type RunMetric, writeLossCurve, writeMetrics } from "./metrics.js";
import type { SftConfig } from "./settings.js";
import { defaultRunFrozenType, type ModelSetup, setupFromGguf, setupNewModel } from "./setup.js";

/**
 * The one training loop: every training job (SFT, the regression and generative APMs, SteerLM 2.0) is an
 * Objective run by `runTraining`, top to bottom:
 *   settings → run dir → data → tokenizer + model → (resume) → loop { batch, step, log, validate,
 *   checkpoint } → final checkpoint, metrics, loss curve; native resources freed on every path.
 *
 * Run directory:
 *   sft-config.json        the effective settings (what --resume reads back)
 *   tokenizer.json         a tokenizer trained here (--init runs)
 *   data-files.json        size and SHA-256 of the data files at the start (a resume refuses changed ones)
 *   metrics.jsonl          one line per step: {"step","loss","lr","gradNorm"} (+ the objective's numbers,
 *                          "valLoss"); written before each checkpoint, so a resume finds its steps' lines
 *   loss.png, loss.svg     training and validation loss
 *   run.lock               while a process trains here: who it is (a second run fails naming it)
 *   checkpoints/step-NNNNNN.ckpt
 */

/** The training batches in a resumable order. */
export interface TrainBatches {
  next(): { batch: Batch; tokens: number };
  /** The whole data state (stored in checkpoints). */
  cursor: DataCursor;
  /** Fractional epochs consumed. */
  readonly epochs: number;
}

/** What an objective makes of the data once the tokenizer and the model's shape are known. */
export interface PreparedData {
  batches: TrainBatches;
  /** Examples in one epoch: the run's length when `steps` is 0. */
  examples: number;
  /** Mean validation loss with the trainer's weights as they are; null: no validation data. */
  validate(trainer: Trainer): number | null;
  /** Outputs of a regression head on the last token (masked MSE); absent: the language-model head. */
  regressionOutputs?: number;
  /** The head, for the model line (", head 32→9"). */
  head?: string;
  /** Checkpoint header fields the objective sets: the schema's name, settings beyond the run's. */
  header?: { schema?: string; settings?: Record<string, unknown> };
}

/** What an objective prepares its data from. */
export interface PrepareInput {
  cfg: SftConfig;
  schema: AttributeSchema;
  records: readonly DataRecord[];
  /** The validation file's records (null: none), read when the objective asks. */
  readVal(): Promise<DataRecord[] | null>;
  setup: ModelSetup;
  padId: number;
}

/** A training job: the data, the head and loss, validation and what it logs; the rest is the loop's. */
export interface Objective {
  /** Names the run in logs and in the progress bar ("sft", "apm"). */
  readonly name: string;
  /** Heads the printed settings ("steerlm sft"). */
  readonly title: string;
  /** The loss, as logs call it ("loss", "mse"). */
  readonly lossName: string;
  /** Each step's real (non-padding) tokens go into metrics.jsonl as `tokens`. */
  readonly logsTokens: boolean;
  /** The format of the data and validation files; undefined: detected from each file. */
  readonly dataFormat: DataFormat | undefined;
  /** Before anything is read: records a new run's objective, or refuses to resume another objective's run. */
  start(runDir: string, resume: boolean): void;
  /** A tokenizer trained here (init) gets one token per attribute setting. */
  attributeTokens(cfg: SftConfig): boolean;
  /** Encodes the training (and validation) data; logs what it made of it. */
  prepare(input: PrepareInput): Promise<PreparedData>;
  /**
   * Called with each micro-batch before its forward/backward, with the trainer's current weights: may set
   * `batch.lossWeights`. Returns numbers to log with the step (averaged over the step's micro-batches).
   */
  weigh?(batch: Batch, trainer: Trainer): Record<string, number>;
}

export interface RunOptions {
  /** Continue from the newest checkpoint in the run directory. */
  resume?: boolean;
  /** Aborting (Ctrl-C) makes the loop write a checkpoint and return early. */
  signal?: AbortSignal;
  /** Show a progress bar even when stderr is not a terminal (tests force it off). */
  progress?: boolean;
  /**
   * Wall-clock seconds the training loop may take: once warm-up is over, the run measures its speed and
   * shortens the cosine schedule to end in time. The step count then depends on the machine's speed, so a
   * budgeted run is not reproducible bit for bit; `steerlm demo` uses it, `steerlm sft` does not.
   */
  timeBudgetSeconds?: number;
  /** Milliseconds for the time budget (performance.now); a test drives the budget with its own clock. */
  clock?: () => number;
}

export interface RunResult {
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
  tokens?: number;
  /** An objective's own numbers (Objective.weigh). */
  [key: string]: number | undefined;
}

/** The lock file of a run directory: one process at a time trains in it (`--resume` included). */
export const RUN_LOCK_FILE = "run.lock";

export async function runTraining(
  resolved: ResolvedSftConfig,
  objective: Objective,
  opts: RunOptions = {},
): Promise<RunResult> {
  const lock = lockRunDir(resolved.config.output);
  try {
    return await trainLocked(resolved, objective, opts);
  } finally {
    lock.release();
  }
}

/**
 * Creates the run directory if needed and locks it; then no other process writes in it, and the temporary
 * files a killed run left there are removed.
 */
function lockRunDir(runDir: string): FileLock {
  if (existsSync(runDir) && !statSync(runDir).isDirectory())
    throw new InputError("is a file, not a run directory", { file: runDir, setting: "output" });
  atFile(runDir, () => mkdirSync(runDir, { recursive: true }));
  const lock = acquireLock(join(runDir, RUN_LOCK_FILE), runDir);
  removeLeftoverTemps(runDir);
  removeLeftoverTemps(checkpointDir(runDir));
  return lock;
}

async function trainLocked(
  resolved: ResolvedSftConfig,
  objective: Objective,
  opts: RunOptions,
): Promise<RunResult> {
  const t0 = performance.now();
  const cfg: SftConfig = { ...resolved.config };
  const runDir = cfg.output;
  const ckptDir = checkpointDir(runDir);
  const resumeFrom = opts.resume ? latestCheckpoint(runDir) : undefined;
  if (opts.resume && !resumeFrom) {
    throw new InputError(
      "--resume: the run directory has no checkpoint yet",
      { file: ckptDir },
      "the run stopped before its first checkpoint: run the same command without --resume to start it over",
    );
  }
  if (!opts.resume && latestCheckpoint(runDir)) {
    throw new InputError(
      "the run directory already has checkpoints",
      { file: runDir },
      "pass --resume to continue it, or choose a new -o",
    );
  }
  // before anything is prepared: a base replaced at its path would have the trained tensors continue on
  // weights they do not belong to
  const resumed = resumeFrom ? readCheckpointHeader(resumeFrom) : undefined;
  const resumedBase =
    resumeFrom && resumed ? await checkpointBase(resumed, resumeFrom, cfg.model ?? undefined) : null;
  mkdirSync(ckptDir, { recursive: true });
  objective.start(runDir, Boolean(opts.resume));
  const dataFiles = { data: cfg.data, val: cfg.val };
  await (opts.resume ? checkDataFiles(runDir, dataFiles) : recordDataFiles(runDir, dataFiles));
  let shown = resolved;
  if (cfg.lora && cfg.frozen === null) {
    // decided once and stored in the settings, so a resumed run keeps it
    cfg.frozen = await defaultRunFrozenType(cfg.model as string);
    shown = { ...resolved, config: cfg, sources: { ...resolved.sources, frozen: "model" } };
  }
  log.info(`${objective.title}${resumeFrom ? ` (resuming from ${resumeFrom})` : ""}: settings`);
  for (const line of formatSettings(shown)) log.info(line);
  if (!opts.resume) writeFileAtomic(join(runDir, SETTINGS_FILE), `${JSON.stringify(cfg, null, 2)}\n`);

  // Native resources, freed last-first on every path out of the run (an error included).
  const owned: Array<() => unknown> = [];
  try {
    // ---- data and model ----
    const schema = loadSchema(cfg.schema);
    const read = (path: string) => readSteerlmRecords(path, schema, objective.dataFormat, cfg.allowUnlabeled);
    const records = await read(cfg.data);
    const setup: ModelSetup =
      cfg.init !== null
        ? setupNewModel(
            runDir,
            cfg.init,
            records,
            schema,
            cfg.tokenizerVocabSize,
            cfg.seqLen,
            objective.attributeTokens(cfg),
          )
        : await setupFromGguf(cfg.model as string, runDir);
    owned.push(() => setup.tokenizer.dispose());
    if (resumed) checkSameModel(setup.config, resumed, resumeFrom as string);
    // a base outside the run that the resume's check hashed already is not hashed again (GBs)
    const verified =
      resumedBase !== null && resumed?.baseSha256
        ? { path: resumedBase, sha256: resumed.baseSha256 }
        : undefined;
    const base = await recordBase(runDir, setup.baseModel, verified);
    const padId = padTokenId(setup.tokenizer);
    const readVal = async () => (cfg.val ? read(cfg.val) : null);
    const data = await objective.prepare({ cfg, schema, records, readVal, setup, padId });
    const batches = data.batches;
    const perStep = cfg.batchSize * cfg.gradAccum;
    let totalSteps = cfg.steps > 0 ? cfg.steps : Math.ceil((cfg.epochs * data.examples) / perStep);

    const backend = new Backend(cfg.threads);
    owned.push(() => backend.free());
    const lora = cfg.lora
      ? { rank: cfg.loraRank, alpha: cfg.loraAlpha, targets: cfg.loraTargets }
      : undefined;
    const model = await LlamaModel.create(backend, setup.config, setup.source, {
      lora,
      regressionOutputs: data.regressionOutputs,
      seed: cfg.seed,
      initStd: cfg.initStd,
      frozenType: cfg.frozen ?? undefined,
      computeType: cfg.computeType,
    });
    owned.push(() => model.free());
    // Kept by reference: a time budget shortens `totalSteps` (the cosine schedule) while the run goes.
    const optimizer = optimizerOptions(cfg, totalSteps);
    const trainer = new Trainer(backend, model, {
      batchSize: cfg.batchSize,
      seqLen: cfg.seqLen,
      task: data.regressionOutputs !== undefined ? "regression" : "lm",
      optimizer,
      recompute: cfg.recompute,
    });
    owned.push(() => trainer.free());
    const trained = trainer.trainedTensors;
    const shapes = new Map(model.params.map((p) => [p.name, p.shape]));
    const nParams = trained.reduce((a, n) => a + (shapes.get(n) as number[]).reduce((x, y) => x * y, 1), 0);
    log.info(
      `model: ${setup.config.numLayers} layers, d ${setup.config.hiddenSize}, vocab ${setup.config.vocabSize}${data.head ?? ""}; ` +
        `${nParams} trained parameters in ${trained.length} tensors; ${totalSteps} steps of ${perStep} sequences × ${cfg.seqLen}; ` +
        `${cfg.computeType} GEMMs, ggml ${backend.info.cpuVariant}, ${backend.info.threads} threads`,
    );
    const slow = computeTypeWarning(cfg.computeType, backend.info.cpuVariant);
    if (slow) log.warn(slow);
    // a resumed run keeps its compute type, and CUDA runs none of steerlm's kernels
    const hint = !resumeFrom && backend.isCpu ? amxHint(cfg.computeType, bf16OnAmx()) : null;
    if (hint) log.info(hint);

    // ---- resume ----
    const metrics: Metric[] = [];
    if (resumeFrom) {
      const { checkpoint: ck, metrics: before } = resumeRun<Metric>(resumeFrom, runDir, trainer, batches);
      for (const m of before) metrics.push(m); // not push(...before): a long run's metrics overflow the stack
      log.info(`resumed at step ${ck.header.step} (epoch ${batches.epochs.toFixed(2)})`);
    }

    const header = (step: number): Omit<CheckpointHeader, "tensors"> => ({
      format: "steerlm-sft-checkpoint",
      step,
      totalSteps,
      cursor: batches.cursor,
      model: setup.config,
      lora: lora ?? null,
      ...base,
      tokenizer: setup.tokenizerJson,
      schema: data.header?.schema ?? JSON.stringify(schema),
      settings: { ...(cfg as unknown as Record<string, unknown>), ...data.header?.settings },
    });
    const saveCheckpoint = async (step: number): Promise<string> => {
      const path = saveRunCheckpoint(runDir, header(step), trainer, metrics, cfg.keepCheckpoints);
      await writeLossCurve(runDir, metrics);
      return path;
    };

    // ---- the loop ----
    const { name, lossName } = objective;
    const showBar = opts.progress ?? Boolean(process.stderr.isTTY);
    const progress = new Progress({ label: name, total: totalSteps - trainer.step, enabled: showBar });
    const logEvery = Math.max(1, Math.round(totalSteps / 20));
    let tokens = 0;
    let trainSeconds = 0;
    let lastLoss = Number.NaN;
    let lastVal: number | null = null;
    let checkpoint = resumeFrom ?? "";
    let interrupted = false;
    const clock = opts.clock ?? (() => performance.now());
    const loopStart = clock();
    const firstStep = trainer.step;
    let budgetLogged = 0;
    const plannedSteps = totalSteps;
    const stepTimes: number[] = [loopStart];
    while (trainer.step < totalSteps) {
      const ts = performance.now();
      let stepTokens = 0;
      const extra: Record<string, number> = {};
      for (let k = 0; k < cfg.gradAccum; k++) {
        const { batch, tokens: n } = batches.next();
        const own = objective.weigh?.(batch, trainer) ?? {};
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
        ...(objective.logsTokens ? { tokens: stepTokens } : {}),
        ...extra,
      };
      const last = r.step === totalSteps;
      if (last || (cfg.evalEvery > 0 && r.step % cfg.evalEvery === 0)) {
        lastVal = data.validate(trainer);
        if (lastVal !== null) m.valLoss = lastVal;
      }
      metrics.push(m);
      stepTimes.push(clock());
      if (
        opts.timeBudgetSeconds !== undefined &&
        r.step >= Math.max(cfg.warmupSteps, firstStep + 10) &&
        r.step % 10 === 0
      ) {
        // Speed over the last 100 steps: the machine's load changes, so the end moves both ways (never past
        // the planned steps); the cosine schedule follows it.
        const now = clock();
        const window = Math.min(100, stepTimes.length - 1);
        const perStepSeconds = (now - stepTimes[stepTimes.length - 1 - window]!) / 1000 / window;
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
        const eta = ((totalSteps - r.step) * (clock() - loopStart)) / 1000 / (r.step - firstStep);
        log.info(
          `step ${r.step}/${totalSteps}  ${lossName} ${r.loss.toFixed(4)}${m.valLoss !== undefined ? `  val ${m.valLoss.toFixed(4)}` : ""}` +
            Object.entries(extra)
              .map(([key, v]) => `  ${key} ${v.toFixed(4)}`)
              .join("") +
            `  lr ${r.lr.toExponential(2)}  ${tps.toFixed(0)} tok/s  eta ${formatDuration(eta)}`,
        );
      }
      if (last || (cfg.checkpointEvery > 0 && r.step % cfg.checkpointEvery === 0)) {
        checkpoint = await saveCheckpoint(r.step);
      }
      // Let signal handlers run between steps (ggml computes synchronously).
      await new Promise((res) => setImmediate(res));
      if (opts.signal?.aborted && trainer.step < totalSteps) {
        checkpoint = await saveCheckpoint(trainer.step);
        interrupted = true;
        log.info(`interrupted: checkpoint written at step ${trainer.step}: ${checkpoint}`);
        break;
      }
    }
    progress.finish();
    if (!checkpoint) checkpoint = await saveCheckpoint(trainer.step);
    writeMetrics(runDir, metrics);
    await writeLossCurve(runDir, metrics);
    const result: RunResult = {
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
      `${name}: step ${result.step}/${totalSteps}, train ${lossName} ${Number.isFinite(lastLoss) ? lastLoss.toFixed(4) : "-"}` +
        `${lastVal !== null ? `, val ${lossName} ${lastVal.toFixed(4)}` : ""}, ${result.tokensPerSecond.toFixed(0)} tok/s, ` +
        `${formatDuration(result.seconds)}; checkpoint ${checkpoint}`,
    );
    return result;
  } finally {
    for (const free of owned.reverse()) await free();
  }
}
