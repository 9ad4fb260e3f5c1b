import {
  Backend,
  type Buffer,
  Graph,
  type GraphAllocator,
  getF32,
  getScalar,
  gradOf,
  setData,
} from "../ggml/backend.js";
import { Context } from "../ggml/context.js";
import type { Tensor } from "../ggml/tensor.js";
import type { AttentionInputs } from "../model/attention.js";
import { HEAD_BIAS, HEAD_WEIGHT, regressionHead } from "../model/head.js";
import { maskedCrossEntropy, maskedMse } from "../model/loss.js";
import { buildForward, type LlamaModel, type ParamInfo } from "../model/model.js";
import { Tape } from "../model/tape.js";
import { SteerlmError } from "../util/errors.js";
import { type Batch, type PreparedBatch, prepareBatch } from "./batch.js";
import { learningRate, type ScheduleOptions } from "./schedule.js";

export type TrainTask = "lm" | "regression";

export interface OptimizerOptions extends ScheduleOptions {
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Clip the global gradient norm to this (0 or undefined = no clipping). */
  maxGradNorm?: number;
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
  acc: Tensor;
  m: Tensor;
  v: Tensor;
}

/** Graph-input tensors, allocated once with the optimiser state. */
interface Inputs {
  tokens: Tensor;
  positions: Tensor;
  kqMask: Tensor;
  flatIdx: Tensor;
  lossMask: Tensor;
  negInvCount: Tensor;
  lastIdx: Tensor;
  targets: Tensor;
  targetMask: Tensor;
  invTargetCount: Tensor;
  lossAcc: Tensor;
  adamDecay: Tensor;
  adamNoDecay: Tensor;
  clipMax: Tensor;
  invAccum: Tensor;
}

