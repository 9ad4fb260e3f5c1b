import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { isMap, isScalar, LineCounter, parseDocument } from "yaml";
import { LORA_TARGETS, type LoraTarget } from "../model/lora.js";
import type { FrozenType, ModelOptions } from "../model/model.js";
import type { OptimizerOptions } from "../train/trainer.js";
import { describe, InputError } from "../util/errors.js";

/**
 * Every setting of an SFT run, resolved in one place: built-in defaults, then the config file (YAML or
 * JSON), then command-line flags. `resolveSftConfig` also records where each value came from, so the run
 * can print every effective setting and say which ones were overridden.
 */
export interface SftConfig {
  /** SteerLM JSONL with the training conversations. */
  data: string;
  /** SteerLM JSONL for validation loss; none: no validation. */
  val: string | null;
  /** Run directory: config, tokenizer, checkpoints, metrics, loss curve. */
  output: string;
  /** New model from this model config (JSON/YAML file or inline object), with a tokenizer trained on the data. */
  init: string | ModelInitInput | null;
  /** Start from the weights and vocabulary of this GGUF instead. */
  model: string | null;
  /** Attribute schema of the value strings: built-in name or schema file. */
  schema: string;
  /** Vocabulary size of the tokenizer trained with `init` (byte symbols and control tokens included). */
  tokenizerVocabSize: number;
  /** The trained tokenizer gets one token per attribute setting (`humor:4`), see setup.ts. */
  attributeTokens: boolean;
  /** Train LoRA adapters on a frozen base instead of every weight. */
  lora: boolean;
  loraRank: number;
  loraAlpha: number;
  loraTargets: LoraTarget[];
  /**
   * Storage of the frozen base matrices under LoRA (q8_0 ≈ a quarter of f32's memory); null: the base
   * GGUF's own type when its matrices are Q8_0/F16/BF16, else f32 (decided when the run starts and stored,
   * so --resume keeps it).
   */
  frozen: FrozenType | null;
  /**
   * Type the large matrix products run in: "bf16" is mixed precision (bfloat16 GEMM operands, f32
   * accumulation; weights, gradients and AdamW stay f32), faster on CPUs with AVX512-BF16.
   * Stored with the run: --resume keeps it and refuses a different one.
   */
  computeType: ComputeType;
  /** Tokens per sequence; longer conversations are truncated (counted and reported). */
  seqLen: number;
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimiser step. */
  gradAccum: number;
  /** Optimiser steps; 0: as many as `epochs` passes over the data take. */
  steps: number;
  epochs: number;
  lr: number;
  warmupSteps: number;
  /** Cosine floor as a fraction of lr. */
  minLrRatio: number;
  weightDecay: number;
  /** Global gradient-norm clip; 0: off. */
  maxGradNorm: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Seeds the weights of a new model, LoRA A matrices and the data order. */
  seed: number;
  /** CPU threads for ggml. A resumed run must use the same count to stay bit-exact. */
  threads: number;
  /** Std of the random initial matrices of a new model. */
  initStd: number;
  /** Validation every N steps (and at the end); 0: only at the end. */
  evalEvery: number;
  /** Validation batches per evaluation; 0: the whole validation set. */
  evalBatches: number;
  /** Checkpoint every N steps (and always at the end); 0: only at the end. */
  checkpointEvery: number;
  /** Checkpoints kept on disk (the newest ones). */
  keepCheckpoints: number;
}

/** A model config for `init`: the Llama shape; the vocabulary size comes from the trained tokenizer. */
export interface ModelInitInput {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads?: number;
  ffnSize?: number;
  ropeTheta?: number;
  rmsNormEps?: number;
  tiedEmbeddings?: boolean;
  contextLength?: number;
}

export const SFT_DEFAULTS: Omit<SftConfig, "data" | "output"> = {
  val: null,
  init: null,
  model: null,
  schema: "steerlm",
  tokenizerVocabSize: 2048,
  attributeTokens: true,
  lora: false,
  loraRank: 8,
  loraAlpha: 16,
  loraTargets: ["q", "v"],
  frozen: null,
  computeType: "f32",
  seqLen: 256,
  batchSize: 8,
  gradAccum: 1,
  steps: 0,
  epochs: 1,
  lr: 1e-3,
  warmupSteps: 20,
  minLrRatio: 0.1,
  weightDecay: 0.01,
  maxGradNorm: 1,
  beta1: 0.9,
  beta2: 0.99,
  eps: 1e-8,
  seed: 0,
  threads: 2,
  initStd: 0.02,
  evalEvery: 50,
  evalBatches: 0,
  checkpointEvery: 100,
  keepCheckpoints: 2,
};

