/**
 * A Hugging Face `config.json` (transformers' LlamaConfig, MistralConfig, Qwen2Config) mapped to our
 * LlamaConfig plus what only the converter needs (the llama.cpp architecture, RoPE scaling, whether q/k
 * rows are permuted). Everything we cannot represent faithfully is refused here, naming the field and
 * value, before a single tensor is read.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type AttributeSchema, validateSchema } from "../data/attributes.js";
import { templateText } from "../data/template.js";
import { type LlamaConfig, resolveLlamaConfig } from "../model/config.js";
import { type LlamaArch, llamaRopeStyle } from "../model/llama-gguf.js";
import { describe, InputError } from "../util/errors.js";
import { log } from "../util/log.js";

export type HfFamily = "llama" | "mistral" | "qwen2";

/** RoPE scaling as llama.cpp represents it (rope.scaling.* metadata, or rope_freqs for Llama 3). */
export type RopeScaling =
  | { type: "linear"; factor: number }
  | {
      type: "yarn";
      factor: number;
      originalContextLength: number;
      extFactor?: number;
      attnFactor?: number;
      betaFast?: number;
      betaSlow?: number;
    }
  | {
      type: "llama3";
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalContextLength: number;
    };

export interface HfModelSpec {
  /** The config.json this came from (for messages). */
  source: string;
  family: HfFamily;
  /** The architecture written to GGUF: Llama, Mistral and SmolLM are "llama"; Qwen2 is "qwen2". */
  arch: LlamaArch;
  config: LlamaConfig;
  ropeScaling: RopeScaling | null;
  /**
   * HF rotates q/k halves (i, i + d/2); llama.cpp's "llama" architecture rotates adjacent pairs, so the
   * converter reorders the rows of q_proj/k_proj per head. "qwen2" rotates halves in llama.cpp too.
   */
  permuteQk: boolean;
  /** The SteerLM schema a steerlm export stored under the `steerlm` key; null for other models. */
  schema: AttributeSchema | null;
}

const ARCHITECTURES: Readonly<Record<string, HfFamily>> = {
  LlamaForCausalLM: "llama",
  MistralForCausalLM: "mistral",
  Qwen2ForCausalLM: "qwen2",
};

/** transformers' defaults where config.json may omit a field (configuration_{llama,mistral,qwen2}.py). */
const DEFAULTS: Readonly<Record<HfFamily, { maxPositions: number; rmsNormEps: number; ropeTheta: number }>> =
  {
    llama: { maxPositions: 2048, rmsNormEps: 1e-6, ropeTheta: 10000 },
    mistral: { maxPositions: 4096 * 32, rmsNormEps: 1e-6, ropeTheta: 10000 },
    qwen2: { maxPositions: 32768, rmsNormEps: 1e-6, ropeTheta: 10000 },
  };

type Json = Record<string, unknown>;

export function readHfConfig(dir: string): HfModelSpec {
  const source = join(dir, "config.json");
  return mapHfConfig(readConfigJson(dir), source);
}

/** The schema a steerlm export's config.json keeps under `steerlm` (null: none), the rest unread. */
export function hfSchema(dir: string): AttributeSchema | null {
  return readSteerlmKey(readConfigJson(dir).steerlm, join(dir, "config.json"));
}

function readConfigJson(dir: string): Json {
  const source = join(dir, "config.json");
  if (!existsSync(source)) throw new InputError("no config.json in the model directory", { file: dir });
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(source, "utf8"));
  } catch (e) {
    throw new InputError(`not valid JSON: ${(e as Error).message}`, { file: source });
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new InputError("expected a JSON object", { file: source });
  }
  return json as Json;
}

