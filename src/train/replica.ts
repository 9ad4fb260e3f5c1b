import {
  type Backend,
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
import { lmLoss } from "../model/lm-head.js";
import { maskedMse } from "../model/loss.js";
import { buildForward, type LlamaModel, outputWeight } from "../model/model.js";
import { Tape } from "../model/tape.js";
import type { PreparedBatch } from "./batch.js";

export type TrainTask = "lm" | "regression";

/** Nodes per layer are ~40 forward (+5 per LoRA target); backward roughly triples that. */
export function graphSize(model: LlamaModel, recompute = false): number {
  const lora = model.options.lora?.targets.length ?? 0;
  return 4096 + model.config.numLayers * (60 + 10 * lora) * (recompute ? 8 : 6);
}

export interface ReplicaSpec {
  model: LlamaModel;
  /** Rows of the batch this replica computes. */
  rows: number;
  seqLen: number;
  task: TrainTask;
  /** Hand-written reverse pass (true) or ggml's autograd. */
  manual: boolean;
  /** Trainable parameters to differentiate. */
  params: readonly Tensor[];
  frozenTransposes: ReadonlyMap<Tensor, Tensor>;
  outputs: number;
  /** Positions per chunk of the output projection + cross-entropy (see lmLoss). */
  logitChunk: number;
  /** Rebuild each block's activations in the backward pass instead of keeping them (recomputedBlock). */
  recompute: boolean;
}

/** The arrays of a prepared batch, each the data of the graph input of the same name. */
const BATCH_INPUTS = [
  "tokens",
  "positions",
  "kqMask",
  "flatIdx",
  "lossMask",
  "negInvCount",
  "lastIdx",
  "targets",
  "targetMask",
  "invTargetCount",
] as const satisfies readonly (keyof PreparedBatch)[];

/** Uploads each array of `p` to the input tensor of its name, for the inputs `inp` has (a graph may use some). */
export function uploadBatch(
  inp: Partial<Record<(typeof BATCH_INPUTS)[number], Tensor>>,
  p: PreparedBatch,
): void {
  for (const k of BATCH_INPUTS) {
    const t = inp[k];
    if (t) setData(t, p[k]);
  }
}

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
}

/**
 * One forward+backward graph over `rows` sequences with its own inputs, gradient accumulators and
 * backend. A Trainer runs one replica, or several on halves of the batch at once: each replica has a
 * single-threaded backend, so no op waits on a barrier for another core (ggml's spinning barriers
 * stall when the OS deschedules a worker; replicas only meet once per step).
 */
export class Replica {
  /** Gradient accumulator of each parameter the loss reaches. */
  readonly accs = new Map<Tensor, Tensor>();
  readonly #static: Context;
  readonly #buf: Buffer;
  readonly inp: Inputs;
  readonly #compute: Context;
  readonly graph: Graph;
  readonly #alloc: GraphAllocator;
  readonly #loss: Tensor;
  #eval:
    | { ctx: Context; graph: Graph; alloc: GraphAllocator; loss: Tensor; out: Tensor; logp?: Tensor }
    | undefined;

