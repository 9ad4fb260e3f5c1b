import type { Backend, Buffer } from "../ggml/backend.js";
import { getBytes, getF32, setData } from "../ggml/backend.js";
import { Context, type RopeMode } from "../ggml/context.js";
import { type DType, ggmlType, type Tensor } from "../ggml/tensor.js";
import { dequantize, f32ToBf16, f32ToF16, quantizeQ8_0 } from "../gguf/quant.js";
import { SteerlmError } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import type { AttentionInputs } from "./attention.js";
import { type BlockWeights, block, recomputedBlock, rmsNormGain } from "./block.js";
import type { LlamaConfig } from "./config.js";
import { HEAD_BIAS, HEAD_WEIGHT } from "./head.js";
import { llamaArchFor, llamaRopeStyle } from "./llama-gguf.js";
import {
  LORA_TARGET_TENSOR,
  LORA_TARGETS,
  type LoraOptions,
  type LoraPair,
  type LoraTarget,
  linear,
  loraNames,
} from "./lora.js";
import type { Tape } from "./tape.js";
import { blockTensor } from "./tensor-names.js";
import {
  INIT_STD,
  initTensor,
  llamaTensorSpecs,
  numel,
  type TensorSpec,
  type WeightSource,
} from "./weights.js";

export interface ModelOptions {
  /** Train adapters only; the base is frozen. */
  lora?: LoraOptions;
  /** Add a regression head with this many outputs (attribute model). */
  regressionOutputs?: number;
  /** Train the base weights (default: true without LoRA, false with it). */
  trainBase?: boolean;
  /**
   * Storage type of frozen base matrices: f16 halves memory and is what GGUF models usually carry; q8_0
   * (8.5 bits a value) is what a Q8_0 GGUF carries. A q8_0 matrix needs both dimensions divisible by 32
   * (its transpose for the backward pass is q8_0 too); one that is not is kept as f16.
   */
  frozenType?: FrozenType;
  /**
   * Type the large matrix products run in. "bf16" casts weights (and, in the backward pass, activations)
   * to bfloat16 for the GEMMs, accumulating in f32 — about 1.9× faster on CPUs with AVX512-BF16; weights,
   * gradients and optimiser state stay f32. Default "f32".
   */
  computeType?: "f32" | "bf16";
  /**
   * How the weights' q/k rows rotate. Default: as llama.cpp runs the architecture steerlm writes the config
   * as (`llamaRopeStyle(llamaArchFor(config))`: GGUF files, steerlm's runs and checkpoints); Hugging Face
   * weights read unpermuted rotate halves, "neox".
   */
  ropeMode?: RopeMode;
  /** Seed for new tensors (LoRA A, regression head, or every weight missing from the source). */
  seed?: number;
  /** Std of random matrices when a weight is initialised here. */
  initStd?: number;
}

export type FrozenType = "f32" | "f16" | "bf16" | "q8_0";

/**
 * A LoRA base that is f32 (an F32 GGUF, Hugging Face weights, the benchmarks) is kept as bf16: half the
 * memory, the range of f32, and the kernels widen it exactly, so the gradients are those of an f32 base
 * holding the bf16-rounded weights (tested). Measured on smol135 LoRA: faster than f32 and f16 and
 * ~0.4 GB less (docs/engine.md). `frozen: "f32"` keeps the exact weights.
 */
export const LORA_FROZEN_DEFAULT: FrozenType = "bf16";

/**
 * Whether frozen matrix `name` takes the frozen storage: all do except the token embeddings under Q8_0
 * (kept f32: a Q8_0 embedding would round every input vector, and its tied output projection's transpose
 * is made on the host); f16/bf16 embeddings are read by get_rows and the GEMMs as they are.
 */
function frozenEmbedding(name: string, frozen: FrozenType): boolean {
  return name !== "token_embd.weight" || frozen !== "q8_0";
}

/** Storage of one frozen matrix of ggml shape `shape` under `frozen`. */
export function frozenStorage(frozen: FrozenType, shape: readonly number[]): DType {
  if (frozen !== "q8_0") return frozen;
  // both sides: a Q8_0 Wᵀ made on the host (where the GEMM cannot read W's transpose) has its blocks
  // along W's other dimension
  return shape.every((n) => n % ggmlType("q8_0").blockSize === 0) ? "q8_0" : "f16";
}

export interface ParamInfo {
  name: string;
  shape: number[];
  trainable: boolean;
  decay: boolean;
}

/**
 * A Llama-family model's tensors living in one backend buffer, named like llama.cpp's GGUF tensors.
 * It knows which tensors are trainable; graphs are built from it by `buildForward`.
 */
export class LlamaModel implements Disposable {
  readonly params: ParamInfo[] = [];
  readonly #tensors = new Map<string, Tensor>();
  readonly #ctx: Context;
  #buffer: Buffer | undefined;