/** The mapping itself, separate from file reading so that tests can feed it objects. */
export function mapHfConfig(c: Json, source = "config.json"): HfModelSpec {
  const fail = (field: string, what: string, hint?: string) =>
    new InputError(what, { file: source, field }, hint);
  const family = familyOf(c, fail);
  const d = DEFAULTS[family];

  const int = (field: string, fallback?: number): number => {
    const v = c[field] ?? fallback;
    if (v === undefined) throw fail(field, "is required");
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw fail(field, `expected a positive integer, got ${describe(v)}`);
    }
    return v;
  };
  const positive = (field: string, fallback: number): number => {
    const v = c[field] ?? fallback;
    if (typeof v !== "number" || !(v > 0))
      throw fail(field, `expected a positive number, got ${describe(v)}`);
    return v;
  };
  const flag = (field: string, fallback: boolean): boolean => {
    const v = c[field] ?? fallback;
    if (typeof v !== "boolean") throw fail(field, `expected true or false, got ${describe(v)}`);
    return v;
  };

  if (c.quantization_config !== undefined && c.quantization_config !== null) {
    const method = (c.quantization_config as Json).quant_method;
    throw fail(
      "quantization_config",
      `quantised checkpoints are not supported (quant_method ${describe(method)})`,
      "convert the original float16/bfloat16/float32 checkpoint",
    );
  }
  for (const moe of ["num_local_experts", "num_experts"]) {
    if (typeof c[moe] === "number" && c[moe]! > 0) {
      throw fail(moe, `mixture-of-experts models are not supported (${moe} = ${c[moe]})`);
    }
  }
  const act = c.hidden_act ?? "silu";
  if (act !== "silu") throw fail("hidden_act", `only "silu" (SwiGLU) is supported, got ${describe(act)}`);
  if (flag("mlp_bias", false)) throw fail("mlp_bias", "MLP biases are not supported (mlp_bias = true)");
  if (family !== "qwen2" && flag("attention_bias", false)) {
    // Llama's attention_bias also biases o_proj, which llama.cpp's llama loader and our engine lack.
    throw fail(
      "attention_bias",
      "attention biases on a Llama model are not supported (attention_bias = true)",
    );
  }
  const partial = c.partial_rotary_factor ?? 1;
  if (partial !== 1)
    throw fail("partial_rotary_factor", `partial RoPE is not supported (${describe(partial)})`);
  if (family === "qwen2" && flag("use_sliding_window", false)) {
    throw fail("use_sliding_window", "sliding-window attention is not supported (use_sliding_window = true)");
  }

  const hiddenSize = int("hidden_size");
  const numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw fail("num_key_value_heads", `${numKvHeads} does not divide num_attention_heads (${numHeads})`);
  }
  const headDimRaw = c.head_dim ?? null;
  let headDim = hiddenSize / numHeads;
  if (headDimRaw !== null) headDim = int("head_dim");
  else if (!Number.isInteger(headDim)) {
    throw fail("hidden_size", `${hiddenSize} is not a multiple of num_attention_heads (${numHeads})`);
  }
  let contextLength = int("max_position_embeddings", d.maxPositions);
  const window = c.sliding_window;
  if (family === "mistral" && typeof window === "number" && window < contextLength) {
    // llama.cpp's llama architecture attends to the whole context; within `window` tokens that is exactly
    // Mistral's sliding window, so the context length is capped there to keep outputs identical.
    log.warn(
      `${source}: sliding_window ${window} < max_position_embeddings ${contextLength}: context_length set to ${window}`,
    );
    contextLength = window;
  }

  const rope = readRope(c, fail, d.ropeTheta);
  const config = resolveLlamaConfig(
    {
      vocabSize: int("vocab_size"),
      hiddenSize,
      numLayers: int("num_hidden_layers"),
      numHeads,
      numKvHeads,
      headDim,
      ffnSize: int("intermediate_size"),
      ropeTheta: rope.theta,
      rmsNormEps: positive("rms_norm_eps", d.rmsNormEps),
      tiedEmbeddings: flag("tie_word_embeddings", false),
      qkvBias: family === "qwen2",
      contextLength,
    },
    source,
  );
  const arch: LlamaArch = family === "qwen2" ? "qwen2" : "llama";
  if (arch === "qwen2" && headDim * numHeads !== hiddenSize) {
    throw fail(
      "head_dim",
      `llama.cpp's qwen2 needs head_dim × num_attention_heads = hidden_size, got ${headDim}`,
    );
  }
  return {
    source,
    family,
    arch,
    config,
    ropeScaling: rope.scaling,
    permuteQk: llamaRopeStyle(arch) === "normal",
    schema: readSteerlmKey(c.steerlm, source),
  };
}

