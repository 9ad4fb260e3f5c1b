import { resolve } from "node:path";
import { DEFAULT_SCHEMA } from "../data/attributes.js";
import { LORA_TARGETS, type LoraTarget } from "../model/lora.js";
import type { FrozenType, ModelOptions } from "../model/model.js";
import { INIT_STD } from "../model/weights.js";
import { describe, InputError, type Place } from "../util/errors.js";

/**
 * Every setting of a training run (SFT, the APMs, SteerLM 2.0), declared once: its kind, its default and
 * why, and its help text. The TypeScript type (SftConfig), the defaults, the value checks, the printed
 * settings (in this order) and the command-line flags (src/cli/sft-flags.ts) all come from SETTINGS.
 * Settings that relate to each other are checked in config.ts.
 */

export type ComputeType = NonNullable<ModelOptions["computeType"]>;
export const COMPUTE_TYPES: readonly ComputeType[] = ["f32", "bf16"];
export const FROZEN_TYPES: readonly FrozenType[] = ["f32", "f16", "bf16", "q8_0"];

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

/** The kinds of value, and the type each one gives a setting. */
interface KindTypes {
  /** A file path; in a config file, relative to that file. */
  path: string;
  string: string;
  /** An integer ≥ 0. */
  int: number;
  /** An integer ≥ 1. */
  posint: number;
  /** A finite number ≥ 0. */
  number: number;
  bool: boolean;
  targets: LoraTarget[];
  /** A model-config file or an inline mapping. */
  init: string | ModelInitInput;
  frozen: FrozenType;
  compute: ComputeType;
}
export type SettingKind = keyof KindTypes;

/** A setting is required, or has a default with a one-line reason for it. null defaults make it optional. */
export type Setting = {
  kind: SettingKind;
  help: string;
  /** The flag's name when it is not the kebab-case of the setting's. */
  flag?: string;
  /** A one-letter short flag. */
  short?: string;
} & ({ required: true } | { default: unknown; why: string });

export const SETTINGS = {
  data: { kind: "path", required: true, help: "training data (SteerLM JSONL)" },
  val: {
    kind: "path",
    default: null,
    why: "validation is optional: without a file only the training loss is reported",
    help: "validation data (SteerLM JSONL)",
  },
  allowUnlabeled: {
    kind: "bool",
    default: false,
    why: "a conversation without labels is usually data not yet annotated; plain SFT data sets it",
    help: "train on conversations without attribute labels too (no value line: plain SFT)",
  },
  output: {
    kind: "path",
    required: true,
    short: "o",
    help: "run directory (settings, tokenizer, checkpoints, metrics, loss.png)",
  },
  init: {
    kind: "init",
    default: null,
    why: "exactly one of init and model says where the model comes from",
    help: "train a new model from this model config (JSON/YAML), with a tokenizer trained on the data",
  },
  model: {
    kind: "path",
    default: null,
    why: "exactly one of init and model says where the model comes from",
    help: "start from this Llama-family GGUF or Hugging Face directory (safetensors + config.json + tokenizer.json)",
  },
  schema: {
    kind: "string",
    default: DEFAULT_SCHEMA,
    why: "SteerLM's nine attributes, in NeMo's order (a --model that carries a schema keeps its own)",
    help: "attribute schema of the value strings: a built-in name or a schema file; unset, a steerlm --model keeps its own",
  },
  tokenizerVocabSize: {
    kind: "posint",
    default: 2048,
    why: "a small model would otherwise spend most of its parameters on the embedding",
    help: "vocabulary size of the tokenizer trained with init (byte symbols and control tokens included)",
  },
  attributeTokens: {
    kind: "bool",
    default: true,
    why: "as one token, a setting is read with one attention lookup, which small models learn early (setup.ts)",
    help: "one token per attribute setting (humor:4) in a tokenizer trained with init",
  },
  lora: {
    kind: "bool",
    default: false,
    why: "a new model trains every weight; LoRA is chosen to adapt a large base",
    help: "train LoRA adapters on the frozen model instead of every weight",
  },
  loraRank: {
    kind: "posint",
    default: 8,
    why: "a common LoRA rank: small adapters",
    help: "LoRA rank r",
  },
  loraAlpha: {
    kind: "number",
    default: 16,
    why: "alpha = 2·rank, a common scale (the update is alpha/r · B·A)",
    help: "LoRA scale alpha",
  },
  loraTargets: {
    kind: "targets",
    default: ["q", "v"],
    why: "the LoRA paper's choice: the query and value projections",
    help: "comma-separated: q,k,v,o,gate,up,down",
  },
  frozen: {
    kind: "frozen",
    default: null,
    why: "the base GGUF's own storage (Q8_0/F16/BF16; bf16 for F32 and Hugging Face weights), decided when the run starts and stored",
    help: "storage of the frozen base under LoRA: f32|f16|bf16|q8_0 (unset: the base GGUF's own, bf16 for an f32 base)",
  },
  recompute: {
    kind: "bool",
    default: false,
    why: "speed first: rebuilding each block's activations in the backward pass costs one more forward per step",
    help: "keep only each block's input and recompute its activations in the backward pass (same gradients, less memory)",
  },
  computeType: {
    kind: "compute",
    default: "f32",
    flag: "compute",
    why: "exact f32 products; bf16 only pays off on CPUs with AVX512-BF16 (stored: --resume keeps it)",
    help: "f32|bf16: bf16 = mixed precision (bfloat16 GEMMs; f32 weights, gradients, AdamW), faster on AVX512-BF16 CPUs; config key computeType",
  },
  seqLen: {
    kind: "posint",
    default: 256,
    why: "short sequences keep CPU steps fast; longer conversations are cut and counted",
    help: "tokens per sequence",
  },
  batchSize: {
    kind: "posint",
    default: 8,
    why: "small enough for CPU memory and step time",
    help: "sequences per micro-batch",
  },
  gradAccum: {
    kind: "posint",
    default: 1,
    why: "no accumulation; raise it for a larger batch in the same memory",
    help: "micro-batches per optimiser step",
  },
  steps: {
    kind: "int",
    default: 0,
    why: "the run's length follows epochs",
    help: "optimiser steps (0: as many as epochs passes over the data take)",
  },
  epochs: { kind: "posint", default: 1, why: "one pass over the data", help: "passes over the data" },
  lr: {
    kind: "number",
    default: 1e-3,
    why: "Adam's usual step size, right for the small models trained from scratch here",
    help: "peak learning rate",
  },
  warmupSteps: {
    kind: "int",
    default: 20,
    why: "small first steps while Adam's moment estimates are still noisy",
    help: "steps of linear warmup from 0",
  },
  minLrRatio: {
    kind: "number",
    default: 0.1,
    why: "the cosine ends at a tenth of lr, as nanoGPT's does",
    help: "cosine floor as a fraction of lr",
  },
  weightDecay: {
    kind: "number",
    default: 0.01,
    why: "PyTorch AdamW's default decoupled decay",
    help: "AdamW weight decay (matrices only)",
  },
  maxGradNorm: {
    kind: "number",
    default: 1,
    why: "the usual guard against one batch's gradient spike",
    help: "global gradient-norm clip (0: off)",
  },
  beta1: { kind: "number", default: 0.9, why: "Adam's default", help: "AdamW beta1" },
  beta2: {
    kind: "number",
    default: 0.99,
    why: "few tokens per step: a shorter second-moment memory than 0.999 (nanoGPT's small runs use 0.99)",
    help: "AdamW beta2",
  },
  eps: { kind: "number", default: 1e-8, why: "Adam's default", help: "AdamW epsilon" },
  seed: {
    kind: "int",
    default: 0,
    why: "a fixed seed: the same settings give the same run",
    help: "seeds the weights of a new model, LoRA A matrices and the data order",
  },
  threads: {
    kind: "posint",
    default: 2,
    why: "steerlm's reference machines have 2 cores",
    help: "CPU threads for ggml (a resumed run keeps the count to stay bit-exact)",
  },
  initStd: {
    kind: "number",
    default: INIT_STD,
    why: "GPT-2's and Llama's initializer range",
    help: "std of the random initial matrices of a new model",
  },
  evalEvery: {
    kind: "int",
    default: 50,
    why: "often enough for a validation curve, rarely enough to cost little",
    help: "validation every N steps and at the end (0: only at the end)",
  },
  evalBatches: {
    kind: "int",
    default: 0,
    why: "the whole validation set: validation files are small",
    help: "validation batches per evaluation (0: the whole validation set)",
  },
  checkpointEvery: {
    kind: "int",
    default: 100,
    why: "an interruption loses at most 100 steps",
    help: "checkpoint every N steps and always at the end (0: only at the end)",
  },
  keepCheckpoints: {
    kind: "posint",
    default: 2,
    why: "the newest, and one to fall back on without filling the disk",
    help: "checkpoints kept on disk (the newest ones)",
  },
} as const satisfies Record<string, Setting>;