type Key = keyof SftConfig;
type Kind =
  | "string"
  | "path"
  | "int"
  | "posint"
  | "number"
  | "bool"
  | "targets"
  | "init"
  | "frozen"
  | "compute";

export const FROZEN_TYPES: readonly FrozenType[] = ["f32", "f16", "bf16", "q8_0"];

export type ComputeType = NonNullable<ModelOptions["computeType"]>;
export const COMPUTE_TYPES: readonly ComputeType[] = ["f32", "bf16"];

/**
 * ggml CPU variants (libggml-cpu-<variant>.so of node-llama-cpp) built with AVX512-BF16. Checked by
 * disassembling the 13 x64 variants node-llama-cpp 3.21.1 ships: only these three contain vdpbf16ps /
 * vcvtne2ps2bf16; every other variant converts bf16 to f32 in scalar/AVX code, slower than f32 GEMMs.
 */
export const BF16_NATIVE_CPU_VARIANTS: readonly string[] = ["zen4", "cooperlake", "sapphirerapids"];

/** A warning for a bf16 run on a ggml CPU variant without native bf16 instructions; null: nothing to say. */
export function computeTypeWarning(computeType: ComputeType, cpuVariant: string): string | null {
  if (computeType !== "bf16" || BF16_NATIVE_CPU_VARIANTS.includes(cpuVariant)) return null;
  return (
    `computeType bf16: ggml's CPU variant ${cpuVariant} has no native bfloat16 instructions ` +
    `(${BF16_NATIVE_CPU_VARIANTS.join(", ")} do), so ggml emulates them: the run will likely be slower than ` +
    "--compute f32"
  );
}

/** How each field is checked. `path` values in a config file are relative to that file. */
const FIELDS: Record<Key, Kind> = {
  data: "path",
  val: "path",
  output: "path",
  init: "init",
  model: "path",
  schema: "string",
  tokenizerVocabSize: "posint",
  attributeTokens: "bool",
  lora: "bool",
  loraRank: "posint",
  loraAlpha: "number",
  loraTargets: "targets",
  frozen: "frozen",
  computeType: "compute",
  seqLen: "posint",
  batchSize: "posint",
  gradAccum: "posint",
  steps: "int",
  epochs: "posint",
  lr: "number",
  warmupSteps: "int",
  minLrRatio: "number",
  weightDecay: "number",
  maxGradNorm: "number",
  beta1: "number",
  beta2: "number",
  eps: "number",
  seed: "int",
  threads: "posint",
  initStd: "number",
  evalEvery: "int",
  evalBatches: "int",
  checkpointEvery: "int",
  keepCheckpoints: "posint",
};

export const SFT_FIELDS = Object.keys(FIELDS) as Key[];

/** "model": decided from the base GGUF at the start of the run (`frozen`). */
export type Source = "default" | "config" | "flag" | "model";

export interface ResolvedSftConfig {
  config: SftConfig;
  sources: Record<Key, Source>;
  /** The config file, if any. */
  file: string | null;
}

/** A parsed YAML/JSON mapping plus the line of each top-level key, for located errors. */
export interface ConfigDocument {
  file: string;
  values: Record<string, unknown>;
  lineOf(key: string): number | undefined;
}

