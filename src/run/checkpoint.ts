import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { type AttributeSchema, loadSchema, schemaFromJson } from "../data/attributes.js";
import type { LlamaConfig } from "../model/config.js";
import type { LoraOptions } from "../model/lora.js";
import type { Trainer } from "../train/trainer.js";
import { userFileError } from "../util/errno.js";
import { InputError } from "../util/errors.js";
import { fileSha256 } from "../util/files.js";
import {
  type CheckpointBlob,
  type CheckpointBlobKind,
  readCheckpointFile,
  readCheckpointMeta,
  writeCheckpointFile,
} from "./checkpoint-file.js";
import type { DataCursor } from "./data.js";
import { type RunMetric, readMetrics, writeMetrics } from "./metrics.js";

/**
 * A run's checkpoints (SFT, the APMs, SteerLM 2.0): everything a run needs to continue bit-exactly, and
 * everything export needs, in the container of checkpoint-file.ts. Tensors are written weights, then first,
 * then second AdamW moments, each sorted by name.
 */
// ---- a run's checkpoints: the header, the trainer's state, the run directory ----

export type TensorRole = "weight" | "adam_m" | "adam_v";

export interface CheckpointTensor {
  name: string;
  role: TensorRole;
  shape: number[];
}

export interface CheckpointHeader {
  format: "steerlm-sft-checkpoint";
  /** Optimiser steps done. */
  step: number;
  totalSteps: number;
  /** The next batch's position in the data order. */
  cursor: DataCursor;
  model: LlamaConfig;
  lora: LoraOptions | null;
  /**
   * The frozen base (LoRA) or starting weights (full fine-tuning) GGUF, when the run began from one: relative
   * to the run directory when it lies in it, else absolute (`recordBase`). Read it with `checkpointBase`.
   */
  baseModel: string | null;
  /** SHA-256 of a base outside the run directory (null otherwise); absent in runs before 2026-12-07. */
  baseSha256?: string | null;
  /** tokenizer.json text of a model trained from scratch (the vocabulary travels with the weights). */
  tokenizer: string | null;
  /**
   * The attribute schema of the value strings, for the exports: its JSON (runs from 2026-12-07 on), or a
   * built-in name or file path (older runs). Read it with `headerSchema`.
   */
  schema: string;
  /** The run's effective settings, to refuse a resume with different ones. */
  settings: Record<string, unknown>;
  /** Filled in by writeCheckpoint / readCheckpoint (ignored on write). */
  tensors: CheckpointTensor[];
}

export interface CheckpointData {
  header: CheckpointHeader;
  /** By role, then tensor name. */
  weights: Map<string, Float32Array>;
  adamM: Map<string, Float32Array>;
  adamV: Map<string, Float32Array>;
}

const SFT_FORMAT: CheckpointHeader["format"] = "steerlm-sft-checkpoint";
const KIND_OF_ROLE: Record<TensorRole, CheckpointBlobKind> = { weight: "weight", adam_m: "m", adam_v: "v" };
const ROLE_OF_KIND: Record<CheckpointBlobKind, TensorRole> = { weight: "weight", m: "adam_m", v: "adam_v" };

/** `shapes` gives each tensor's ggml shape (moments share their weight's shape). */
export function writeCheckpoint(
  path: string,
  data: CheckpointData,
  shapes: ReadonlyMap<string, number[]>,
): void {
  const roles: Array<[TensorRole, Map<string, Float32Array>]> = [
    ["weight", data.weights],
    ["adam_m", data.adamM],
    ["adam_v", data.adamV],
  ];
  const blobs: CheckpointBlob[] = [];
  for (const [role, map] of roles) {
    for (const name of [...map.keys()].sort()) {
      const values = map.get(name) as Float32Array;
      blobs.push({
        name,
        kind: KIND_OF_ROLE[role],
        data: values,
        shape: shapes.get(name) ?? [values.length],
      });
    }
  }
  const { tensors: _t, ...meta } = data.header;
  writeCheckpointFile(path, meta as unknown as Record<string, unknown>, blobs);
}

/** A checkpoint's header alone, without reading its tensors (`tensors` left empty). */
export function readCheckpointHeader(path: string): CheckpointHeader {
  return sftHeader(readCheckpointMeta(path), path);
}

function sftHeader(meta: Record<string, unknown>, path: string): CheckpointHeader {
  if (meta.format !== SFT_FORMAT) {
    throw new InputError(
      `not a steerlm SFT checkpoint (format ${JSON.stringify(meta.format ?? null)}, expected "${SFT_FORMAT}")`,
      { file: path },
      "pass a run directory or a checkpoints/step-*.ckpt file written by `steerlm sft`",
    );
  }
  return { ...meta, tensors: [] } as unknown as CheckpointHeader;
}