type Settings = typeof SETTINGS;
export type SettingName = keyof Settings;
type ValueOf<S> = S extends { kind: infer K extends SettingKind }
  ? KindTypes[K] | (S extends { default: null } ? null : never)
  : never;

/** Every setting of a run, resolved (config.ts): one field per SETTINGS entry. */
export type SftConfig = { -readonly [K in SettingName]: ValueOf<Settings[K]> };

/** In the order they are printed. */
export const SFT_FIELDS = Object.keys(SETTINGS) as SettingName[];

type RequiredName = { [K in SettingName]: Settings[K] extends { required: true } ? K : never }[SettingName];
export const REQUIRED_SETTINGS = SFT_FIELDS.filter((k) => "required" in SETTINGS[k]) as RequiredName[];

export const SFT_DEFAULTS = Object.fromEntries(
  SFT_FIELDS.flatMap((k) => {
    const s: Setting = SETTINGS[k];
    return "default" in s ? [[k, s.default]] : [];
  }),
) as Omit<SftConfig, RequiredName>;

export function settingKind(key: SettingName): SettingKind {
  return SETTINGS[key].kind;
}

/**
 * A raw value (from a config file, a flag or a stored run) checked against its setting's kind; paths are
 * resolved against `base`. An InputError at `place` otherwise.
 */
export function checkSetting(key: SettingName, raw: unknown, place: Place, base: string): unknown {
  const spec: Setting = SETTINGS[key];
  const bad = (what: string) => new InputError(`expected ${what}, got ${describe(raw)}`, place);
  if (raw === null && "default" in spec && spec.default === null) return null;
  switch (spec.kind) {
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

/** A command-line string as the setting's type (numbers parsed; the kind's check follows in config.ts). */
export function parseSettingText(key: SettingName, text: string | boolean): unknown {
  const kind = settingKind(key);
  if (typeof text === "boolean") return text;
  if (kind === "int" || kind === "posint" || kind === "number") {
    const n = Number(text);
    if (text.trim() === "" || !Number.isFinite(n)) {
      throw new InputError(`expected a number, got ${describe(text)}`, { setting: key });
    }
    return n;
  }
  return text;
}

/** The command-line flag of a setting: `--kebab-case` of its name, or its own (`--compute`). */
export function flagName(key: SettingName): string {
  const own: Setting = SETTINGS[key];
  return `--${own.flag ?? key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
