import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { LlamaConfig } from "../model/config.js";
import type { ModelOptions } from "../model/model.js";
import { InputError } from "../util/errors.js";
import type { RngState } from "../util/rng.js";
import type { Trainer } from "./trainer.js";

/**
 * steerlm's one checkpoint file format, shared by the engine (CheckpointState below) and SFT / APM runs
 * (src/run/checkpoint.ts, a header of their own over the same container):
 *
 *   bytes 0..7   magic "STEERCKP"
 *   bytes 8..11  format version (u32 LE)
 *   bytes 12..15 header length H (u32 LE)
 *   16..16+H     header, UTF-8 JSON: the writer's metadata plus `blobs` (name, kind, length, offset, shape?)
 *   then         zero padding to a multiple of 64, then each blob's f32 LE data at its `offset` (relative to
 *                the data start, 64-byte aligned), in header order
 *
 * Written to a temporary file in the same folder, fsynced, then renamed over the target: a crash (or kill -9)
 * leaves the previous checkpoint or the new one, never a torn file under the real name. Nothing
 * time-dependent goes in, so the same state and order always give the same bytes.
 */
export const CHECKPOINT_MAGIC = "STEERCKP";
export const CHECKPOINT_VERSION = 1;
const ALIGN = 64;
/** `format` of the engine's own state; older files carry none. */
const TRAIN_STATE_FORMAT = "steerlm-train-state";

export type CheckpointBlobKind = "weight" | "m" | "v";

/** One f32 tensor of a checkpoint: a trainable weight or one of its AdamW moments. */
export interface CheckpointBlob {
  name: string;
  kind: CheckpointBlobKind;
  data: Float32Array;
  /** ggml shape, when the writer records it (its product is data.length). */
  shape?: number[];
}

interface BlobInfo {
  name: string;
  kind: CheckpointBlobKind;
  length: number;
  offset: number;
  shape?: number[];
}

export interface CheckpointState {
  step: number;
  /** Where the data loader is (e.g. epoch and index); opaque JSON to this module. */
  dataPosition: unknown;
  rng: RngState;
  config: LlamaConfig;
  model: Pick<ModelOptions, "lora" | "regressionOutputs" | "trainBase" | "ropeMode">;
  /** Trainable weights only (a frozen base comes from its own model file). */
  weights: Map<string, Float32Array>;
  moments: Map<string, { m: Float32Array; v: Float32Array }>;
  extra?: Record<string, unknown>;
}

const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/**
 * Writes the container: `meta` (JSON; must not use the key `blobs`) and the blobs in the given order.
 * Atomic (temp file, fsync, rename, directory fsync).
 */