  private constructor(
    readonly config: LlamaConfig,
    readonly options: Required<Pick<ModelOptions, "ropeMode" | "trainBase">> & ModelOptions,
    specs: Array<TensorSpec & { trainable: boolean; type: DType }>,
  ) {
    this.#ctx = new Context(specs.length + 8);
    for (const s of specs) {
      const t = this.#ctx.newTensor(s.type, s.shape, s.name);
      if (s.trainable) this.#ctx.setParam(t);
      this.#tensors.set(s.name, t);
      this.params.push({ name: s.name, shape: s.shape, trainable: s.trainable, decay: s.decay });
    }
  }

  /**
   * Creates the model on `backend` and fills it from `source`; tensors the source lacks are initialised
   * randomly (seeded) — except base weights of a model that is only adapted, which must all be present.
   */
  static async create(
    backend: Backend,
    config: LlamaConfig,
    source: WeightSource | null,
    opts: ModelOptions = {},
  ) {
    const lora = opts.lora;
    if (lora) validateLora(lora);
    const trainBase = opts.trainBase ?? !lora;
    const frozenType = opts.frozenType ?? "f32";
    const specs: Array<TensorSpec & { trainable: boolean; type: DType }> = llamaTensorSpecs(config).map(
      (s) => ({
        ...s,
        trainable: trainBase,
        type:
          !trainBase && frozenType !== "f32" && s.shape.length === 2 && frozenEmbedding(s.name, frozenType)
            ? frozenStorage(frozenType, s.shape)
            : "f32",
      }),
    );
    const extra: Array<TensorSpec & { trainable: boolean; type: DType }> = [];
    if (lora) {
      for (let l = 0; l < config.numLayers; l++) {
        for (const target of lora.targets) {
          const base = specs.find((s) => s.name === blockTensor(l, `${LORA_TARGET_TENSOR[target]}.weight`));
          if (!base) throw new Error(`no base tensor for LoRA target ${target}`);
          const [inDim, outDim] = base.shape as [number, number];
          const n = loraNames(l, target);
          extra.push({
            name: n.a,
            shape: [inDim, lora.rank],
            init: "normal",
            decay: false,
            trainable: true,
            type: "f32",
          });
          extra.push({
            name: n.b,
            shape: [lora.rank, outDim],
            init: "zero",
            decay: false,
            trainable: true,
            type: "f32",
          });
        }
      }
    }
    if (opts.regressionOutputs) {
      const k = opts.regressionOutputs;
      extra.push({
        name: HEAD_WEIGHT,
        shape: [config.hiddenSize, k],
        init: "normal",
        decay: true,
        trainable: true,
        type: "f32",
      });
      extra.push({ name: HEAD_BIAS, shape: [k], init: "zero", decay: false, trainable: true, type: "f32" });
    }
    const model = new LlamaModel(
      config,
      { ...opts, trainBase, ropeMode: opts.ropeMode ?? llamaRopeStyle(llamaArchFor(config)) },
      [...specs, ...extra],
    );
    model.#buffer = backend.allocTensors(model.#ctx);
    const rng = new Rng(opts.seed ?? 0);
    const std = opts.initStd ?? INIT_STD;
    for (const s of [...specs, ...extra]) {
      const given = source ? await source.get(s.name) : undefined;
      let data: Float32Array;
      if (given) {
        if (given.length !== numel(s.shape)) {
          throw new SteerlmError(
            `weight ${s.name}: expected ${numel(s.shape)} values [${s.shape}], got ${given.length}`,
          );
        }
        data = given;
      } else {
        if (source && !s.trainable && !extra.includes(s)) {
          throw new SteerlmError(`weight ${s.name} is missing from the model file`);
        }
        // LoRA A: N(0, 1/in) keeps the adapter's initial output scale independent of width (B starts at 0).
        data = initTensor(s, rng, s.name.endsWith(".lora_a") ? 1 / Math.sqrt(s.shape[0]!) : std);
      }
      model.setWeight(s.name, data);
    }
    return model;
  }

  tensor(name: string): Tensor {
    const t = this.#tensors.get(name);
    if (!t) throw new Error(`model has no tensor ${name}`);
    return t;
  }

  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  trainable(): Array<{ info: ParamInfo; tensor: Tensor }> {
    return this.params.filter((p) => p.trainable).map((info) => ({ info, tensor: this.tensor(info.name) }));
  }

  setWeight(name: string, data: Float32Array): void {
    const t = this.tensor(name);
    if (t.type === "q8_0") setData(t, quantizeQ8_0(data));
    else setData(t, t.type === "f16" ? f32ToF16(data) : t.type === "bf16" ? f32ToBf16(data) : data);
  }

