import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import type { LlamaConfig } from "../model/config.js";
import type { LoraOptions } from "../model/lora.js";
import { InputError, SteerlmError } from "../util/errors.js";
import type { DataCursor } from "./data.js";

/**
 * SFT checkpoint file: everything a run needs to continue bit-exactly, and everything export needs.
 *
 *   bytes 0..7   magic "STLMCKPT"
 *   bytes 8..11  format version (u32 LE)
 *   bytes 12..15 header length H (u32 LE)
 *   16..16+H     header, UTF-8 JSON (CheckpointHeader)
 *   then         zero padding to a multiple of 32, then each tensor's f32 LE data at its `offset`
 *                (relative to the data start), in header order
 *
 * Written to a temp file in the same directory, fsynced, then renamed: a crash (or kill -9) leaves either
 * the previous checkpoint or the new one, never a torn file. Nothing time-dependent goes in, so two runs
 * that reach the same state write identical bytes.
 */
export const CHECKPOINT_MAGIC = "STLMCKPT";
export const CHECKPOINT_VERSION = 1;
const ALIGN = 32;

export type TensorRole = "weight" | "adam_m" | "adam_v";

export interface CheckpointTensor {
  name: string;
  role: TensorRole;
  shape: number[];
  offset: number;
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
  /** The frozen base (LoRA) or starting weights (full fine-tuning) GGUF, when the run began from one. */
  baseModel: string | null;
  /** tokenizer.json text of a model trained from scratch (the vocabulary travels with the weights). */
  tokenizer: string | null;
  /** Name of the attribute schema of the value strings (or its JSON), for the exported GGUF. */
  schema: string;
  /** The run's effective settings, to refuse a resume with different ones. */
  settings: Record<string, unknown>;
  tensors: CheckpointTensor[];
}

export interface CheckpointData {
  header: CheckpointHeader;
  /** By role, then tensor name. */
  weights: Map<string, Float32Array>;
  adamM: Map<string, Float32Array>;
  adamV: Map<string, Float32Array>;
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

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
  const tensors: CheckpointTensor[] = [];
  const blobs: Float32Array[] = [];
  let offset = 0;
  for (const [role, map] of roles) {
    for (const name of [...map.keys()].sort()) {
      const values = map.get(name) as Float32Array;
      const shape = shapes.get(name) ?? [values.length];
      if (numel(shape) !== values.length)
        throw new SteerlmError(`checkpoint tensor ${name}: shape does not match data`);
      tensors.push({ name, role, shape, offset });
      blobs.push(values);
      offset = alignUp(offset + values.byteLength);
    }
  }
  const header = Buffer.from(JSON.stringify({ ...data.header, tensors }), "utf8");
  const pre = Buffer.alloc(16);
  pre.write(CHECKPOINT_MAGIC, 0, "latin1");
  pre.writeUInt32LE(CHECKPOINT_VERSION, 8);
  pre.writeUInt32LE(header.length, 12);
  const headEnd = 16 + header.length;
  const dataStart = alignUp(headEnd);

  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx");
  try {
    writeAll(fd, pre);
    writeAll(fd, header);
    writeAll(fd, Buffer.alloc(dataStart - headEnd));
    let at = 0;
    blobs.forEach((b, i) => {
      const t = tensors[i] as CheckpointTensor;
      if (t.offset > at) writeAll(fd, Buffer.alloc(t.offset - at));
      writeAll(fd, Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      at = t.offset + b.byteLength;
    });
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (err) {
    try {
      closeSync(fd);
    } catch {}
    rmSync(tmp, { force: true });
    throw err;
  }
  syncDir(dirname(path));
}

function writeAll(fd: number, b: Uint8Array): void {
  let done = 0;
  while (done < b.byteLength) done += writeSync(fd, b, done, b.byteLength - done);
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    fsyncSync(fd);
    closeSync(fd);
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  }
}

export function readCheckpoint(path: string): CheckpointData {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new InputError(
      `cannot read the checkpoint: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      { file: path },
    );
  }
  const magic = buf.subarray(0, 8).toString("latin1");
  if (buf.length < 16 || magic !== CHECKPOINT_MAGIC) {
    throw new InputError(
      `not a steerlm SFT checkpoint (magic ${JSON.stringify(magic)}, expected "${CHECKPOINT_MAGIC}")`,
      { file: path },
      "pass a run directory or a checkpoints/step-*.ckpt file written by `steerlm sft`",
    );
  }
  const version = buf.readUInt32LE(8);
  if (version !== CHECKPOINT_VERSION) {
    throw new InputError(
      `checkpoint format version ${version}, this steerlm reads version ${CHECKPOINT_VERSION}`,
      { file: path },
      "use the steerlm version that wrote it, or retrain",
    );
  }
  const headerLen = buf.readUInt32LE(12);
  let header: CheckpointHeader;
  try {
    header = JSON.parse(buf.subarray(16, 16 + headerLen).toString("utf8")) as CheckpointHeader;
  } catch {
    throw new InputError("the checkpoint header is damaged", { file: path });
  }
  const dataStart = alignUp(16 + headerLen);
  const out: CheckpointData = { header, weights: new Map(), adamM: new Map(), adamV: new Map() };
  for (const t of header.tensors) {
    const bytes = numel(t.shape) * 4;
    const start = dataStart + t.offset;
    if (start + bytes > buf.length)
      throw new InputError(`the checkpoint is truncated (tensor ${t.name})`, { file: path });
    // Copy into a fresh aligned buffer: a Float32Array view needs 4-byte alignment.
    const values = new Float32Array(numel(t.shape));
    new Uint8Array(values.buffer).set(buf.subarray(start, start + bytes));
    (t.role === "weight" ? out.weights : t.role === "adam_m" ? out.adamM : out.adamV).set(t.name, values);
  }
  return out;
}

/** `checkpoints/step-000120.ckpt`: zero-padded so names sort by step. */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, "0")}.ckpt`;
}

/** Checkpoint files of a run directory, oldest first. */
export function listCheckpoints(runDir: string): string[] {
  const dir = join(runDir, "checkpoints");
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => /^step-\d+\.ckpt$/.test(n))
    .sort()
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
