import { InputError } from "../util/errors.js";

/**
 * One typed config for every Llama-family model steerlm builds, trains or exports (Llama, Mistral,
 * Qwen2, SmolLM). Resolved in one place (`resolveLlamaConfig`); everything downstream trusts it.
 */
export interface LlamaConfig {
  /** Vocabulary size V (rows of the embedding table). */
  vocabSize: number;
  /** Hidden size D. */
  hiddenSize: number;
  /** Number of transformer blocks L. */
  numLayers: number;
  /** Query heads H; head dim is hiddenSize / numHeads unless headDim is given. */
  numHeads: number;
  /** Key/value heads (GQA); equals numHeads for plain multi-head attention. */
  numKvHeads: number;
  /** Per-head dimension; default hiddenSize / numHeads. */
  headDim: number;
  /** SwiGLU inner size F. */
  ffnSize: number;
  /** RoPE base frequency (Llama-2: 10000, Llama-3: 500000). */
  ropeTheta: number;
  /** RMSNorm epsilon (Llama-2: 1e-5, SmolLM: 1e-5, Qwen2: 1e-6). */
  rmsNormEps: number;
  /** Output projection shares the token-embedding matrix (SmolLM, Qwen2-0.5B). */
  tiedEmbeddings: boolean;
  /** Bias on the q/k/v projections (Qwen2). */
  qkvBias: boolean;
  /** Longest sequence the model is meant for (GGUF `context_length`). */
  contextLength: number;
}

export type LlamaConfigInput = Omit<
  Partial<LlamaConfig>,
  "vocabSize" | "hiddenSize" | "numLayers" | "numHeads"
> &
  Pick<LlamaConfig, "vocabSize" | "hiddenSize" | "numLayers" | "numHeads">;

/** Fills defaults and checks every invariant the graphs rely on, so shape errors surface here, not in ggml. */
export function resolveLlamaConfig(input: LlamaConfigInput, source = "model config"): LlamaConfig {
  const cfg: LlamaConfig = {
    numKvHeads: input.numHeads,
    headDim: Math.floor(input.hiddenSize / input.numHeads),
    ffnSize: 4 * input.hiddenSize,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    tiedEmbeddings: false,
    qkvBias: false,
    contextLength: 2048,
    ...stripUndefined(input),
    vocabSize: input.vocabSize,
    hiddenSize: input.hiddenSize,
    numLayers: input.numLayers,
    numHeads: input.numHeads,
  };
  const positive: Array<keyof LlamaConfig> = [
    "vocabSize",
    "hiddenSize",
    "numLayers",
    "numHeads",
    "numKvHeads",
    "headDim",
    "ffnSize",
    "contextLength",
  ];
  for (const key of positive) {
    const v = cfg[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new InputError(`must be a positive integer, got ${String(v)}`, { file: source, field: key });
    }
  }
  if (cfg.numHeads % cfg.numKvHeads !== 0) {
    throw new InputError(`numHeads (${cfg.numHeads}) must be a multiple of numKvHeads (${cfg.numKvHeads})`, {
      file: source,
      field: "numKvHeads",
    });
  }
  if (cfg.headDim % 2 !== 0) {
    throw new InputError(`head dim must be even for RoPE, got ${cfg.headDim}`, {
      file: source,
      field: "headDim",
    });
  }
  if (!(cfg.ropeTheta > 0)) throw new InputError("must be > 0", { file: source, field: "ropeTheta" });
  if (!(cfg.rmsNormEps > 0)) throw new InputError("must be > 0", { file: source, field: "rmsNormEps" });
  return cfg;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
