import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { isMap, isScalar, LineCounter, parseDocument } from "yaml";
import { loadSchema } from "../data/attributes.js";
import { checkOptimizer, type OptimizerOptions } from "../train/trainer.js";
import { describe, InputError } from "../util/errors.js";
import { readInputText } from "../util/files.js";
import {
  type ComputeType,
  checkSetting,
  type ModelInitInput,
  REQUIRED_SETTINGS,
  SETTINGS,
  type SettingName,
  SFT_DEFAULTS,
  SFT_FIELDS,
  type SftConfig,
} from "./settings.js";

/**
 * The settings of a run, resolved in one place: the defaults of SETTINGS (settings.ts), then the config
 * file (YAML or JSON), then command-line flags. `resolveSftConfig` also records where each value came
 * from, so the run can print every effective setting and say which ones were overridden.
 */

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

/**
 * A note for a new f32 run on the CPU where steerlm's bf16 GEMM would run on AMX tiles (`amx`:
 * bf16OnAmx()): f32 already runs most products there (f32 operands split into exact bf16 parts), and bf16
 * compute trains faster still (docs/engine.md, Intel); null: nothing to say.
 */
export function amxHint(computeType: ComputeType, amx: boolean): string | null {
  if (computeType !== "f32" || !amx) return null;
  return (
    "this CPU runs steerlm's bf16 products on AMX tiles (under f32 most products too, f32 operands split into " +
    "exact bf16 parts): --compute bf16 (bf16 GEMM operands, f32 weights and optimiser) trains faster still " +
    "(docs/engine.md, Intel)"
  );
}

/** "model": decided from the base GGUF at the start of the run (`frozen`). */
export type Source = "default" | "config" | "flag" | "model";

export interface ResolvedSftConfig {
  config: SftConfig;
  sources: Record<SettingName, Source>;
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
  const text = readInputText(file, "cannot read the config file");
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  const [e] = doc.errors;
  if (e !== undefined) {
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

/** Where a run directory keeps its effective settings (what --resume reads back). */
export const SETTINGS_FILE = "sft-config.json";

/**
 * Defaults < config file < flags. `flags` holds only what the user gave on the command line (already
 * camelCased; paths relative to the working directory). Unknown or mistyped settings are InputErrors
 * naming the file, line and setting.
 */
export function resolveSftConfig(
  flags: Partial<Record<SettingName, unknown>>,
  configFile?: string,
): ResolvedSftConfig {
  return resolveLayers(flags, configFile).resolved;
}

/**
 * Paths a resume may give anew, for a run moved or copied to another disk or machine: the run is where its
 * settings are, and the files' contents are checked instead of their names (data-files.json's SHA-256 of
 * the data, the checkpoint's SHA-256 of a base outside the run, the model config against the checkpoint's).
 */
const MOVABLE: readonly SettingName[] = ["output", "data", "val", "init", "model"];

/** The settings of a resumed run: the stored ones, with flags allowed only where they agree. */
export function resolveResumeConfig(
  runDir: string,
  flags: Partial<Record<SettingName, unknown>>,
): ResolvedSftConfig {
  const stored = join(runDir, SETTINGS_FILE);
  if (!existsSync(stored)) {
    throw new InputError(
      `no ${SETTINGS_FILE} here: not a steerlm sft run directory`,
      { file: runDir },
      "start a run with -o <dir> first",
    );
  }
  const { resolved, beforeFlags } = resolveLayers(flags, stored);
  for (const key of Object.keys(flags) as SettingName[]) {
    if (flags[key] === undefined || MOVABLE.includes(key)) continue;
    const before = beforeFlags[key];
    const after = resolved.config[key];
    // a schema stored as its JSON (taken from the model) and given again by name is the same schema
    const same =
      key === "schema"
        ? JSON.stringify(loadSchema(String(before))) === JSON.stringify(loadSchema(String(after)))
        : JSON.stringify(before) === JSON.stringify(after);
    if (!same) {
      throw new InputError(
        `${JSON.stringify(after)} differs from the run's ${JSON.stringify(before)}`,
        { field: key },
        key === "computeType"
          ? `the run trains with ${String(before)} GEMMs and a resumed run keeps them (bf16 and f32 ` +
              "products differ in the last bits, so switching would break the bit-exact resume): drop --compute"
          : "a resumed run keeps its settings so that it ends exactly where an uninterrupted run would",
      );
    }
  }
  return resolved;
}

/** The one resolution: also returns every value as it stood before the flags (what a resume compares). */
function resolveLayers(
  flags: Partial<Record<SettingName, unknown>>,
  configFile: string | undefined,
): { resolved: ResolvedSftConfig; beforeFlags: Record<string, unknown> } {
  const merged: Record<string, unknown> = { ...SFT_DEFAULTS };
  const sources = Object.fromEntries(SFT_FIELDS.map((k) => [k, "default"])) as Record<SettingName, Source>;
  const known = (key: string): key is SettingName => key in SETTINGS;
  if (configFile) {
    const doc = readConfigDocument(configFile);
    const base = dirname(resolve(configFile));
    for (const [key, raw] of Object.entries(doc.values)) {
      const place = { file: configFile, line: doc.lineOf(key), field: key };
      if (!known(key))
        throw new InputError("unknown setting", place, `settings are: ${SFT_FIELDS.join(", ")}`);
      merged[key] = checkSetting(key, raw, place, base);
      sources[key] = "config";
    }
  }
  const beforeFlags = { ...merged };
  for (const [key, raw] of Object.entries(flags)) {
    if (raw === undefined) continue;
    if (!known(key)) throw new InputError("unknown setting", { setting: key });
    // a flag's value: the error names the setting, which the CLI shows as the flag the user typed
    merged[key] = checkSetting(key, raw, { setting: key }, process.cwd());
    sources[key] = "flag";
  }
  for (const key of REQUIRED_SETTINGS) {
    if (typeof merged[key] !== "string") {
      throw new InputError(`is required (a flag, or "${key}" in the config)`, {
        ...(configFile ? { file: configFile } : {}),
        field: key,
      });
    }
  }
  const config = merged as unknown as SftConfig;
  checkConsistency(config, sources, configFile ?? null);
  return { resolved: { config, sources, file: configFile ?? null }, beforeFlags };
}

function checkConsistency(c: SftConfig, sources: Record<SettingName, Source>, file: string | null): void {
  const place = (field: SettingName) => ({
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
  if (c.seqLen < 8) throw new InputError(`must be at least 8, got ${c.seqLen}`, place("seqLen"));
  checkOptimizer(optimizerOptions(c, c.steps), place);
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

/** One line per setting, with where its value came from (printed at the start of a run). */
export function formatSettings(r: ResolvedSftConfig): string[] {
  const width = Math.max(...SFT_FIELDS.map((k) => k.length));
  return SFT_FIELDS.map((k) => {
    const v = r.config[k];
    const shown =
      typeof v === "object" && v !== null && !Array.isArray(v)
        ? JSON.stringify(v)
        : k === "schema" && String(v).startsWith("{")
          ? schemaLine(String(v))
          : String(v);
    const from =
      r.sources[k] === "default"
        ? ""
        : `  (${{ flag: "flag", config: "config file", model: "decided from the base model" }[r.sources[k]]})`;
    return `  ${k.padEnd(width)}  ${shown}${from}`;
  });
}

/** A schema stored as its JSON, as the settings show it: its name and attributes. */
function schemaLine(json: string): string {
  const schema = loadSchema(json);
  return `${schema.name} (${schema.attributes.map((a) => a.name).join(",")})`;
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