/** The `steerlm` key that `toHfConfig` writes: `{schema, template}`; only the schema is read back. */
function readSteerlmKey(value: unknown, source: string): AttributeSchema | null {
  if (value === undefined || value === null) return null;
  const schema = (value as { schema?: unknown }).schema;
  if (typeof value !== "object" || Array.isArray(value) || schema === undefined) {
    throw new InputError(`expected {"schema": {...}, ...}, got ${describe(value)}`, {
      file: source,
      field: "steerlm",
    });
  }
  return validateSchema(schema, `${source}: steerlm.schema`);
}

function familyOf(c: Json, fail: (f: string, w: string, h?: string) => InputError): HfFamily {
  const archs = c.architectures;
  const supported = Object.keys(ARCHITECTURES).join(", ");
  if (Array.isArray(archs) && archs.length > 0) {
    const family = ARCHITECTURES[String(archs[0])];
    if (family === undefined) {
      throw fail(
        "architectures",
        `architecture ${JSON.stringify(archs[0])} is not supported`,
        `supported: ${supported} (SmolLM is LlamaForCausalLM)`,
      );
    }
    return family;
  }
  const type = c.model_type;
  if (type === "llama" || type === "mistral" || type === "qwen2") return type;
  throw fail(
    "model_type",
    `model type ${describe(type)} is not supported and no architectures are given`,
    `supported: ${supported}`,
  );
}

/**
 * rope_theta and rope_scaling (transformers < 5) or rope_parameters (transformers 5), mapped as llama.cpp's
 * convert_hf_to_gguf.py maps them: linear and yarn become rope.scaling.* metadata, llama3 becomes per-
 * dimension frequency factors; anything else is refused rather than silently dropped.
 */
function readRope(
  c: Json,
  fail: (f: string, w: string, h?: string) => InputError,
  defaultTheta: number,
): { theta: number; scaling: RopeScaling | null } {
  const field = c.rope_parameters !== undefined ? "rope_parameters" : "rope_scaling";
  const p = (c[field] ?? {}) as Json;
  if (typeof p !== "object" || Array.isArray(p)) throw fail(field, `expected an object, got ${describe(p)}`);
  const thetaRaw = p.rope_theta ?? c.rope_theta ?? defaultTheta;
  if (typeof thetaRaw !== "number" || !(thetaRaw > 0)) {
    throw fail("rope_theta", `expected a positive number, got ${describe(thetaRaw)}`);
  }
  const type = p.rope_type ?? p.type ?? "default";
  const num = (key: string, fallback?: unknown): number => {
    const v = p[key] ?? fallback;
    if (typeof v !== "number" || !(v > 0))
      throw fail(`${field}.${key}`, `expected a positive number, got ${describe(v)}`);
    return v;
  };
  const opt = (key: string): number | undefined => (typeof p[key] === "number" ? p[key]! : undefined);
  const origCtx = () => num("original_max_position_embeddings", c.original_max_position_embeddings);
  let scaling: RopeScaling | null;
  switch (type) {
    case "default":
      scaling = null;
      break;
    case "linear":
      scaling = { type: "linear", factor: num("factor") };
      break;
    case "yarn": {
      scaling = { type: "yarn", factor: num("factor"), originalContextLength: origCtx() };
      const extFactor = opt("extrapolation_factor");
      const attnFactor = opt("attention_factor") ?? opt("attn_factor");
      const betaFast = opt("beta_fast");
      const betaSlow = opt("beta_slow");
      if (extFactor !== undefined) scaling.extFactor = extFactor;
      if (attnFactor !== undefined) scaling.attnFactor = attnFactor;
      if (betaFast !== undefined) scaling.betaFast = betaFast;
      if (betaSlow !== undefined) scaling.betaSlow = betaSlow;
      break;
    }
    case "llama3":
      scaling = {
        type: "llama3",
        factor: num("factor", 8),
        lowFreqFactor: num("low_freq_factor", 1),
        highFreqFactor: num("high_freq_factor", 4),
        originalContextLength: num("original_max_position_embeddings", 8192),
      };
      break;
    default:
      throw fail(
        `${field}.rope_type`,
        `RoPE scaling ${describe(type)} is not supported`,
        "supported: linear, yarn, llama3 (what llama.cpp implements for these architectures)",
      );
  }
  return { theta: thetaRaw, scaling };
}

