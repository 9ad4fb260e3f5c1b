import { Backend } from "../ggml/backend.js";
import { amxF32Products, measurePeak } from "../ggml/index.js";
import { type LlamaConfig, resolveLlamaConfig } from "../model/config.js";
import { type FrozenType, LlamaModel, LORA_FROZEN_DEFAULT } from "../model/model.js";
import { Rng } from "../util/rng.js";
import { trainStepFlops } from "./flops.js";
import { Trainer } from "./trainer.js";

/**
 * Training-throughput benchmarks with exactly the shapes of ../shared/bench/torch_anchor.py, and two larger
 * Llama shapes without an anchor (random weights, random tokens, AdamW lr 1e-3 wd 0.1; LoRA r8 on q,v with
 * scale 1 like the anchor's module).
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
  // real shapes users fine-tune with LoRA (Qwen2's q/k/v bias is left out, as in the anchor)
  smol360: {
    model: {
      vocabSize: 49152,
      hiddenSize: 960,
      numLayers: 32,
      numHeads: 15,
      numKvHeads: 5,
      ffnSize: 2560,
      tiedEmbeddings: true,
    },
    batch: 1,
    seq: 512,
    steps: 3,
  },
  qwen05: {
    model: {
      vocabSize: 151936,
      hiddenSize: 896,
      numLayers: 24,
      numHeads: 14,
      numKvHeads: 2,
      ffnSize: 4864,
      tiedEmbeddings: true,
    },
    batch: 1,
    seq: 512,
    steps: 3,
  },
  llama1b: {
    model: {
      vocabSize: 128256,
      hiddenSize: 2048,
      numLayers: 16,
      numHeads: 32,
      numKvHeads: 8,
      ffnSize: 8192,
      tiedEmbeddings: true,
    },
    batch: 1,
    seq: 512,
    steps: 2,
  },
  // larger shapes, no anchor: what fits in the machine's memory (docs/engine.md)
  llama3b: {
    model: {
      vocabSize: 128256,
      hiddenSize: 3072,
      numLayers: 28,
      numHeads: 24,
      numKvHeads: 8,
      ffnSize: 8192,
      tiedEmbeddings: true,
    },
    batch: 1,
    seq: 512,
    steps: 1,
  },
  llama8b: {
    model: {
      vocabSize: 128256,
      hiddenSize: 4096,
      numLayers: 32,
      numHeads: 32,
      numKvHeads: 8,
      ffnSize: 14336,
      tiedEmbeddings: false,
    },
    batch: 1,
    seq: 512,
    steps: 1,
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
  /** Tokens per sequence instead of the configuration's (the cost-growth table's sequence lengths). */
  seqLen?: number;
  /** Positions per output-projection chunk (TrainerOptions.logitChunk): B·T to measure the unchunked memory. */
  logitChunk?: number;
}

export interface TrainBenchResult {
  name: BenchName;
  mode: "full" | "lora";
  backward: "manual" | "ggml";
  compute: "f32" | "bf16";
  /** Storage of the frozen base matrices (LoRA runs). */
  frozen: FrozenType;
  recompute: boolean;
  /** Positions per chunk of the output projection and cross-entropy. */
  logit_chunk: number;
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
  /** Model GFLOPs of one step, counted from the shapes (trainStepFlops), and attention's part of them. */
  gflop_per_step: number;
  attention_share: number;
  /** Achieved GFLOP/s: gflop_per_step ÷ step time. */
  gflops: number;
  /**
   * This machine's peak for the step's compute precision (under f32 compute also for a bf16/f16/Q8_0 frozen
   * base, which the kernels widen to f32; bf16: AMX's tiles where the bf16 GEMM runs on them), on as many
   * threads as the step used, measured in this process after the timed steps (src/ggml/peak.ts); null where
   * the CPU lacks the instructions.
   */
  peak_gflops: number | null;
  /**
   * f32 products that ran on AMX tiles per step, their f32 operands split into three exact bf16 parts (a bf16
   * base times f32 activations, three products; f32 times f32, six: f32-accurate, native/gemm.c); 0 where every
   * f32 product ran on f32 FMAs. Where it is not 0, `mfu` against the f32 FMA peak can pass 1.
   */
  amx_f32_products: number;
  /** gflops ÷ peak_gflops. */
  mfu: number | null;
  /**
   * GFLOPs per CPU-second ÷ one core's peak: the same ratio over the CPU time the step got, which other
   * load on a shared machine disturbs less than wall time (ggml's spinning barriers count as CPU time).
   */
  mfu_cpu: number | null;
  peak_rss_mb: number;
  loss_first: number;
  loss_last: number;
}

export async function benchTrain(name: BenchName, opts: TrainBenchOptions = {}): Promise<TrainBenchResult> {
  const b = BENCH_CONFIGS[name];
  const seq = opts.seqLen ?? b.seq;
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
    seqLen: seq,
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
    logitChunk: opts.logitChunk,
  });
  const rng = new Rng(0);
  const tokens = Int32Array.from({ length: b.batch * seq }, () => rng.int(0, cfg.vocabSize - 1));
  const batch = { tokens, labels: tokens };
  const first = (await trainer.trainStepAsync(batch)).loss; // warm-up step (allocations, caches), not timed
  const steps = opts.steps ?? b.steps;
  let last = first;
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const amx0 = amxF32Products();
  for (let i = 0; i < steps; i++) last = (await trainer.trainStepAsync(batch)).loss;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
  const amxProducts = (amxF32Products() - amx0) / steps;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000 / steps;
  const peakRss = process.resourceUsage().maxRSS / 1024;
  const lora = model.options.lora ?? null;
  const threads = backend.info.threads;
  const cpuVariant = backend.info.cpuVariant;
  const replicas = opts.replicas ?? 1;
  const mode = opts.lora ? "lora" : "full";
  const frozen = model.options.frozenType ?? "f32";
  const params = model.params
    .filter((p) => !p.name.includes(".lora_"))
    .reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  const chunk = trainer.logitChunk;
  const trainable = model.trainable().reduce((a, p) => a + p.info.shape.reduce((x, y) => x * y, 1), 0);
  trainer.free();
  model.free();
  backend.free();
  // measured after the graphs and the thread pool are gone, so that nothing of ours competes with it
  const compute = opts.computeType ?? "f32";
  const flops = trainStepFlops(cfg, b.batch, seq, lora);
  const gflops = flops.total / 1e9 / (ms / 1000);
  const used = replicas > 1 ? replicas : threads;
  const peakAll = measurePeak(compute, used).gflops;
  const peakOne = used === 1 ? peakAll : measurePeak(compute, 1).gflops;
  return {
    name,
    mode,
    backward: opts.backward ?? "manual",
    compute,
    frozen,
    recompute: opts.recompute ?? false,
    logit_chunk: chunk,
    params,
    trainable,
    batch: b.batch,
    seq_len: seq,
    threads,
    replicas,
    cpu_variant: cpuVariant,
    step_ms: ms,
    cpu_ms: cpuMs,
    tokens_per_s: (b.batch * seq * 1000) / ms,
    gflop_per_step: flops.total / 1e9,
    attention_share: flops.attention / flops.total,
    gflops,
    peak_gflops: peakAll,
    amx_f32_products: amxProducts,
    mfu: peakAll ? gflops / peakAll : null,
    mfu_cpu: peakOne ? flops.total / 1e9 / (cpuMs / 1000) / peakOne : null,
    peak_rss_mb: peakRss,
    loss_first: first,
    loss_last: last,
  };
}