export function readCheckpoint(path: string): CheckpointData {
  const { meta, blobs } = readCheckpointFile(path);
  const header = sftHeader(meta, path);
  const out: CheckpointData = { header, weights: new Map(), adamM: new Map(), adamV: new Map() };
  for (const b of blobs) {
    const role = ROLE_OF_KIND[b.kind];
    header.tensors.push({ name: b.name, role, shape: b.shape ?? [b.data.length] });
    (role === "weight" ? out.weights : role === "adam_m" ? out.adamM : out.adamV).set(b.name, b.data);
  }
  return out;
}

/** Writes a trainer's state (its trained weights and their AdamW moments) under `header`. */
export function saveTrainerCheckpoint(
  path: string,
  header: Omit<CheckpointHeader, "tensors">,
  trainer: Trainer,
): void {
  const trained = trainer.trainedTensors;
  const model = trainer.model;
  const data: CheckpointData = {
    header: { ...header, tensors: [] },
    weights: new Map(trained.map((n) => [n, model.getWeight(n)])),
    adamM: new Map(trained.map((n) => [n, trainer.moments(n).m])),
    adamV: new Map(trained.map((n) => [n, trainer.moments(n).v])),
  };
  writeCheckpoint(path, data, new Map(model.params.map((p) => [p.name, p.shape])));
}

/**
 * Puts a run checkpoint's weights, AdamW moments and step back into a trainer built for the same run;
 * returns the checkpoint (its header holds the data cursor).
 */
export function restoreTrainerCheckpoint(path: string, trainer: Trainer): CheckpointData {
  const ck = readCheckpoint(path);
  for (const [name, w] of ck.weights) trainer.model.setWeight(name, w);
  trainer.restore(
    ck.header.step,
    new Map(
      trainer.trainedTensors.map((n) => [
        n,
        { m: ck.adamM.get(n) as Float32Array, v: ck.adamV.get(n) as Float32Array },
      ]),
    ),
  );
  return ck;
}

/**
 * The base GGUF as a checkpoint records it. One in the run directory (the prepared base with control tokens, a
 * converted Hugging Face model) is named relative to it, so that the run can move to another disk or machine;
 * one elsewhere keeps its absolute path and its SHA-256, so that export, annotate and resume refuse another file
 * at that path rather than merge the adapters into other weights.
 */
export async function recordBase(
  runDir: string,
  path: string | null,
  /** The same file, hashed already (a resume's `checkpointBase`): not read a second time. */
  verified?: { path: string; sha256: string },
): Promise<Pick<CheckpointHeader, "baseModel" | "baseSha256">> {
  if (path === null) return { baseModel: null, baseSha256: null };
  const inRun = relative(resolve(runDir), resolve(path));
  if (inRun !== "" && !inRun.startsWith("..") && !isAbsolute(inRun))
    return { baseModel: inRun, baseSha256: null };
  if (verified && resolve(verified.path) === resolve(path))
    return { baseModel: resolve(path), baseSha256: verified.sha256 };
  try {
    return { baseModel: resolve(path), baseSha256: await fileSha256(path) };
  } catch (err) {
    throw userFileError(err, path);
  }
}

/**
 * The path of a checkpoint's base GGUF (null: none), checked against the SHA-256 the run recorded. `at`: a
 * base outside the run found elsewhere now (a resume's --model after the run moved), checked the same way.
 */
export async function checkpointBase(
  header: Pick<CheckpointHeader, "baseModel" | "baseSha256">,
  checkpoint: string,
  at?: string,
): Promise<string | null> {
  if (header.baseModel === null) return null;
  const runDir = dirname(dirname(checkpoint));
  if (header.baseSha256 === undefined) {
    // older runs: the path as the command named it; their own base file found where the run is now
    if (existsSync(header.baseModel)) return header.baseModel;
    const moved = join(runDir, basename(header.baseModel));
    return existsSync(moved) ? moved : header.baseModel;
  }
  const path = header.baseSha256 !== null && at !== undefined ? at : resolve(runDir, header.baseModel);
  if (header.baseSha256 !== null) {
    let now: string;
    try {
      now = await fileSha256(path);
    } catch (err) {
      throw userFileError(err, path);
    }
    if (now !== header.baseSha256) {
      throw new InputError(
        `is not the base the run started from (SHA-256 ${now.slice(0, 12)}…, ${header.baseSha256.slice(0, 12)}… then)`,
        { file: path, field: "baseModel" },
        `put back the base the run trained on, or name where it is now (export --base-gguf, --resume --model): the weights of ${checkpoint} belong to it`,
      );
    }
  }
  return path;
}