  constructor(
    readonly backend: Backend,
    readonly spec: ReplicaSpec,
  ) {
    const B = spec.rows;
    const T = spec.seqLen;
    const N = B * T;
    const K = spec.outputs;
    this.#static = new Context(16 + spec.params.length);
    const s = this.#static;
    const input = (type: "f32" | "i32", ne: number[], name: string) => {
      const t = s.newTensor(type, ne, name);
      s.setInput(t);
      return t;
    };
    this.inp = {
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
    };
    const accOf = new Map(spec.params.map((w) => [w, s.newTensor("f32", [...w.ne], `${w.name}.grad`)]));
    this.#buf = backend.allocTensors(s);

    const size = graphSize(spec.model, spec.recompute);
    this.#compute = new Context(size * 3, size, { plainOps: !spec.manual || !backend.isCpu });
    const c = this.#compute;
    this.graph = new Graph(c, size);
    if (spec.manual) {
      const tape = new Tape(c, new Set(spec.params), spec.frozenTransposes, (t) => this.graph.expand(t));
      this.#loss = this.#buildLoss(c, undefined, tape);
      c.setOutput(this.#loss);
      this.graph.expand(this.#loss);
      tape.backward();
      // gradients add into the static accumulators (a weight's GEMM straight into it); the optimiser graph
      // zeroes them after each update
      for (const [w, acc] of accOf) {
        const g = tape.paramGrads.get(w);
        if (!g) continue; // not reached by the loss (e.g. output.weight under a regression task)
        this.graph.expand(c.accumulate(acc, g));
        this.accs.set(w, acc);
      }
    } else {
      this.#loss = this.#buildLoss(c);
      c.setLoss(this.#loss);
      c.setOutput(this.#loss);
      this.graph.expand(this.#loss);
      const accs = new Map<Tensor, Tensor>(accOf);
      accs.set(this.#loss, this.inp.lossAcc);
      this.graph.backward(accs);
      for (const [w, acc] of accOf) if (gradOf(this.graph, w, c)) this.accs.set(w, acc);
    }
    this.#alloc = backend.newAllocator();
    this.#alloc.alloc(this.graph);
    for (const acc of accOf.values()) setData(acc, new Float32Array(acc.nelements));
  }

  #attn(): AttentionInputs {
    return {
      positions: this.inp.positions,
      kqMask: this.inp.kqMask,
      seqLen: this.spec.seqLen,
      batch: this.spec.rows,
      ropeMode: this.spec.model.options.ropeMode,
    };
  }

  /**
   * Loss node of the task; `out` receives logits or predictions and `logp` the per-position target
   * log-probabilities (language modelling), for forward-only use.
   */
  #buildLoss(c: Context, out?: (t: Tensor) => void, tape?: Tape, logp?: (t: Tensor) => void): Tensor {
    const i = this.inp;
    const model = this.spec.model;
    const fwd = buildForward(c, model, i.tokens, this.#attn(), false, tape, this.spec.recompute);
    if (this.spec.task === "lm") {
      const bf16 = model.options.computeType === "bf16";
      const inp = { flatIdx: i.flatIdx, mask: i.lossMask, negInvCount: i.negInvCount };
      const outs = { logits: out, logProbs: logp };
      return lmLoss(c, fwd.hidden, outputWeight(model), bf16, this.spec.logitChunk, inp, tape, outs);
    }
    const w = model.tensor(HEAD_WEIGHT);
    const pred = regressionHead(c, fwd.hidden, i.lastIdx, w, model.tensor(HEAD_BIAS), tape);
    out?.(pred);
    return maskedMse(c, pred, i.targets, i.targetMask, i.invTargetCount, tape);
  }

  upload(p: PreparedBatch): void {
    uploadBatch(this.inp, p);
  }

  /** ggml's autograd path needs d(loss)=1 and zeroed accumulators at the start of an accumulation. */
  startAccumulation(): void {
    if (!this.spec.manual) this.graph.reset();
  }

  /** Bytes of the forward+backward graph's intermediate tensors (its allocator's buffer). */
  get computeBytes(): number {
    return this.#alloc.size;
  }

  get loss(): number {
    return getScalar(this.#loss);
  }

  #evalGraph() {
    if (this.#eval) return this.#eval;
    const size = graphSize(this.spec.model);
    const ctx = new Context(size * 2, size, { plainOps: !this.backend.isCpu });
    let out: Tensor | undefined;
    let logp: Tensor | undefined;
    const loss = this.#buildLoss(
      ctx,
      (t) => {
        out = t;
      },
      undefined,
      (t) => {
        logp = t;
      },
    );
    ctx.setOutput(loss);
    ctx.setOutput(out as Tensor);
    if (logp) ctx.setOutput(logp);
    const graph = new Graph(ctx, size);
    graph.expand(out as Tensor);
    if (logp) graph.expand(logp);
    graph.expand(loss);
    const alloc = this.backend.newAllocator();
    alloc.alloc(graph);
    this.#eval = { ctx, graph, alloc, loss, out: out as Tensor, logp };
    return this.#eval;
  }

  /** Forward only over already uploaded inputs; `withOutput: false` skips copying the logits out. */
  evaluate(withOutput = true): { loss: number; output: Float32Array; logProbs?: Float32Array } {
    const e = this.#evalGraph();
    this.backend.compute(e.graph);
    return {
      loss: getScalar(e.loss),
      output: withOutput ? getF32(e.out) : new Float32Array(0),
      logProbs: e.logp ? getF32(e.logp) : undefined,
    };
  }

  free(): void {
    this.#eval?.alloc.free();
    this.#eval?.ctx.free();
    this.#alloc.free();
    this.#compute.free();
    this.#buf.free();
    this.#static.free();
  }
}
