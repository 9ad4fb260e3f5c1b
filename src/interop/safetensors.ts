/**
 * safetensors reader and writer (https://huggingface.co/docs/safetensors, format section): an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
 * {...}}`, then the data section; offsets are relative to its start, tensors are row-major (C order) and
 * little-endian. Only the header is read up front; each tensor is read on demand, so a multi-GB checkpoint
 * costs the memory of its largest tensor.
 */
import { open } from "node:fs/promises";
import { f16BitsToF32, f32ToBf16 } from "../gguf/quant.js";
import { AtomicFile } from "../util/atomic.js";
import { describe, InputError, type Place } from "../util/errors.js";
import { openInputFile } from "../util/files.js";
import { f32ToF16Checked } from "./float16.js";

/** Bytes per element of every dtype the format defines; we decode only the float ones below. */
const DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

export type SafetensorsFloat = "F32" | "F16" | "BF16";
const FLOAT_DTYPES: ReadonlySet<string> = new Set(["F32", "F16", "BF16"]);

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  /** PyTorch order: the last dim is contiguous. A linear layer's weight is [out, in]. */
  shape: number[];
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
  /** The file that holds it (sharded checkpoints span several). */
  file: string;
}

export interface SafetensorsFile {
  path: string;
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

/** A header value in an error message: as JSON, or described when it is nested too deep to print. */
function shown(v: unknown): string {
  try {
    return JSON.stringify(v);
  } catch {
    return `${describe(v)}, nested too deep to print`;
  }
}

/** The header of one .safetensors file, validated against the file's size. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsFile> {
  const fh = await openInputFile(path);
  try {
    const size = (await fh.stat()).size;
    const fail = (field: string, what: string) => new InputError(what, { file: path, field });
    if (size < 8) throw fail("header", `file has ${size} bytes; a safetensors file starts with 8`);
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(size - 8) || n > 100_000_000n) {
      throw fail(
        "header",
        `header length ${n} does not fit a file of ${size} bytes (not a safetensors file?)`,
      );
    }
    const hbuf = Buffer.alloc(Number(n));
    await fh.read(hbuf, 0, hbuf.length, 8);
    let header: unknown;
    try {
      header = JSON.parse(hbuf.toString("utf8"));
    } catch (e) {
      throw fail("header", `header is not valid JSON: ${(e as Error).message}`);
    }
    if (header === null || typeof header !== "object" || Array.isArray(header)) {
      throw fail("header", "header must be a JSON object");
    }
    const dataStart = 8 + hbuf.length;
    const dataSize = size - dataStart;
    const tensors = new Map<string, SafetensorsTensor>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        metadata = (raw ?? {}) as Record<string, string>;
        continue;
      }
      const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype = e?.dtype;
      if (typeof dtype !== "string" || DTYPE_BYTES[dtype] === undefined) {
        throw fail(name, `unknown dtype ${shown(dtype)}`);
      }
      const shape = e.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw fail(name, `shape must be a list of non-negative integers, got ${shown(shape)}`);
      }
      const off = e.data_offsets;
      if (
        !Array.isArray(off) ||
        off.length !== 2 ||
        !off.every((o) => Number.isSafeInteger(o) && o >= 0) ||
        off[1] < off[0]
      ) {
        throw fail(name, `data_offsets must be [begin, end], got ${shown(off)}`);
      }
      const [begin, end] = off as [number, number];
      const count = (shape as number[]).reduce((a, b) => a * b, 1);
      const bytes = count * DTYPE_BYTES[dtype]!;
      if (end - begin !== bytes) {
        throw fail(
          name,
          `${dtype} [${shape.join(", ")}] needs ${bytes} bytes but data_offsets span ${end - begin}`,
        );
      }
      if (end > dataSize) {
        throw fail(name, `data ends at ${end} but the data section has ${dataSize} bytes (truncated file?)`);
      }
      tensors.set(name, {
        name,
        dtype,
        shape: shape as number[],
        offset: dataStart + begin,
        byteLength: bytes,
        file: path,
      });
    }
    return { path, tensors, metadata };
  } finally {
    await fh.close();
  }
}

/**
 * A tensor's values as float32, in its stored (PyTorch, row-major) order. F32/F16/BF16 only: other dtypes
 * are refused by name, since no Llama-family weight should hold them.
 */
export async function readSafetensorsF32(t: SafetensorsTensor): Promise<Float32Array> {
  if (!FLOAT_DTYPES.has(t.dtype)) {
    throw new InputError(
      `dtype ${t.dtype} is not supported (supported: F32, F16, BF16)`,
      { file: t.file, field: t.name },
      "quantised or integer checkpoints need to be saved in a float dtype first",
    );
  }
  const bytes = await readSafetensorsBytes(t);
  const n = t.byteLength / DTYPE_BYTES[t.dtype]!;
  // `bytes` is a fresh, 0-offset buffer, so typed views need no copy. safetensors is little-endian, like
  // every platform Node's prebuilt binaries (and node-llama-cpp's) run on.
  if (t.dtype === "F32") return new Float32Array(bytes.buffer, 0, n);
  const half = new Uint16Array(bytes.buffer, 0, n);
  const out = new Float32Array(n);
  if (t.dtype === "F16") for (let i = 0; i < n; i++) out[i] = f16BitsToF32(half[i]!);
  else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = half[i]! << 16;
  }
  return out;
}