/**
 * Refuses to resume a checkpoint with a model of another shape (an --init file edited, or given anew for a
 * moved run, that no longer says what the run trained), naming the fields that differ.
 */
export function checkSameModel(config: LlamaConfig, header: CheckpointHeader, checkpoint: string): void {
  const was = header.model as unknown as Record<string, unknown>;
  const now = config as unknown as Record<string, unknown>;
  const differ = [...new Set([...Object.keys(was), ...Object.keys(now)])].filter(
    (k) => JSON.stringify(was[k]) !== JSON.stringify(now[k]),
  );
  if (differ.length === 0) return;
  throw new InputError(
    `the model is not the run's: ${differ.map((k) => `${k} ${JSON.stringify(now[k])}, ${JSON.stringify(was[k])} then`).join("; ")}`,
    { file: checkpoint, field: "model" },
    "resume with the model config (--init) or base (--model) the run started from",
  );
}

/** The folder of a run's checkpoints. */
export function checkpointDir(runDir: string): string {
  return join(runDir, "checkpoints");
}

/** `checkpoints/step-000120.ckpt`: zero-padded to 6 digits, longer past step 999,999. */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, "0")}.ckpt`;
}

const CHECKPOINT_NAME = /^step-(\d+)\.ckpt$/;

/** Checkpoint files of a run directory, oldest first: by step as a number (names sort wrong past 999,999). */
export function listCheckpoints(runDir: string): string[] {
  const dir = checkpointDir(runDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const step = (n: string) => Number(CHECKPOINT_NAME.exec(n)?.[1]);
  return names
    .filter((n) => CHECKPOINT_NAME.test(n))
    .sort((a, b) => step(a) - step(b))
    .map((n) => join(dir, n));
}

export function latestCheckpoint(runDir: string): string | undefined {
  return listCheckpoints(runDir).at(-1);
}

/** Deletes all but the newest `keep` checkpoints. */
export function pruneCheckpoints(runDir: string, keep: number): void {
  const all = listCheckpoints(runDir);
  for (const p of all.slice(0, Math.max(0, all.length - keep))) rmSync(p, { force: true });
}

/**
 * A run's checkpoint at `step`, consistent with its metrics: metrics.jsonl is written first, so a run killed
 * right after the checkpoint's rename still has the lines of the steps it resumes after (a resume drops the
 * lines past its checkpoint). Keeps the newest `keep` checkpoints. Returns the checkpoint's path.
 */
export function saveRunCheckpoint(
  runDir: string,
  header: Omit<CheckpointHeader, "tensors">,
  trainer: Trainer,
  metrics: readonly RunMetric[],
  keep: number,
): string {
  const path = join(checkpointDir(runDir), checkpointName(header.step));
  writeMetrics(runDir, metrics);
  saveTrainerCheckpoint(path, header, trainer);
  pruneCheckpoints(runDir, keep);
  return path;
}

/**
 * Resumes a run from its checkpoint `path`: weights, AdamW state and step into `trainer`, the data cursor
 * into `batches`; returns the checkpoint and the run's metrics up to its step.
 */
export function resumeRun<M extends RunMetric>(
  path: string,
  runDir: string,
  trainer: Trainer,
  batches: { cursor: DataCursor },
): { checkpoint: CheckpointData; metrics: M[] } {
  const checkpoint = restoreTrainerCheckpoint(path, trainer);
  batches.cursor = checkpoint.header.cursor;
  const step = checkpoint.header.step;
  return { checkpoint, metrics: readMetrics<M>(runDir).filter((m) => m.step <= step) };
}

/** A run directory resolves to its newest checkpoint; a file must be a checkpoint. */
export function resolveCheckpoint(input: string): string {
  let isDir: boolean;
  try {
    isDir = statSync(input).isDirectory();
  } catch {
    throw new InputError("no such run directory or checkpoint", { file: input });
  }
  if (!isDir) return input;
  const latest = latestCheckpoint(input);
  if (!latest)
    throw new InputError(
      "the run directory has no checkpoint",
      { file: input },
      "train with `steerlm sft -o <dir>` first",
    );
  return latest;
}

/** The attribute schema a checkpoint was trained with (CheckpointHeader.schema). */
export function headerSchema(h: Pick<CheckpointHeader, "schema">, checkpoint: string): AttributeSchema {
  if (!h.schema.startsWith("{")) return loadSchema(h.schema);
  return schemaFromJson(h.schema, { file: checkpoint, field: "schema" });
}
