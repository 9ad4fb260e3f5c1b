import {
  Backend,
  type Buffer,
  Graph,
  type GraphAllocator,
  getF32,
  getScalar,
  setData,
} from "../ggml/backend.js";
import { Context } from "../ggml/context.js";
import { gemmScratch } from "../ggml/index.js";
import type { Tensor } from "../ggml/tensor.js";
import { HEAD_WEIGHT } from "../model/head.js";
import { logitChunk } from "../model/lm-head.js";
import type { LlamaModel, ParamInfo } from "../model/model.js";
import { InputError, type Place, SteerlmError } from "../util/errors.js";
import { type Batch, IGNORE, type PreparedBatch, prepareBatch } from "./batch.js";
import { declareFrozenTransposes, fillFrozenTransposes } from "./frozen-transposes.js";
import { Replica, type TrainTask } from "./replica.js";
import { learningRate, type ScheduleOptions } from "./schedule.js";

export type { TrainTask } from "./replica.js";

/** Every value AdamW and the schedule run with; the defaults live with the run's settings (src/run/settings.ts). */
export interface OptimizerOptions extends ScheduleOptions {
  /** Decoupled weight decay, on matrices only. */
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Clip the global gradient norm to this (0 = no clipping). */
  maxGradNorm: number;
}

/**
 * Refuses optimiser values AdamW cannot run with, naming the setting (`place` locates it, e.g. in a config
 * file). The learning rate peaks at lr, or at the cosine's floor when that is above lr.
 */
export function checkOptimizer(
  o: OptimizerOptions,
  place: (field: "lr" | "weightDecay" | "minLrRatio" | "beta1" | "beta2") => Place = (field) => ({ field }),
): void {
  for (const key of ["lr", "weightDecay", "minLrRatio"] as const) {
    if (!(o[key] >= 0)) throw new InputError(`must be ≥ 0, got ${o[key]}`, place(key));
  }
  if (!(o.beta1 >= 0 && o.beta1 < 1)) throw new InputError(`must be < 1, got ${o.beta1}`, place("beta1"));
  if (!(o.beta2 >= 0 && o.beta2 < 1)) throw new InputError(`must be < 1, got ${o.beta2}`, place("beta2"));
  if (o.lr * Math.max(1, o.minLrRatio) * o.weightDecay > 1)
    throw new InputError("lr × weightDecay must be ≤ 1", place("weightDecay"));
}

export interface TrainerOptions {
  batchSize: number;
  seqLen: number;
  task?: TrainTask;
  optimizer: OptimizerOptions;
  /**
   * "manual" (default): the hand-written reverse pass (src/model/tape.ts), whose matrix products run on
   * ggml's GEMM; "ggml": ggml's own autograd (out_prod based, slower on CPU), kept as a cross-check.
   */
  backward?: "manual" | "ggml";
  /**
   * Data parallelism: split each batch's rows over this many graphs, each on its own single-threaded
   * backend, computed at the same time by `trainStepAsync`/`accumulateAsync` (the synchronous methods run
   * them one after the other). Gradients are summed exactly; batchSize must divide evenly. Default 1: one
   * graph on the given backend with its thread count.
   */
  replicas?: number;
  /**
   * Positions per chunk of the output projection + cross-entropy (default: as many as keep a chunk's
   * logits within LOGIT_CHUNK_VALUES; the whole batch with ggml's autograd, which cannot see through
   * views). Changes only the summation order of the loss.
   */
  logitChunk?: number;
  /**
   * Keep only each block's input from the forward pass and rebuild its activations in the backward pass:
   * one more forward per step, activation memory of one block instead of all (hand-written backward only).
   */
  recompute?: boolean;
}

export interface StepResult {
  /** Mean of the micro-batch losses. */
  loss: number;
  /** Global gradient norm before clipping (of the averaged gradient). */
  gradNorm: number;
  lr: number;
  step: number;
}

interface Slot {
  info: ParamInfo;
  w: Tensor;
  accs: Tensor[];
  m: Tensor;
  v: Tensor;
}

interface OptInputs {
  adamDecay: Tensor;
  adamNoDecay: Tensor;
  clipMax: Tensor;
  invAccum: Tensor;
}