/** The raw stored bytes of a tensor. */
export async function readSafetensorsBytes(t: SafetensorsTensor): Promise<Uint8Array> {
  const fh = await open(t.file, "r");
  try {
    const buf = new Uint8Array(t.byteLength);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, t.offset + got);
      if (bytesRead === 0) throw new InputError("unexpected end of file", { file: t.file, field: t.name });
      got += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}

/** A tensor to write: float32 values in PyTorch order (row-major, last dim contiguous), stored as `dtype`. */
export interface SafetensorsTensorInput {
  name: string;
  shape: number[];
  dtype: SafetensorsFloat;
  /** Called when the tensor is written, so that only one tensor's values need to be held at a time. */
  values: () => Promise<Float32Array>;
}

/** The bytes a tensor takes in the data section. */
export function safetensorsByteLength(t: Pick<SafetensorsTensorInput, "shape" | "dtype">): number {
  return t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype]!;
}

/**
 * Writes one .safetensors file: the header (tensors in the given order, then `__metadata__`) padded with
 * spaces to a multiple of 8 bytes, as the reference writer pads it, so every tensor starts aligned; then
 * each tensor's data. transformers refuses a file whose `__metadata__.format` is not a framework it knows,
 * hence the default `{"format": "pt"}`. Written to a temporary file and renamed: a failed export never
 * leaves a half-written file under the real name. Returns the bytes written.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensorInput[],
  metadata: Readonly<Record<string, string>> = { format: "pt" },
): Promise<number> {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    if (!FLOAT_DTYPES.has(t.dtype)) throw new RangeError(`cannot write dtype ${t.dtype}`);
    const bytes = safetensorsByteLength(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  header.__metadata__ = metadata;
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, " ");
  json.copy(padded);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(padded.length));

  const out = await AtomicFile.create(path);
  try {
    await out.write(prefix);
    await out.write(padded);
    for (const t of tensors) {
      const values = await t.values();
      const n = t.shape.reduce((a, b) => a * b, 1);
      if (values.length !== n) {
        throw new InputError(`has ${values.length} values, shape [${t.shape.join(", ")}] needs ${n}`, {
          file: path,
          field: t.name,
        });
      }
      await out.write(encodeFloats(values, t.dtype, { file: path, field: t.name }));
    }
    await out.commit();
    return 8 + padded.length + offset;
  } catch (e) {
    await out.abort();
    throw e;
  }
}

/** Float32 values as the bytes of `dtype` (little-endian, like the format). */
function encodeFloats(values: Float32Array, dtype: SafetensorsFloat, place: Place): Uint8Array {
  const typed =
    dtype === "F32" ? values : dtype === "F16" ? f32ToF16Checked(values, place) : f32ToBf16(values);
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}
