import { Backend } from "../ggml/backend.js";
import { type LlamaConfig, resolveLlamaConfig } from "../model/config.js";
import { type FrozenType, LlamaModel, LORA_FROZEN_DEFAULT } from "../model/model.js";
import { Rng } from "../util/rng.js";
import { Trainer } from "./trainer.js";

/**
 * Training-throughput benchmarks with exactly the shapes of ../shared/bench/torch_anchor.py (random
 * weights, random tokens, AdamW lr 1e-3 wd 0.1; LoRA r8 on q,v with scale 1 like the anchor's module).
 */
export const BENCH_CONFIGS = {
  m10: {
    model: {
      vocabSize: 4096,
      hiddenSize: 256,
      numLayers: 6,
      numHeads: 8,
      numKvHeads: 8,
      ffnSize: 688,
      tiedEmbeddings: false,
    },
    batch: 8,
    seq: 128,
    steps: 5,
  },
  m30: {
    model: {
      vocabSize: 8192,
      hiddenSize: 512,
      numLayers: 8,
      numHeads: 8,
      numKvHeads: 8,
      ffnSize: 1376,
      tiedEmbeddings: true,
    },
    batch: 8,
    seq: 128,
    steps: 5,
  },
  smol135: {
    model: {
      vocabSize: 49152,
      hiddenSize: 576,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      ffnSize: 1536,
      tiedEmbeddings: true,
    },
    batch: 1,
    seq: 256,
    steps: 3,
  },
} as const;
export type BenchName = keyof typeof BENCH_CONFIGS;

export interface TrainBenchOptions {
  lora?: boolean;
  threads?: number;
  steps?: number;
  /** Storage of the frozen base under LoRA. */
  frozenType?: FrozenType;
  /** GEMMs in bfloat16 (f32 master weights and accumulation). */
  computeType?: "f32" | "bf16";
  /** Data-parallel graphs, each on one thread (see TrainerOptions.replicas). */
  replicas?: number;
  /** Reverse pass: the hand-written one (default) or ggml's autograd. */
  backward?: "manual" | "ggml";
  /** Rebuild each block's activations in the backward pass (TrainerOptions.recompute). */
  recompute?: boolean;
}

export interface TrainBenchResult {
  name: BenchName;
  mode: "full" | "lora";
  backward: "manual" | "ggml";
  compute: "f32" | "bf16";
  /** Storage of the frozen base matrices (LoRA runs). */
  frozen: FrozenType;
  recompute: boolean;
  params: number;
  trainable: number;
  batch: number;
  seq_len: number;
  threads: number;
  replicas: number;
  cpu_variant: string;
  step_ms: number;
  /** CPU time per step over all threads: less sensitive than wall time to other load on the machine. */
  cpu_ms: number;
  tokens_per_s: number;
  peak_rss_mb: number;
  loss_first: number;
  loss_last: number;
}

export async function benchTrain(name: BenchName, opts: TrainBenchOptions = {}): Promise<TrainBenchResult> {
  const b = BENCH_CONFIGS[name];
  const cfg: LlamaConfig = resolveLlamaConfig({ ...b.model, ropeTheta: 10000, rmsNormEps: 1e-5 });
  const backend = new Backend(opts.threads);
  const model = await LlamaModel.create(backend, cfg, null, {
    seed: 0,
    lora: opts.lora ? { rank: 8, alpha: 8, targets: ["q", "v"] } : undefined,
    frozenType: opts.lora ? (opts.frozenType ?? LORA_FROZEN_DEFAULT) : undefined,
    computeType: opts.computeType,
  });
  const trainer = new Trainer(backend, model, {
    batchSize: b.batch,
    seqLen: b.seq,
    // constant lr, no clipping: the bench times steps, whatever they do to the weights
    optimizer: {
      lr: 1e-3,
      warmupSteps: 0,
      totalSteps: 0,
      minLrRatio: 0,
      weightDecay: 0.1,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      maxGradNorm: 0,
    },
    backward: opts.backward,
    replicas: opts.replicas,
    recompute: opts.recompute,
  });
  const rng = new Rng(0);
  const tokens = Int32Array.from({ length: b.batch * b.seq }, () => rng.int(0, cfg.vocabSize - 1));
  const batch = { tokens, labels: tokens };
  const first = (await trainer.trainStepAsync(batch)).loss; // warm-up step (allocations, caches), not timed
  const steps = opts.steps ?? b.steps;
  let last = first;
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < steps; i++) last = (await trainer.trainStepAsync(batch)).loss;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
  const cpu = process.cpuUsage(cpu0);
  const result: TrainBenchResult = {
    name,
    mode: opts.lora ? "lora" : "full",
    backward: opts.backward ?? "manual",
    compute: opts.computeType ?? "f32",
    frozen: model.options.frozenType ?? "f32",
    recompute: opts.recompute ?? false,
    params: model.params
      .filter((p) => !p.name.includes(".lora_"))
      .reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0),
    trainable: model.trainable().reduce((a, p) => a + p.info.shape.reduce((x, y) => x * y, 1), 0),
    batch: b.batch,
    seq_len: b.seq,
    threads: backend.info.threads,
    replicas: opts.replicas ?? 1,
    cpu_variant: backend.info.cpuVariant,
    step_ms: ms,
    cpu_ms: (cpu.user + cpu.system) / 1000 / steps,
    tokens_per_s: (b.batch * b.seq * 1000) / ms,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    loss_first: first,
    loss_last: last,
  };
  trainer.free();
  model.free();
  backend.free();
  return result;
}