/**
 * Training on one fixed batch shape: a forward+backward graph whose gradients accumulate into static
 * tensors, and an optimiser graph (global-norm clipping + AdamW with bias correction) run once per
 * `gradAccumSteps` micro-batches. Graph sizes come from the model, so depth is not capped at 2048 nodes.
 */
export class Trainer {
  readonly task: TrainTask;
  readonly batchSize: number;
  readonly seqLen: number;
  #step = 0;
  #micro = 0;
  #microLosses: number[] = [];
  readonly #slots: Slot[] = [];
  readonly #static: Context;
  readonly #buf: Buffer;
  readonly #inp: OptInputs;
  readonly #replicas: Replica[] = [];
  readonly #ownBackends: Backend[] = [];
  readonly #optCtx: Context;
  readonly #opt: Graph;
  readonly #optAlloc: GraphAllocator;
  readonly #norm: Tensor;
  readonly #manual: boolean;
  #frozenTransposes: ReadonlyMap<Tensor, Tensor> = new Map();
  readonly #chunk: number;

  constructor(
    readonly backend: Backend,
    readonly model: LlamaModel,
    readonly options: TrainerOptions,
  ) {
    this.task = options.task ?? "lm";
    this.batchSize = options.batchSize;
    this.seqLen = options.seqLen;
    const cfg = model.config;
    const B = this.batchSize;
    const T = this.seqLen;
    const R = options.replicas ?? 1;
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 2) {
      throw new SteerlmError(`batch shape must be B ≥ 1, T ≥ 2 (got ${B}×${T})`);
    }
    if (!Number.isInteger(R) || R < 1 || B % R !== 0) {
      throw new SteerlmError(`replicas (${R}) must be a positive integer dividing the batch size (${B})`);
    }
    checkOptimizer(options.optimizer);
    if (R > 1 && !backend.isCpu)
      throw new SteerlmError(`replicas (${R}) split work over CPU cores: use 1 on CUDA`);
    if (this.task === "regression" && !model.has(HEAD_WEIGHT)) {
      throw new SteerlmError("regression training needs a model created with regressionOutputs");
    }
    const trainable = model.trainable();
    if (trainable.length === 0) throw new SteerlmError("model has no trainable tensors");
    this.#manual = (options.backward ?? "manual") === "manual";
    if (options.recompute && !this.#manual)
      throw new SteerlmError("recompute needs the hand-written backward", 'use backward "manual"');
    const rowsT = (B / R) * T;
    this.#chunk = this.#manual ? (options.logitChunk ?? logitChunk(rowsT, cfg.vocabSize)) : rowsT;
    if (!Number.isInteger(this.#chunk) || this.#chunk < 1 || this.#chunk * cfg.vocabSize >= 2 ** 31)
      throw new SteerlmError(
        `logit chunk of ${this.#chunk} positions × ${cfg.vocabSize} words is not possible`,
      );
    if (!this.#manual && model.options.computeType === "bf16") {
      // the bf16 operands are made by steerlm's custom copy kernel, which ggml's autograd cannot differentiate
      throw new SteerlmError(
        'backward "ggml" supports f32 compute only',
        'use the default backward ("manual")',
      );
    }

    // ---- static tensors: optimiser inputs, AdamW moments, transposes of frozen matrices ----
    this.#static = new Context(16 + 2 * trainable.length + model.params.length);
    const s = this.#static;
    const input = (ne: number[], name: string) => {
      const t = s.newTensor("f32", ne, name);
      s.setInput(t);
      return t;
    };
    this.#inp = {
      adamDecay: input([7], "adamw_decay"),
      adamNoDecay: input([7], "adamw_no_decay"),
      clipMax: input([1], "clip_max"),
      invAccum: input([1], "inv_accum"),
    };
    const moments = trainable.map(({ info, tensor }) => ({
      info,
      w: tensor,
      m: s.newTensor("f32", info.shape, `${info.name}.m`),
      v: s.newTensor("f32", info.shape, `${info.name}.v`),
    }));
    // manual backward: transposed copies of the frozen matrices the GEMM cannot read in place (see linear)
    if (this.#manual) this.#frozenTransposes = declareFrozenTransposes(model, s, backend.isCpu);
    this.#buf = backend.allocTensors(s);
    if (this.#frozenTransposes.size > 0) this.refreshFrozenWeights();

    // ---- forward + backward graphs ----
    for (let r = 0; r < R; r++) {
      let be = backend;
      if (R > 1) {
        be = new Backend({ device: "cpu", threads: 1 });
        this.#ownBackends.push(be);
      }
      this.#replicas.push(
        new Replica(be, {
          model,
          rows: B / R,
          seqLen: T,
          task: this.task,
          manual: this.#manual,
          params: trainable.map((t) => t.tensor),
          frozenTransposes: this.#frozenTransposes,
          outputs: this.#outputs(),
          logitChunk: this.#chunk,
          recompute: options.recompute ?? false,
        }),
      );
    }
    const first = this.#replicas[0] as Replica;
    for (const x of moments) {
      if (!first.accs.has(x.w)) continue;
      this.#slots.push({ ...x, accs: this.#replicas.map((r) => r.accs.get(x.w) as Tensor) });
    }

    // ---- optimiser: norm of the averaged gradient, clip factor, AdamW per tensor ----
    const optSize = 64 + (14 + 2 * R) * this.#slots.length;
    this.#optCtx = new Context(optSize * 2, optSize, { plainOps: !backend.isCpu });
    const o = this.#optCtx;
    const sums = this.#slots.map((x) => x.accs.slice(1).reduce((a, b) => o.add(a, b), x.accs[0] as Tensor));
    let sumsq: Tensor | undefined;
    for (const g of sums) {
      const q = o.sumSquares(g);
      sumsq = sumsq ? o.add(sumsq, q) : q;
    }
    const inv = this.#inp.invAccum;
    this.#norm = o.mul(o.sqrt(sumsq as Tensor), inv); // ‖acc/k‖
    o.setOutput(this.#norm);
    // factor = (1/k)·min(1, max/(‖g‖+1e-6)); with clipping off clip_max is huge and the clamp gives 1
    const factor = o.mul(o.clamp(o.div(this.#inp.clipMax, o.scaleBias(this.#norm, 1, 1e-6)), 0, 1), inv);
    this.#opt = new Graph(o, optSize);
    // each update clears the gradient it read: the accumulator itself with one replica, else their sum,
    // and then the replicas' accumulators are cleared here
    this.#slots.forEach((x, i) => {
      const pars = x.info.decay ? this.#inp.adamDecay : this.#inp.adamNoDecay;
      for (const n of o.adamwFromAccumulator(x.w, sums[i] as Tensor, factor, x.m, x.v, pars))
        this.#opt.expand(n);
    });
    this.#opt.expand(this.#norm);
    if (R > 1)
      for (const x of this.#slots) for (const acc of x.accs) this.#opt.expand(o.scaleInplace(acc, 0));
    this.#optAlloc = backend.newAllocator();
    this.#optAlloc.alloc(this.#opt);
    for (const x of this.#slots) {
      const z = new Float32Array(x.info.shape.reduce((a, b) => a * b, 1));
      setData(x.m, z);
      setData(x.v, z);
    }
  }

  #outputs(): number {
    return this.model.has(HEAD_WEIGHT) ? this.model.tensor(HEAD_WEIGHT).ne[1]! : 1;
  }

  /** Positions per chunk of the output projection and cross-entropy (the whole rows when unchunked). */
  get logitChunk(): number {
    return this.#chunk;
  }

  get step(): number {
    return this.#step;
  }

  /** Recomputes the cached transposes of frozen weights: call after changing a frozen weight. */
  refreshFrozenWeights(): void {
    fillFrozenTransposes(this.backend, this.#frozenTransposes);
  }

  /** Nodes in the forward+backward graph. */
  get graphNodes(): number {
    return (this.#replicas[0] as Replica).graph.nodeCount;
  }

  /** Bytes the training graphs' intermediate tensors take (all replicas). */
  get computeBytes(): number {
    return this.#replicas.reduce((a, r) => a + r.computeBytes, 0);
  }

  /** Names of the tensors the optimiser updates. */
  get trainedTensors(): string[] {
    return this.#slots.map((x) => x.info.name);
  }

  /** Validates the batch, splits its rows over the replicas and uploads each part. */
  #upload(batch: Batch): void {
    if (this.task === "regression" && !batch.targets)
      throw new SteerlmError("regression batch without targets");
    if (this.task === "lm" && !batch.labels) throw new SteerlmError("language-model batch without labels");
    const R = this.#replicas.length;
    const rows = this.batchSize / R;
    const T = this.seqLen;
    const K = this.#outputs();
    const part = <A extends Int32Array | Uint8Array | Float32Array>(
      a: A | undefined,
      r: number,
      w: number,
    ) => (a && R > 1 ? (a.subarray(r * rows * w, (r + 1) * rows * w) as A) : a);
    if (batch.tokens.length !== this.batchSize * T) {
      // let prepareBatch report it with the full shape
      prepareBatch(batch, this.batchSize, T, this.model.config.vocabSize, K);
    }
    const parts: PreparedBatch[] = [];
    for (let r = 0; r < R; r++) {
      // each task reads only its own labels
      const own: Batch = {
        tokens: part(batch.tokens, r, T) as Int32Array,
        attention: part(batch.attention, r, T),
        ...(this.task === "lm"
          ? { labels: part(batch.labels, r, T), lossWeights: part(batch.lossWeights, r, 1) }
          : { targets: part(batch.targets, r, K) }),
      };
      parts.push(prepareBatch(own, rows, T, this.model.config.vocabSize, K, this.#chunk));
    }
    // every replica divides by the whole batch's count, so the replicas' gradients sum to the batch mean
    const total = parts.reduce((a, p) => a + p.validCount, 0);
    this.#replicas.forEach((rep, r) => {
      const p = parts[r] as PreparedBatch;
      p.negInvCount[0] = total > 0 ? -1 / total : 0;
      p.invTargetCount[0] = total > 0 ? 1 / total : 0;
      rep.upload(p);
    });
  }

  #finishMicro(): number {
    this.#micro++;
    const loss = this.#replicas.reduce((a, r) => a + r.loss, 0);
    this.#microLosses.push(loss);
    return loss;
  }

  /** Forward + backward of one micro-batch; gradients add up until `applyUpdate`. Returns the loss. */
  accumulate(batch: Batch): number {
    this.#upload(batch);
    for (const r of this.#replicas) {
      if (this.#micro === 0) r.startAccumulation();
      r.backend.compute(r.graph);
    }
    return this.#finishMicro();
  }

  /** `accumulate` with the computations on worker threads, the replicas at the same time. */
  async accumulateAsync(batch: Batch): Promise<number> {
    this.#upload(batch);
    if (this.#micro === 0) for (const r of this.#replicas) r.startAccumulation();
    await Promise.all(this.#replicas.map((r) => r.backend.computeAsync(r.graph)));
    return this.#finishMicro();
  }

  /** `trainStep` with the heavy computations on worker threads. */
  async trainStepAsync(batches: Batch | Batch[]): Promise<StepResult> {
    for (const b of Array.isArray(batches) ? batches : [batches]) await this.accumulateAsync(b);
    return this.applyUpdate();
  }

  /** Clips and applies AdamW to the gradients accumulated since the last update. */
  applyUpdate(): StepResult {
    if (this.#micro === 0) throw new SteerlmError("applyUpdate without accumulated gradients");
    const o = this.options.optimizer;
    const step = this.#step + 1;
    const lr = learningRate(o, step);
    const { beta1: b1, beta2: b2, eps, weightDecay: wd } = o;
    const bc1 = 1 / (1 - b1 ** step);
    const bc2 = 1 / (1 - b2 ** step);
    setData(this.#inp.adamDecay, new Float32Array([lr, b1, b2, eps, wd, bc1, bc2]));
    setData(this.#inp.adamNoDecay, new Float32Array([lr, b1, b2, eps, 0, bc1, bc2]));
    setData(this.#inp.clipMax, new Float32Array([o.maxGradNorm > 0 ? o.maxGradNorm : 3e38]));
    setData(this.#inp.invAccum, new Float32Array([1 / this.#micro]));
    this.backend.compute(this.#opt);
    const gradNorm = getScalar(this.#norm);
    const loss = this.#microLosses.reduce((a, b) => a + b, 0) / this.#microLosses.length;
    this.#micro = 0;
    this.#microLosses = [];
    this.#step = step;
    return { loss, gradNorm, lr, step };
  }

  /** One optimiser step over `batches` (gradient accumulation over all of them). */
  trainStep(batches: Batch | Batch[]): StepResult {
    for (const b of Array.isArray(batches) ? batches : [batches]) this.accumulate(b);
    return this.applyUpdate();
  }

  /** Gradient of the last accumulated loss(es) for a trainable tensor (for tests and diagnostics). */
  gradient(name: string): Float32Array {
    const slot = this.#slots.find((x) => x.info.name === name);
    if (!slot) throw new SteerlmError(`${name} is not trained`);
    const out = getF32(slot.accs[0] as Tensor);
    for (const acc of slot.accs.slice(1)) {
      const g = getF32(acc);
      for (let i = 0; i < out.length; i++) out[i] = out[i]! + g[i]!;
    }
    return out;
  }

  /** Forward only: the loss and the logits [N·V] (lm) or predictions [B·K] (regression). */
  evaluate(batch: Batch): { loss: number; output: Float32Array } {
    this.#upload(batch);
    const outs = this.#replicas.map((r) => r.evaluate());
    const output = new Float32Array(outs.reduce((a, o) => a + o.output.length, 0));
    let at = 0;
    for (const o of outs) {
      output.set(o.output, at);
      at += o.output.length;
    }
    return { loss: outs.reduce((a, o) => a + o.loss, 0), output };
  }

  /**
   * Forward only (language modelling): log p(labels[t+1] | tokens ≤ t) of every position in the loss, 0
   * elsewhere ([B·T]), and their sum per sequence ([B]): a response's log-likelihood under the model now.
   * Read from the loss graph's own target probabilities (no logits leave the graph's output but these).
   */
  logProbs(batch: Batch): { tokens: Float32Array; sequences: Float64Array } {
    if (this.task !== "lm") throw new SteerlmError("logProbs needs a language-model trainer");
    this.#upload(batch);
    const per = this.#replicas.map((r) => r.evaluate(false).logProbs as Float32Array);
    const T = this.seqLen;
    const labels = batch.labels as Int32Array;
    const tokens = new Float32Array(this.batchSize * T);
    let at = 0;
    for (const p of per) {
      tokens.set(p, at);
      at += p.length;
    }
    const sequences = new Float64Array(this.batchSize);
    for (let s = 0; s < this.batchSize; s++)
      for (let t = 0; t < T; t++) {
        const n = s * T + t;
        const inLoss = t + 1 < T && labels[n + 1] !== IGNORE && (!batch.attention || batch.attention[n]);
        if (!inLoss) tokens[n] = 0;
        else sequences[s] = sequences[s]! + tokens[n]!;
      }
    return { tokens, sequences };
  }

  /** AdamW moments of one trained tensor (for checkpoints). */
  moments(name: string): { m: Float32Array; v: Float32Array } {
    const slot = this.#slots.find((x) => x.info.name === name);
    if (!slot) throw new SteerlmError(`${name} is not trained`);
    return { m: getF32(slot.m), v: getF32(slot.v) };
  }

  /** Restores the step counter and AdamW moments (weights go through the model). */
  restore(step: number, moments: ReadonlyMap<string, { m: Float32Array; v: Float32Array }>): void {
    for (const x of this.#slots) {
      const mv = moments.get(x.info.name);
      if (!mv) throw new SteerlmError(`checkpoint lacks optimiser state for ${x.info.name}`);
      setData(x.m, mv.m);
      setData(x.v, mv.v);
    }
    this.#step = step;
  }

  free(): void {
    for (const r of this.#replicas) r.free();
    gemmScratch.release();
    for (const b of this.#ownBackends) b.free();
    this.#optAlloc.free();
    this.#optCtx.free();
    this.#buf.free();
    this.#static.free();
  }

  [Symbol.dispose](): void {
    this.free();
  }
}

export { Backend };