/** Reads a YAML or JSON file whose top level must be a mapping. */
export function readConfigDocument(file: string): ConfigDocument {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new InputError(
      `cannot read the config file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      {
        file,
      },
    );
  }
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.pos ? counter.linePos(e.pos[0]).line : undefined;
    throw new InputError(`not valid YAML/JSON: ${e.message.split("\n")[0]}`, { file, line });
  }
  const lines = new Map<string, number>();
  if (doc.contents !== null && !isMap(doc.contents)) {
    throw new InputError("the config must be a mapping of setting names to values", { file, line: 1 });
  }
  for (const item of doc.contents?.items ?? []) {
    if (isScalar(item.key) && item.key.range)
      lines.set(String(item.key.value), counter.linePos(item.key.range[0]).line);
  }
  const values = (doc.toJS() ?? {}) as Record<string, unknown>;
  return { file, values, lineOf: (k) => lines.get(k) };
}

/**
 * Defaults < config file < flags. `flags` holds only what the user gave on the command line (already
 * camelCased; paths relative to the working directory). Unknown or mistyped settings are InputErrors
 * naming the file, line and field.
 */
export function resolveSftConfig(
  flags: Partial<Record<Key, unknown>>,
  configFile?: string,
): ResolvedSftConfig {
  const merged: Record<string, unknown> = { ...SFT_DEFAULTS };
  const sources = Object.fromEntries(SFT_FIELDS.map((k) => [k, "default"])) as Record<Key, Source>;
  if (configFile) {
    const doc = readConfigDocument(configFile);
    const base = dirname(resolve(configFile));
    for (const [key, raw] of Object.entries(doc.values)) {
      const place = { file: configFile, line: doc.lineOf(key), field: key };
      if (!(key in FIELDS)) {
        throw new InputError("unknown setting", place, `settings are: ${SFT_FIELDS.join(", ")}`);
      }
      merged[key] = checkField(key as Key, raw, place, base);
      sources[key as Key] = "config";
    }
  }
  for (const [key, raw] of Object.entries(flags)) {
    if (raw === undefined) continue;
    if (!(key in FIELDS)) throw new InputError("unknown setting", { field: key });
    merged[key] = checkField(key as Key, raw, { field: flagName(key as Key) }, process.cwd());
    sources[key as Key] = "flag";
  }
  const where = configFile ? { file: configFile } : {};
  for (const key of ["data", "output"] as const) {
    if (typeof merged[key] !== "string") {
      throw new InputError(`is required (--${kebab(key)} or "${key}" in the config)`, {
        ...where,
        field: key,
      });
    }
  }
  const config = merged as unknown as SftConfig;
  checkConsistency(config, sources, configFile ?? null);
  return { config, sources, file: configFile ?? null };
}

function checkField(
  key: Key,
  raw: unknown,
  place: { file?: string; line?: number; field: string },
  base: string,
): unknown {
  const kind = FIELDS[key];
  const bad = (what: string) => new InputError(`expected ${what}, got ${describe(raw)}`, place);
  const nullable = key === "val" || key === "init" || key === "model" || key === "frozen";
  if (raw === null && nullable) return null;
  switch (kind) {
    case "path":
      if (typeof raw !== "string" || raw === "") throw bad("a file path");
      return resolve(base, raw);
    case "string":
      if (typeof raw !== "string" || raw === "") throw bad("a string");
      return raw;
    case "bool":
      if (typeof raw !== "boolean") throw bad("true or false");
      return raw;
    case "number":
      if (typeof raw !== "number" || !Number.isFinite(raw) || raw < 0) throw bad("a number ≥ 0");
      return raw;
    case "int":
      if (typeof raw !== "number" || !Number.isInteger(raw) || raw < 0) throw bad("an integer ≥ 0");
      return raw;
    case "posint":
      if (typeof raw !== "number" || !Number.isInteger(raw) || raw < 1) throw bad("an integer ≥ 1");
      return raw;
    case "targets": {
      const list = typeof raw === "string" ? raw.split(",").map((s) => s.trim()) : raw;
      if (!Array.isArray(list) || list.length === 0)
        throw bad(`a list of LoRA targets (${LORA_TARGETS.join(", ")})`);
      for (const t of list) {
        if (!(LORA_TARGETS as readonly unknown[]).includes(t)) {
          throw new InputError(
            `unknown LoRA target ${describe(t)} (one of ${LORA_TARGETS.join(", ")})`,
            place,
          );
        }
      }
      return list;
    }
    case "frozen":
      if (typeof raw !== "string" || !(FROZEN_TYPES as readonly string[]).includes(raw))
        throw bad(`one of ${FROZEN_TYPES.join(", ")}`);
      return raw;
    case "compute":
      if (typeof raw !== "string" || !(COMPUTE_TYPES as readonly string[]).includes(raw)) {
        throw new InputError(
          `expected one of ${COMPUTE_TYPES.join(", ")}, got ${describe(raw)}`,
          place,
          "bf16 is mixed precision: bfloat16 matrix products, f32 weights, gradients and optimiser",
        );
      }
      return raw;
    case "init":
      if (typeof raw === "string" && raw !== "") return resolve(base, raw);
      if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) return raw;
      throw bad("a model-config file path or a mapping");
  }
}

function checkConsistency(c: SftConfig, sources: Record<Key, Source>, file: string | null): void {
  const place = (field: Key) => ({
    file: sources[field] === "config" ? (file ?? undefined) : undefined,
    field,
  });
  if ((c.init === null) === (c.model === null)) {
    throw new InputError(
      c.init === null
        ? "give a model: --init <model-config> (new model) or --model <model.gguf>"
        : "give only one of init and model",
      place(c.init === null ? "init" : "model"),
    );
  }
  if (c.lora && c.init !== null) {
    throw new InputError(
      "LoRA adapts an existing model; a new model (init) trains every weight",
      place("lora"),
    );
  }
  if (c.frozen !== null && !c.lora) {
    throw new InputError(
      `frozen storage ${c.frozen} needs LoRA: without it every weight is trained in f32`,
      place("frozen"),
      "add --lora (lora: true), or drop frozen",
    );
  }
  if (c.beta1 >= 1) throw new InputError(`must be < 1, got ${c.beta1}`, place("beta1"));
  if (c.beta2 >= 1) throw new InputError(`must be < 1, got ${c.beta2}`, place("beta2"));
  if (c.seqLen < 8) throw new InputError(`must be at least 8, got ${c.seqLen}`, place("seqLen"));
  if (c.lr * c.weightDecay > 1) throw new InputError("lr × weightDecay must be ≤ 1", place("weightDecay"));
}

/** Loads the Llama shape of a new model (file or inline mapping) with located errors. */
export function readModelInit(init: string | ModelInitInput): { input: ModelInitInput; source: string } {
  let values: Record<string, unknown>;
  let lineOf: (k: string) => number | undefined = () => undefined;
  let source = "init";
  if (typeof init === "string") {
    const doc = readConfigDocument(init);
    values = doc.values;
    lineOf = doc.lineOf;
    source = init;
  } else {
    values = init as unknown as Record<string, unknown>;
  }
  const ints = ["hiddenSize", "numLayers", "numHeads", "numKvHeads", "ffnSize", "contextLength"];
  const nums = ["ropeTheta", "rmsNormEps"];
  for (const [k, v] of Object.entries(values)) {
    const place = { file: source, line: lineOf(k), field: k };
    if (ints.includes(k)) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
        throw new InputError(`expected an integer ≥ 1, got ${describe(v)}`, place);
      }
    } else if (nums.includes(k)) {
      if (typeof v !== "number" || !(v > 0))
        throw new InputError(`expected a number > 0, got ${describe(v)}`, place);
    } else if (k === "tiedEmbeddings") {
      if (typeof v !== "boolean") throw new InputError(`expected true or false, got ${describe(v)}`, place);
    } else {
      const hint =
        k === "vocabSize" ? "the vocabulary size is the tokenizer's: set tokenizerVocabSize" : undefined;
      throw new InputError(
        "unknown model setting",
        place,
        hint ?? `settings are: ${[...ints, ...nums, "tiedEmbeddings"].join(", ")}`,
      );
    }
  }
  for (const k of ["hiddenSize", "numLayers", "numHeads"]) {
    if (values[k] === undefined) throw new InputError("is required", { file: source, field: k });
  }
  return { input: values as unknown as ModelInitInput, source };
}

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The command-line flag of a setting: `--kebab-case` of its name, except the shorter `--compute`. */
export function flagName(key: Key): string {
  return key === "computeType" ? "--compute" : `--${kebab(key)}`;
}

/** One line per setting, with where its value came from (printed at the start of a run). */
export function formatSettings(r: ResolvedSftConfig): string[] {
  const width = Math.max(...SFT_FIELDS.map((k) => k.length));
  return SFT_FIELDS.map((k) => {
    const v = r.config[k];
    const shown = typeof v === "object" && v !== null && !Array.isArray(v) ? JSON.stringify(v) : String(v);
    const from =
      r.sources[k] === "default"
        ? ""
        : `  (${{ flag: "flag", config: "config file", model: "the base GGUF's storage" }[r.sources[k]]})`;
    return `  ${k.padEnd(width)}  ${shown}${from}`;
  });
}

/** The kind of value a setting takes (the CLI builds its flags from this). */
export function settingKind(key: Key): Kind {
  return FIELDS[key];
}

/** A command-line string as the setting's type; bad numbers are InputErrors naming the flag. */
export function parseFlagValue(key: Key, text: string | boolean): unknown {
  const kind = FIELDS[key];
  if (typeof text === "boolean") return text;
  if (kind === "int" || kind === "posint" || kind === "number") {
    const n = Number(text);
    if (text.trim() === "" || !Number.isFinite(n)) {
      throw new InputError(`expected a number, got ${describe(text)}`, { field: flagName(key) });
    }
    return n;
  }
  return text;
}

/** The trainer's optimizer settings from a run's config (shared by SFT and the attribute model). */
export function optimizerOptions(cfg: SftConfig, totalSteps: number): OptimizerOptions {
  return {
    lr: cfg.lr,
    warmupSteps: cfg.warmupSteps,
    totalSteps,
    minLrRatio: cfg.minLrRatio,
    weightDecay: cfg.weightDecay,
    beta1: cfg.beta1,
    beta2: cfg.beta2,
    eps: cfg.eps,
    maxGradNorm: cfg.maxGradNorm,
  };
}
