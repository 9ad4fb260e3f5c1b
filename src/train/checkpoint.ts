import { open, readFile, rename, rm } from "node:fs/promises";
import type { LlamaConfig } from "../model/config.js";
import type { ModelOptions } from "../model/model.js";
import { InputError } from "../util/errors.js";
import type { RngState } from "./rng.js";
import type { Trainer } from "./trainer.js";

/**
 * Checkpoint file: "STEERCKP" magic, u32 version, u32 header length, JSON header, then f32 little-endian
 * tensor blobs, each 64-byte aligned. The header lists every blob (name, kind, shape, offset). Written to
 * a temporary file in the same folder, fsynced, then renamed over the target: a crash never leaves a
 * half-written checkpoint under the real name.
 */
export const CHECKPOINT_MAGIC = "STEERCKP";
export const CHECKPOINT_VERSION = 1;
const ALIGN = 64;

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

interface BlobInfo {
  name: string;
  kind: "weight" | "m" | "v";
  length: number;
  offset: number;
}

interface Header extends Omit<CheckpointState, "weights" | "moments"> {
  blobs: BlobInfo[];
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
  const blobs: BlobInfo[] = [];
  const data: Float32Array[] = [];
  let offset = 0;
  const add = (name: string, kind: BlobInfo["kind"], a: Float32Array) => {
    blobs.push({ name, kind, length: a.length, offset });
    data.push(a);
    offset += Math.ceil((a.length * 4) / ALIGN) * ALIGN;
  };
  for (const [name, w] of state.weights) add(name, "weight", w);
  for (const [name, mv] of state.moments) {
    add(name, "m", mv.m);
    add(name, "v", mv.v);
  }
  const { weights: _w, moments: _m, ...rest } = state;
  const header: Header = { ...rest, blobs };
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const pre = Buffer.alloc(16);
  pre.write(CHECKPOINT_MAGIC, 0, "latin1");
  pre.writeUInt32LE(CHECKPOINT_VERSION, 8);
  pre.writeUInt32LE(json.length, 12);
  const dataStart = Math.ceil((16 + json.length) / ALIGN) * ALIGN;

  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fh = await open(tmp, "w");
  try {
    await fh.write(pre, 0, 16, 0);
    await fh.write(json, 0, json.length, 16);
    for (let i = 0; i < data.length; i++) {
      const a = data[i] as Float32Array;
      const b = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      await fh.write(b, 0, b.length, dataStart + (blobs[i] as BlobInfo).offset);
    }
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
}

export async function readCheckpoint(path: string): Promise<CheckpointState> {
  const buf = await readFile(path);
  const bad = (what: string) => new InputError(what, { file: path });
  if (buf.length < 16 || buf.toString("latin1", 0, 8) !== CHECKPOINT_MAGIC)
    throw bad("not a steerlm checkpoint (bad magic)");
  const version = buf.readUInt32LE(8);
  if (version !== CHECKPOINT_VERSION)
    throw bad(`checkpoint version ${version} is not supported (expected ${CHECKPOINT_VERSION})`);
  const len = buf.readUInt32LE(12);
  if (16 + len > buf.length) throw bad("truncated checkpoint header");
  let header: Header;
  try {
    header = JSON.parse(buf.toString("utf8", 16, 16 + len)) as Header;
  } catch {
    throw bad("corrupt checkpoint header");
  }
  const dataStart = Math.ceil((16 + len) / ALIGN) * ALIGN;
  const weights = new Map<string, Float32Array>();
  const moments = new Map<string, { m: Float32Array; v: Float32Array }>();
  for (const b of header.blobs) {
    const start = dataStart + b.offset;
    if (start + b.length * 4 > buf.length)
      throw bad(`truncated checkpoint: tensor ${b.name} (${b.kind}) is cut off`);
    const a = new Float32Array(b.length);
    Buffer.from(a.buffer).set(buf.subarray(start, start + b.length * 4));
    if (b.kind === "weight") weights.set(b.name, a);
    else {
      const mv = moments.get(b.name) ?? { m: new Float32Array(0), v: new Float32Array(0) };
      mv[b.kind] = a;
      moments.set(b.name, mv);
    }
  }
  const { blobs: _b, ...rest } = header;
  return { ...rest, weights, moments };
}