/**
 * Llama 3's per-dimension RoPE frequency divisors (transformers' `_compute_llama3_parameters`, which
 * llama.cpp stores as the rope_freqs tensor): long wavelengths are slowed by `factor`, short ones kept,
 * and the band between is interpolated smoothly. One value per rotated pair (headDim / 2).
 */
export function llama3RopeFactors(
  scaling: Extract<RopeScaling, { type: "llama3" }>,
  headDim: number,
  theta: number,
): Float32Array {
  const out = new Float32Array(headDim / 2);
  const lowWavelen = scaling.originalContextLength / scaling.lowFreqFactor;
  const highWavelen = scaling.originalContextLength / scaling.highFreqFactor;
  for (let i = 0; i < out.length; i++) {
    const freq = 1 / theta ** ((2 * i) / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = scaling.factor;
    else {
      const smooth =
        (scaling.originalContextLength / wavelen - scaling.lowFreqFactor) /
        (scaling.highFreqFactor - scaling.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / scaling.factor + smooth);
    }
  }
  return out;
}

export type HfDtype = "float32" | "float16" | "bfloat16";

export interface HfConfigOptions {
  /** The dtype the safetensors hold (`torch_dtype`). */
  dtype: HfDtype;
  bosId: number | null;
  eosId: number | null;
  /** The SteerLM schema, stored under the `steerlm` key with the template it fills. */
  schema: AttributeSchema | null;
}

/**
 * The config.json of a LlamaConfig: the inverse of `mapHfConfig` (which reads it back to the same config).
 * Qwen2ForCausalLM when the model has q/k/v biases (Llama's attention_bias would bias o_proj too), else
 * LlamaForCausalLM. Written in the keys both transformers 4.x and 5.x read: 5.x still accepts
 * `torch_dtype` and turns `rope_theta` into its `rope_parameters`, while 4.x would ignore those two.
 */
export function toHfConfig(config: LlamaConfig, opts: HfConfigOptions): Record<string, unknown> {
  const qwen2 = config.qkvBias;
  const out: Record<string, unknown> = {
    architectures: [qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
    model_type: qwen2 ? "qwen2" : "llama",
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.ffnSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    head_dim: config.headDim,
    hidden_act: "silu",
    max_position_embeddings: config.contextLength,
    rms_norm_eps: shortestF32(config.rmsNormEps),
    rope_theta: shortestF32(config.ropeTheta),
    rope_scaling: null,
    tie_word_embeddings: config.tiedEmbeddings,
    attention_dropout: 0,
    ...(qwen2
      ? { use_sliding_window: false, sliding_window: null }
      : { attention_bias: false, mlp_bias: false }),
    bos_token_id: opts.bosId,
    eos_token_id: opts.eosId,
    use_cache: true,
    torch_dtype: opts.dtype,
  };
  if (opts.schema !== null) out.steerlm = { schema: opts.schema, template: templateText() };
  return out;
}

/**
 * A GGUF stores eps and theta as float32 (1e-5 becomes 9.99999974737875e-06); a float32 value is written as
 * the shortest decimal that rounds to it, as the config it came from most likely had it. Other values stay.
 */
function shortestF32(v: number): number {
  if (Math.fround(v) !== v) return v;
  for (let digits = 1; digits < 9; digits++) {
    const d = Number(v.toPrecision(digits));
    if (Math.fround(d) === v) return d;
  }
  return v;
}