  /** f32 copy of a weight (trainable weights are always f32; a frozen f16, bf16 or q8_0 one comes back widened). */
  getWeight(name: string): Float32Array {
    const t = this.tensor(name);
    if (t.type === "q8_0" || t.type === "f16" || t.type === "bf16")
      return dequantize(
        t.type === "q8_0" ? "Q8_0" : t.type === "f16" ? "F16" : "BF16",
        getBytes(t),
        t.nelements,
      );
    return getF32(t);
  }

  /** All trainable weights (the part of a checkpoint that changes). */
  trainableWeights(): Map<string, Float32Array> {
    return new Map(this.trainable().map(({ info, tensor }) => [info.name, getF32(tensor)]));
  }

  /** Frees the weights' memory. A second call does nothing; using the model afterwards throws. */
  free(): void {
    this.#buffer?.free();
    this.#buffer = undefined;
    this.#ctx.free();
  }

  [Symbol.dispose](): void {
    this.free();
  }

  /** Weights of block `l` as the graph components want them. */
  blockWeights(l: number): BlockWeights {
    const t = (part: string) => this.tensor(blockTensor(l, part));
    const opt = (part: string) => (this.has(blockTensor(l, part)) ? t(part) : undefined);
    const lora: Partial<Record<LoraTarget, LoraPair>> = {};
    const lo = this.options.lora;
    if (lo) {
      for (const target of lo.targets) {
        const n = loraNames(l, target);
        lora[target] = { a: this.tensor(n.a), b: this.tensor(n.b), scale: lo.alpha / lo.rank };
      }
    }
    return {
      attnNorm: t("attn_norm.weight"),
      ffnNorm: t("ffn_norm.weight"),
      attn: {
        wq: t("attn_q.weight"),
        wk: t("attn_k.weight"),
        wv: t("attn_v.weight"),
        wo: t("attn_output.weight"),
        bq: opt("attn_q.bias"),
        bk: opt("attn_k.bias"),
        bv: opt("attn_v.bias"),
        lora: { q: lora.q, k: lora.k, v: lora.v, o: lora.o },
        bf16: this.options.computeType === "bf16",
      },
      mlp: {
        gate: t("ffn_gate.weight"),
        up: t("ffn_up.weight"),
        down: t("ffn_down.weight"),
        lora: { gate: lora.gate, up: lora.up, down: lora.down },
        bf16: this.options.computeType === "bf16",
      },
    };
  }
}

function validateLora(l: LoraOptions): void {
  if (!Number.isInteger(l.rank) || l.rank < 1)
    throw new SteerlmError(`LoRA rank must be a positive integer, got ${l.rank}`);
  if (!(l.alpha > 0)) throw new SteerlmError(`LoRA alpha must be > 0, got ${l.alpha}`);
  if (l.targets.length === 0) throw new SteerlmError("LoRA needs at least one target module");
  for (const t of l.targets) {
    if (!LORA_TARGETS.includes(t))
      throw new SteerlmError(`unknown LoRA target "${t}" (one of ${LORA_TARGETS.join(", ")})`);
  }
}

/**
 * The forward pass: token ids → final normalised hidden states [D, N] and, unless skipped, logits [V, N].
 * N = T·B with token n = b·T + t. With a tape, every layer also records its backward step; `recompute`
 * keeps only each block's input for it and rebuilds the rest in the backward pass (recomputedBlock).
 */
export function buildForward(
  c: Context,
  model: LlamaModel,
  tokens: Tensor,
  inp: AttentionInputs,
  withLogits: boolean,
  tape?: Tape,
  recompute = false,
): { hidden: Tensor; logits?: Tensor } {
  const cfg = model.config;
  const emb = model.tensor("token_embd.weight");
  let x = c.getRows(emb, tokens); // [D, N]
  if (tape?.propagate(x, [], [emb])) {
    const x0 = x;
    tape.record(() => {
      const dx = tape.grad(x0);
      if (dx) tape.addParamGrad(emb, () => c.getRowsBack(dx, tokens, emb));
    });
  }
  for (let l = 0; l < cfg.numLayers; l++) {
    const w = model.blockWeights(l);
    x = tape && recompute ? recomputedBlock(c, cfg, w, x, inp, tape) : block(c, cfg, w, x, inp, tape);
  }
  const hidden = rmsNormGain(c, x, model.tensor("output_norm.weight"), cfg.rmsNormEps, tape); // [D, N]
  if (!withLogits) return { hidden };
  const bf16 = model.options.computeType === "bf16";
  return { hidden, logits: linear(c, hidden, outputWeight(model), undefined, undefined, tape, bf16) }; // [V, N]
}

/** The output projection [D, V]: the token embeddings when tied. */
export function outputWeight(model: LlamaModel): Tensor {
  return model.tensor(model.config.tiedEmbeddings ? "token_embd.weight" : "output.weight");
}
