import type { AttributeSchema } from "../data/attributes.js";
import type { DataRecord } from "../data/record.js";
import type { ResolvedSftConfig } from "../run/config.js";
import type { SettingName, SftConfig } from "../run/settings.js";
import { InputError, type Place } from "../util/errors.js";
import { ENGINE_INFO, type Engine } from "./engines.js";
import type { ModelRef } from "./model.js";
import type { YamlValue } from "./yaml.js";

/**
 * What every engine's job is built from, and what each engine's builder returns: the files, the mapping of
 * every steerlm setting to the engine's keys (a Record over all settings, so none can be left out), the
 * launch commands and the notes for the job's README.
 */
export interface JobPlan {
  engine: Engine;
  resolved: ResolvedSftConfig;
  cfg: SftConfig;
  model: ModelRef;
  schema: AttributeSchema;
  train: DataRecord[];
  /** What the engine evaluates: the first evalBatches × batchSize validation conversations; null: none. */
  val: DataRecord[] | null;
  /** GPUs per machine and machines of the multi-GPU launch commands. */
  gpus: number;
  nodes: number;
}

/** exact: the engine computes what `steerlm sft` does; close: a stated difference; n/a: no engine counterpart. */
export type Exactness = "exact" | "close" | "n/a";

export interface MappingRow {
  /** Dotted keys of the job's config file (their values are read from it for the README). */
  keys: string[];
  exact: Exactness;
  note?: string;
}

export type Mapping = Record<SettingName, MappingRow>;

/** The settings of steerlm's own runs that a job has no use for: every engine maps them alike. */
type LocalSetting =
  | "init"
  | "schema"
  | "tokenizerVocabSize"
  | "attributeTokens"
  | "frozen"
  | "threads"
  | "initStd"
  | "recompute"
  | "allowUnlabeled";

export function localRows(plan: JobPlan): Pick<Mapping, LocalSetting> {
  const none = (note: string): MappingRow => ({ keys: [], exact: "n/a", note });
  return {
    init: none("unset: a job fine-tunes an existing model"),
    schema: none(
      `the data's value strings were checked against schema ${plan.schema.name} when the job was written`,
    ),
    tokenizerVocabSize: none("only for a new model (init)"),
    attributeTokens: none("only for a new model (init)"),
    frozen: none("unset: the base's own storage"),
    threads: none("CPU threads of steerlm's own trainer"),
    initStd: none("only for a new model (init)"),
    recompute: none(
      "steerlm's own activation recomputation; the engine's activation checkpointing keeps its default",
    ),
    allowUnlabeled: none(
      "a job's data is read labelled: a conversation without a value line is refused when it is written",
    ),
  };
}

/** The row of a LoRA setting in a run without LoRA. */
export const LORA_OFF: MappingRow = { keys: [], exact: "n/a", note: "lora is off" };

export interface Launch {
  title: string;
  commands: string[];
  note?: string;
}

export interface JobFile {
  /** Relative to the job folder, `/`-separated. */
  path: string;
  text: string;
  executable?: boolean;
}

export interface BuiltJob {
  /** The engine's config file: the mapping's keys are its dotted paths. */
  config: { path: string; value: { [key: string]: YamlValue } };
  /** Every file but the README, the config file included. */
  files: JobFile[];
  mapping: Mapping;
  /** Engine keys set to a value no steerlm setting gives, and why. */
  fixed: Array<{ keys: string[]; note: string }>;
  /** Optimiser updates the job runs. */
  steps: number;
  /** What the job is, in sentences (data lines, steps). */
  facts: string[];
  install: string[];
  launches: Launch[];
  /** Markdown paragraphs and code: from the engine's output to a GGUF. */
  bringBack: string[];
  /** What differs from a `steerlm sft` run with the same settings. */
  differences: string[];
}

/** The job's attribute schema, in its folder: the engine trains its value strings, the bring-back steers with it. */
export const SCHEMA_FILE = "schema.json";

/**
 * The bring-back's last commands: the engine's Hugging Face directory `hfDir` to a GGUF steered with the job's
 * schema (`folder`: the job folder as the commands name it, "" where they run in it), then served.
 */
export function convertAndServe(hfDir: string, folder = ""): string[] {
  return [
    `steerlm model convert ${hfDir} --schema ${folder}${SCHEMA_FILE} -o model.gguf`,
    "steerlm serve -m model.gguf",
  ];
}

// biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a template
const JOB_DIR = 'JOB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"';