/** Nodes per layer are ~40 forward (+5 per LoRA target); backward roughly triples that. */
function graphSize(model: LlamaModel): number {
  const lora = model.options.lora?.targets.length ?? 0;
  return 4096 + model.config.numLayers * (60 + 10 * lora) * 6;
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
  readonly #inp: Inputs;
  readonly #compute: Context;
  readonly #train: Graph;
  readonly #trainAlloc: GraphAllocator;
  readonly #loss: Tensor;
  readonly #optCtx: Context;
  readonly #opt: Graph;
  readonly #optAlloc: GraphAllocator;
  readonly #norm: Tensor;
  readonly #manual: boolean;
  readonly #frozenTransposes = new Map<Tensor, Tensor>();
  #eval: { ctx: Context; graph: Graph; alloc: GraphAllocator; loss: Tensor; out: Tensor } | undefined;

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
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 2) {
      throw new SteerlmError(`batch shape must be B ≥ 1, T ≥ 2 (got ${B}×${T})`);
    }
    if (this.task === "regression" && !model.has(HEAD_WEIGHT)) {
      throw new SteerlmError("regression training needs a model created with regressionOutputs");
    }
    const N = B * T;
    if (N * cfg.vocabSize >= 2 ** 31)
      throw new SteerlmError(`batch too large for the vocabulary: ${N}×${cfg.vocabSize} logits`);
    const K = this.#outputs();
    const trainable = model.trainable();
    if (trainable.length === 0) throw new SteerlmError("model has no trainable tensors");

    // ---- static tensors: inputs, gradient accumulators, AdamW moments ----
    this.#static = new Context(32 + 3 * trainable.length + model.params.length);
    const s = this.#static;
    const input = (type: "f32" | "i32", ne: number[], name: string) => {
      const t = s.newTensor(type, ne, name);
      s.setInput(t);
      return t;
    };
    this.#inp = {
      tokens: input("i32", [N], "tokens"),
      positions: input("i32", [N], "positions"),
      kqMask: input("f32", [T, T, 1, B], "kq_mask"),
      flatIdx: input("i32", [N], "target_idx"),
      lossMask: input("f32", [1, N], "loss_mask"),
      negInvCount: input("f32", [1], "neg_inv_count"),
      lastIdx: input("i32", [B], "last_idx"),
      targets: input("f32", [K, B], "targets"),
      targetMask: input("f32", [K, B], "target_mask"),
      invTargetCount: input("f32", [1], "inv_target_count"),
      lossAcc: s.newTensor("f32", [1], "loss_grad"),
      adamDecay: input("f32", [7], "adamw_decay"),
      adamNoDecay: input("f32", [7], "adamw_no_decay"),
      clipMax: input("f32", [1], "clip_max"),
      invAccum: input("f32", [1], "inv_accum"),
    };
    const candidates = trainable.map(({ info, tensor }) => ({
      info,
      w: tensor,
      acc: s.newTensor("f32", info.shape, `${info.name}.grad`),
      m: s.newTensor("f32", info.shape, `${info.name}.m`),
      v: s.newTensor("f32", info.shape, `${info.name}.v`),
    }));
    // manual backward: transposed copies of frozen matrices, made once (see Tape.transposedWeight)
    const frozen =
      (options.backward ?? "manual") === "manual"
        ? model.params.filter((p) => !p.trainable && p.shape.length === 2)
        : [];
    for (const p of frozen) {
      const w = model.tensor(p.name);
      this.#frozenTransposes.set(
        w,
        s.newTensor(w.type, [p.shape[1] as number, p.shape[0] as number], `${p.name}.T`),
      );
    }
    this.#buf = backend.allocTensors(s);
    if (frozen.length > 0) this.refreshFrozenWeights();

    // ---- forward + backward ----
    const size = graphSize(model);
    this.#compute = new Context(size * 3, size);
    const c = this.#compute;
    this.#manual = (options.backward ?? "manual") === "manual";
    this.#train = new Graph(c, size);
    if (this.#manual) {
      const tape = new Tape(c, new Set(candidates.map((x) => x.w)), this.#frozenTransposes);
      this.#loss = this.#buildLoss(c, undefined, tape);
      c.setOutput(this.#loss);
      this.#train.expand(this.#loss);
      tape.backward();
      // gradients add into the static accumulators; the optimiser graph zeroes them after each update
      for (const x of candidates) {
        const g = tape.paramGrads.get(x.w);
        if (!g) continue; // not reached by the loss (e.g. output.weight under a regression task)
        this.#train.expand(c.addInplace(x.acc, g));
        this.#slots.push(x);
      }
    } else {
      this.#loss = this.#buildLoss(c);
      c.setLoss(this.#loss);
      c.setOutput(this.#loss);
      this.#train.expand(this.#loss);
      const accs = new Map<Tensor, Tensor>(candidates.map((x) => [x.w, x.acc]));
      accs.set(this.#loss, this.#inp.lossAcc);
      this.#train.backward(accs);
      for (const x of candidates) if (gradOf(this.#train, x.w, c)) this.#slots.push(x);
    }
    this.#trainAlloc = backend.newAllocator();
    this.#trainAlloc.alloc(this.#train);

    // ---- optimiser: norm of the averaged gradient, clip factor, AdamW per tensor ----
    const optSize = 64 + 12 * this.#slots.length;
    this.#optCtx = new Context(optSize * 2, optSize);
    const o = this.#optCtx;
    let sumsq: Tensor | undefined;
    for (const x of this.#slots) {
      const q = o.sum(o.sqr(x.acc));
      sumsq = sumsq ? o.add(sumsq, q) : q;
    }
    const inv = this.#inp.invAccum;
    this.#norm = o.mul(o.sqrt(sumsq as Tensor), inv); // ‖acc/k‖
    o.setOutput(this.#norm);
    // factor = (1/k)·min(1, max/(‖g‖+1e-6)); with clipping off clip_max is huge and the clamp gives 1
    const factor = o.mul(o.clamp(o.div(this.#inp.clipMax, o.scaleBias(this.#norm, 1, 1e-6)), 0, 1), inv);
    this.#opt = new Graph(o, optSize);
    for (const x of this.#slots) {
      const g = o.mul(x.acc, factor);
      this.#opt.expand(
        o.adamwStep(x.w, g, x.m, x.v, x.info.decay ? this.#inp.adamDecay : this.#inp.adamNoDecay),
      );
    }
    this.#opt.expand(this.#norm);
    if (this.#manual) for (const x of this.#slots) this.#opt.expand(o.scaleInplace(x.acc, 0));
    this.#optAlloc = backend.newAllocator();
    this.#optAlloc.alloc(this.#opt);
    for (const x of this.#slots) {
      const z = new Float32Array(x.info.shape.reduce((a, b) => a * b, 1));
      setData(x.m, z);
      setData(x.v, z);
      setData(x.acc, z);
    }
  }

  #outputs(): number {
    return this.model.has(HEAD_WEIGHT) ? (this.model.tensor(HEAD_WEIGHT).ne[1] as number) : 1;
  }

  #attn(): AttentionInputs {
    return {
      positions: this.#inp.positions,
      kqMask: this.#inp.kqMask,
      seqLen: this.seqLen,
      batch: this.batchSize,
      ropeMode: this.model.options.ropeMode,
    };
  }

  /** Loss node of the task; `out` receives logits or predictions for forward-only use. */
  #buildLoss(c: Context, out?: (t: Tensor) => void, tape?: Tape): Tensor {
    const i = this.#inp;
    const fwd = buildForward(c, this.model, i.tokens, this.#attn(), this.task === "lm", tape);
    if (this.task === "lm") {
      const logits = fwd.logits as Tensor;
      out?.(logits);
      return maskedCrossEntropy(c, logits, i.flatIdx, i.lossMask, i.negInvCount, tape);
    }
    const w = this.model.tensor(HEAD_WEIGHT);
    const pred = regressionHead(c, fwd.hidden, i.lastIdx, w, this.model.tensor(HEAD_BIAS), tape);
    out?.(pred);
    return maskedMse(c, pred, i.targets, i.targetMask, i.invTargetCount, tape);
  }

  get step(): number {
    return this.#step;
  }

  /** Recomputes the cached transposes of frozen weights: call after changing a frozen weight. */
  refreshFrozenWeights(): void {
    if (this.#frozenTransposes.size === 0) return;
    const ctx = new Context(3 * this.#frozenTransposes.size + 8, this.#frozenTransposes.size * 3 + 16);
    const alloc = this.backend.newAllocator();
    try {
      const g = new Graph(ctx, this.#frozenTransposes.size * 3 + 16);
      for (const [w, wt] of this.#frozenTransposes) g.expand(ctx.copy(ctx.transpose(w), wt));
      alloc.alloc(g);
      this.backend.compute(g);
    } finally {
      alloc.free();
      ctx.free();
    }
  }

  /** Nodes in the forward+backward graph. */
  get graphNodes(): number {
    return this.#train.nodeCount;
  }

  /** Names of the tensors the optimiser updates. */
  get trainedTensors(): string[] {
    return this.#slots.map((x) => x.info.name);
  }

  #upload(batch: Batch): PreparedBatch {
    // each task reads only its own labels
    const own: Batch =
      this.task === "lm"
        ? { tokens: batch.tokens, attention: batch.attention, labels: batch.labels }
        : { tokens: batch.tokens, attention: batch.attention, targets: batch.targets };
    const p = prepareBatch(own, this.batchSize, this.seqLen, this.model.config.vocabSize, this.#outputs());
    if (this.task === "regression" && !batch.targets)
      throw new SteerlmError("regression batch without targets");
    if (this.task === "lm" && !batch.labels) throw new SteerlmError("language-model batch without labels");
    const i = this.#inp;
    setData(i.tokens, p.tokens);
    setData(i.positions, p.positions);
    setData(i.kqMask, p.kqMask);
    setData(i.flatIdx, p.flatIdx);
    setData(i.lossMask, p.lossMask);
    setData(i.negInvCount, p.negInvCount);
    setData(i.lastIdx, p.lastIdx);
    setData(i.targets, p.targets);
    setData(i.targetMask, p.targetMask);
    setData(i.invTargetCount, p.invTargetCount);
    return p;
  }

  /** Forward + backward of one micro-batch; gradients add up until `applyUpdate`. Returns the loss. */
  accumulate(batch: Batch): number {
    this.#upload(batch);
    if (this.#micro === 0 && !this.#manual) this.#train.reset();
    this.backend.compute(this.#train);
    this.#micro++;
    const loss = getScalar(this.#loss);
    this.#microLosses.push(loss);
    return loss;
  }

  /** `accumulate` with the computation on a worker thread (the event loop stays free). */
  async accumulateAsync(batch: Batch): Promise<number> {
    this.#upload(batch);
    if (this.#micro === 0 && !this.#manual) this.#train.reset();
    await this.backend.computeAsync(this.#train);
    this.#micro++;
    const loss = getScalar(this.#loss);
    this.#microLosses.push(loss);
    return loss;
  }

  /** `trainStep` with the heavy computations on a worker thread. */
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
    const b1 = o.beta1 ?? 0.9;
    const b2 = o.beta2 ?? 0.999;
    const eps = o.eps ?? 1e-8;
    const wd = o.weightDecay ?? 0;
    if (!(lr >= 0) || !(wd >= 0 && lr * wd <= 1))
      throw new SteerlmError(`bad optimiser values: lr ${lr}, weight decay ${wd}`);
    const bc1 = 1 / (1 - b1 ** step);
    const bc2 = 1 / (1 - b2 ** step);
    setData(this.#inp.adamDecay, new Float32Array([lr, b1, b2, eps, wd, bc1, bc2]));
    setData(this.#inp.adamNoDecay, new Float32Array([lr, b1, b2, eps, 0, bc1, bc2]));
    setData(this.#inp.clipMax, new Float32Array([o.maxGradNorm && o.maxGradNorm > 0 ? o.maxGradNorm : 3e38]));
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
    return getF32(slot.acc);
  }

  #evalGraph() {
    if (this.#eval) return this.#eval;
    const size = graphSize(this.model);
    const ctx = new Context(size * 2, size);
    let out: Tensor | undefined;
    const loss = this.#buildLoss(ctx, (t) => {
      out = t;
    });
    ctx.setOutput(loss);
    ctx.setOutput(out as Tensor);
    const graph = new Graph(ctx, size);
    graph.expand(out as Tensor);
    graph.expand(loss);
    const alloc = this.backend.newAllocator();
    alloc.alloc(graph);
    this.#eval = { ctx, graph, alloc, loss, out: out as Tensor };
    return this.#eval;
  }

  /** Forward only: the loss and the logits [N·V] (lm) or predictions [B·K] (regression). */
  evaluate(batch: Batch): { loss: number; output: Float32Array } {
    const e = this.#evalGraph();
    this.#upload(batch);
    this.backend.compute(e.graph);
    return { loss: getScalar(e.loss), output: getF32(e.out) };
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
    this.#eval?.alloc.free();
    this.#eval?.ctx.free();
    this.#optAlloc.free();
    this.#trainAlloc.free();
    this.#optCtx.free();
    this.#compute.free();
    this.#buf.free();
    this.#static.free();
  }
}

export { Backend };