export function writeCheckpointFile(
  path: string,
  meta: Record<string, unknown>,
  blobs: CheckpointBlob[],
): void {
  const infos: BlobInfo[] = [];
  let offset = 0;
  for (const b of blobs) {
    if (b.shape !== undefined && b.shape.reduce((x, y) => x * y, 1) !== b.data.length)
      throw new InputError(`shape ${JSON.stringify(b.shape)} does not match ${b.data.length} values`, {
        field: b.name,
      });
    infos.push({
      name: b.name,
      kind: b.kind,
      length: b.data.length,
      offset,
      ...(b.shape ? { shape: b.shape } : {}),
    });
    offset = alignUp(offset + b.data.byteLength);
  }
  const json = Buffer.from(JSON.stringify({ ...meta, blobs: infos }), "utf8");
  const pre = Buffer.alloc(16);
  pre.write(CHECKPOINT_MAGIC, 0, "latin1");
  pre.writeUInt32LE(CHECKPOINT_VERSION, 8);
  pre.writeUInt32LE(json.length, 12);
  const headEnd = 16 + json.length;

  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx");
  try {
    writeAll(fd, pre);
    writeAll(fd, json);
    writeAll(fd, Buffer.alloc(alignUp(headEnd) - headEnd));
    let at = 0;
    blobs.forEach((b, i) => {
      const info = infos[i] as BlobInfo;
      if (info.offset > at) writeAll(fd, Buffer.alloc(info.offset - at));
      writeAll(fd, Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength));
      at = info.offset + b.data.byteLength;
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

/** Reads the container back: the writer's metadata (without `blobs`) and the blobs in file order. */
export function readCheckpointFile(path: string): { meta: Record<string, unknown>; blobs: CheckpointBlob[] } {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new InputError(
      `cannot read the checkpoint: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      {
        file: path,
      },
    );
  }
  const bad = (what: string) => new InputError(what, { file: path });
  if (buf.length < 16 || buf.toString("latin1", 0, 8) !== CHECKPOINT_MAGIC)
    throw new InputError(
      `not a steerlm checkpoint (magic ${JSON.stringify(buf.toString("latin1", 0, Math.min(8, buf.length)))}, expected "${CHECKPOINT_MAGIC}")`,
      { file: path },
      "pass a run directory or a checkpoints/step-*.ckpt file written by steerlm",
    );
  const version = buf.readUInt32LE(8);
  if (version !== CHECKPOINT_VERSION)
    throw new InputError(
      `checkpoint version ${version} is not supported (expected ${CHECKPOINT_VERSION})`,
      { file: path },
      "use the steerlm version that wrote it, or retrain",
    );
  const len = buf.readUInt32LE(12);
  if (16 + len > buf.length) throw bad("truncated checkpoint header");
  let header: Record<string, unknown> & { blobs: BlobInfo[] };
  try {
    header = JSON.parse(buf.toString("utf8", 16, 16 + len)) as typeof header;
  } catch {
    throw bad("corrupt checkpoint header");
  }
  if (!Array.isArray(header.blobs)) throw bad("corrupt checkpoint header (no blob list)");
  const dataStart = alignUp(16 + len);
  const blobs = header.blobs.map((b): CheckpointBlob => {
    const start = dataStart + b.offset;
    if (start + b.length * 4 > buf.length)
      throw bad(`truncated checkpoint: tensor ${b.name} (${b.kind}) is cut off`);
    // Copy into a fresh buffer: a Float32Array view needs 4-byte alignment.
    const data = new Float32Array(b.length);
    new Uint8Array(data.buffer).set(buf.subarray(start, start + b.length * 4));
    return { name: b.name, kind: b.kind, data, ...(b.shape ? { shape: b.shape } : {}) };
  });
  const { blobs: _b, ...meta } = header;
  return { meta, blobs };
}

/** Captures a trainer's state (weights, AdamW moments, step) plus what the caller adds. */
export function captureCheckpoint(
  trainer: Trainer,
  extra: { rng: RngState; dataPosition: unknown; extra?: Record<string, unknown> },
): CheckpointState {
  const names = trainer.trainedTensors;
  const m = trainer.model;
  return {
    step: trainer.step,
    dataPosition: extra.dataPosition,
    rng: extra.rng,
    config: m.config,
    model: {
      lora: m.options.lora,
      regressionOutputs: m.options.regressionOutputs,
      trainBase: m.options.trainBase,
      ropeMode: m.options.ropeMode,
    },
    weights: new Map(names.map((n) => [n, m.getWeight(n)])),
    moments: new Map(names.map((n) => [n, trainer.moments(n)])),
    extra: extra.extra,
  };
}

/** Puts weights, moments and step back into a trainer built for the same model and options. */
export function restoreCheckpoint(trainer: Trainer, state: CheckpointState): void {
  for (const name of trainer.trainedTensors) {
    const w = state.weights.get(name);
    if (!w) throw new InputError("checkpoint has no weights for this tensor", { field: name });
    trainer.model.setWeight(name, w);
  }
  trainer.restore(state.step, state.moments);
}

export async function writeCheckpoint(path: string, state: CheckpointState): Promise<void> {
  const blobs: CheckpointBlob[] = [];
  for (const [name, w] of state.weights) blobs.push({ name, kind: "weight", data: w });
  for (const [name, mv] of state.moments) {
    blobs.push({ name, kind: "m", data: mv.m });
    blobs.push({ name, kind: "v", data: mv.v });
  }
  const { weights: _w, moments: _m, ...rest } = state;
  writeCheckpointFile(path, { format: TRAIN_STATE_FORMAT, ...rest }, blobs);
}

export async function readCheckpoint(path: string): Promise<CheckpointState> {
  const { meta, blobs } = readCheckpointFile(path);
  const { format, ...rest } = meta;
  if (format !== undefined && format !== TRAIN_STATE_FORMAT)
    throw new InputError(
      `this checkpoint holds a ${JSON.stringify(format)}, not a trainer state`,
      { file: path },
      "SFT and APM run checkpoints are read by `steerlm export` / `readSftCheckpoint`",
    );
  const weights = new Map<string, Float32Array>();
  const moments = new Map<string, { m: Float32Array; v: Float32Array }>();
  for (const b of blobs) {
    if (b.kind === "weight") weights.set(b.name, b.data);
    else {
      const mv = moments.get(b.name) ?? { m: new Float32Array(0), v: new Float32Array(0) };
      mv[b.kind] = b.data;
      moments.set(b.name, mv);
    }
  }
  return { ...(rest as unknown as Omit<CheckpointState, "weights" | "moments">), weights, moments };
}