/** A job's bash script: `comment` lines, then `body` with $JOB set to the job folder, wherever it is run from. */
export function bashScript(comment: readonly string[], body: readonly string[]): string {
  return [
    "#!/usr/bin/env bash",
    ...comment.map((c) => `# ${c}`),
    "set -euo pipefail",
    JOB_DIR,
    ...body,
    "",
  ].join("\n");
}

/** Where a setting came from, for errors: the config file's line, or the flag (the CLI names it). */
export function settingPlace(resolved: ResolvedSftConfig, key: SettingName): Place {
  return resolved.sources[key] === "config" && resolved.file !== null
    ? { file: resolved.file, field: key }
    : { setting: key };
}

/** What an engine cannot express, as refusals say it: the engine, its version and why. */
export function cannotExpress(engine: Engine, what: string): string {
  return `${engine} ${ENGINE_INFO[engine].version} cannot express ${what}`;
}

/** The error for a setting the engine cannot express, located where the setting was given. */
export function refuse(
  at: Pick<JobPlan, "engine" | "resolved">,
  key: SettingName,
  what: string,
  hint?: string,
): InputError {
  return new InputError(cannotExpress(at.engine, what), settingPlace(at.resolved, key), hint);
}

/** a·b without the binary noise of the product's last digits (1e-3 × 0.1 is 1e-4, not 1.0000000000000002e-4). */
export function times(a: number, b: number): number {
  return Number((a * b).toPrecision(15));
}

/** The run's optimiser updates, counted as `steerlm sft` counts them, over the engine's training lines. */
export function totalSteps(cfg: SftConfig, lines: number): number {
  return cfg.steps > 0 ? cfg.steps : Math.ceil((cfg.epochs * lines) / (cfg.batchSize * cfg.gradAccum));
}

/**
 * Epochs an engine that drops each epoch's last partial batch needs for `steps` updates (it stops at the
 * smaller of its step and epoch limits).
 */
export function epochsFor(plan: JobPlan, steps: number, lines: number): number {
  const global = plan.cfg.batchSize * plan.cfg.gradAccum;
  const perEpoch = Math.floor(lines / global);
  if (perEpoch === 0) {
    throw refuse(
      plan,
      "batchSize",
      `a run on ${lines} training lines with ${global} sequences per update: it drops the last partial batch of every epoch, which here is all of them`,
      "lower batchSize × gradAccum, or add data",
    );
  }
  return Math.ceil(steps / perEpoch);
}

/** Sequences per device and micro-batches per update that keep batchSize × gradAccum per update. */
export interface DeviceBatch {
  perDevice: number;
  accumulation: number;
}

/** The largest per-device batch ≤ batchSize that splits the update over `processes` GPUs; null: none does. */
export function splitBatch(cfg: SftConfig, processes: number): DeviceBatch | null {
  const global = cfg.batchSize * cfg.gradAccum;
  if (global % processes !== 0) return null;
  const share = global / processes;
  let b = Math.min(cfg.batchSize, share);
  while (share % b !== 0) b--;
  return { perDevice: b, accumulation: share / b };
}

/** One launch size: one GPU, the GPUs of one machine, or several machines. */
export interface Shape {
  gpus: number;
  nodes: number;
  title: string;
  /** null: batchSize × gradAccum sequences cannot be split over this many GPUs. */
  batch: DeviceBatch | null;
}

export function launchShapes(plan: JobPlan): Shape[] {
  const sizes = [{ gpus: 1, nodes: 1, title: "One GPU" }];
  if (plan.gpus > 1) sizes.push({ gpus: plan.gpus, nodes: 1, title: `${plan.gpus} GPUs on one machine` });
  if (plan.nodes > 1)
    sizes.push({ gpus: plan.gpus, nodes: plan.nodes, title: `${plan.nodes} machines × ${plan.gpus} GPUs` });
  return sizes.map((s) => ({ ...s, batch: splitBatch(plan.cfg, s.gpus * s.nodes) }));
}

/** The launch section of a size whose batch cannot be split. */
export function unsplittable(plan: JobPlan, shape: Shape): Launch {
  const global = plan.cfg.batchSize * plan.cfg.gradAccum;
  return {
    title: shape.title,
    commands: [],
    note:
      `Not at this job's batch: ${global} sequences per update (batchSize ${plan.cfg.batchSize} × gradAccum ` +
      `${plan.cfg.gradAccum}) do not split over ${shape.gpus * shape.nodes} GPUs. Export again with a gradAccum ` +
      "that makes the product a multiple of the GPU count.",
  };
}
