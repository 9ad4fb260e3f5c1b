/**
 * GGUF v3 writer. Layout as llama.cpp's own writer produces it: header, kv pairs, tensor infos, zero padding
 * to the alignment, then each tensor's data padded to the alignment, in the order given. Written atomically
 * (src/util/atomic.ts): a crash never leaves a half-written model at `path`.
 */
import { basename } from "node:path";
import { AtomicFile } from "../util/atomic.js";
import { Progress } from "../util/progress.js";
import { f32ToBf16, f32ToF16, quantizeQ8_0 } from "./quant.js";
import {
  GGML_TYPES,
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_DIMS,
  GGUF_MAX_TENSOR_NAME_BYTES,
  GGUF_SCALARS,
  GGUF_VALUE_TYPES,
  GGUF_VERSION,
  type GgmlTypeName,
  type GgufMetaValue,
  type GgufScalarType,
  isGgufAlignment,
  tensorByteLength,
} from "./types.js";

export { f32ToBf16, f32ToBf16Bits, f32ToF16, f32ToF16Bits, quantizeQ8_0 } from "./quant.js";

/**
 * `data` is either float32 values (converted to `type` here: F32, F16, BF16, Q8_0) or the raw stored
 * representation: Uint16Array of F16/BF16 bits, or Uint8Array bytes of any type (e.g. copied from a reader).
 */
export interface GgufTensorInput {
  name: string;
  /** ggml order, ne0 first. */
  shape: readonly number[];
  type: GgmlTypeName;
  data: Float32Array | Uint16Array | Uint8Array;
}

export interface GgufWriteInput {
  metadata: ReadonlyArray<readonly [string, GgufMetaValue]>;
  tensors: readonly GgufTensorInput[];
}

/** Types `encodeTensor` converts float32 into. */
export const ENCODABLE_TYPES: readonly GgmlTypeName[] = ["F32", "F16", "BF16", "Q8_0"];

/**
 * Bytes the tensor will take, checked against its data without encoding anything (so a bad tensor fails
 * before the disk is touched, and encoding can happen one tensor at a time while writing).
 */
export function checkTensor(t: GgufTensorInput): number {
  const where = `tensor ${JSON.stringify(t.name)} (${t.type} [${t.shape.join(", ")}])`;
  const expectedBytes = tensorByteLength(t.type, t.shape);
  if (expectedBytes === undefined) {
    throw new RangeError(
      `${where}: ne0 must be a multiple of the block size ${GGML_TYPES[t.type].blockSize}`,
    );
  }
  const d = t.data;
  let bytes = d.byteLength;
  if (d instanceof Float32Array) {
    if (!ENCODABLE_TYPES.includes(t.type)) {
      throw new RangeError(`${where}: cannot quantise float32 to ${t.type}; pass the encoded bytes`);
    }
    bytes = (d.length / GGML_TYPES[t.type].blockSize) * GGML_TYPES[t.type].bytesPerBlock;
    if (d.length % GGML_TYPES[t.type].blockSize !== 0 || bytes !== expectedBytes) {
      throw new RangeError(
        `${where}: data has ${d.length} values, the shape needs ${(expectedBytes / GGML_TYPES[t.type].bytesPerBlock) * GGML_TYPES[t.type].blockSize}`,
      );
    }
  } else if (d instanceof Uint16Array && t.type !== "F16" && t.type !== "BF16") {
    throw new RangeError(`${where}: Uint16Array data is only for F16/BF16`);
  }
  if (bytes !== expectedBytes) {
    throw new RangeError(`${where}: data has ${bytes} bytes, the shape needs ${expectedBytes}`);
  }
  return expectedBytes;
}

/** The bytes stored for a tensor; throws RangeError on a shape/data mismatch (a programming error). */
export function encodeTensor(t: GgufTensorInput): Uint8Array {
  checkTensor(t);
  const d = t.data;
  if (d instanceof Float32Array) {
    if (t.type === "F32") return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    if (t.type === "F16") return asBytes(f32ToF16(d));
    if (t.type === "BF16") return asBytes(f32ToBf16(d));
    return quantizeQ8_0(d);
  }
  return d instanceof Uint16Array ? asBytes(d) : d;
}

function asBytes(a: Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Serialises the header into a list of buffers (kept as chunks: a 150k-token vocab is several MB). */
class HeaderBuilder {
  readonly chunks: Buffer[] = [];
  length = 0;
  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  raw(b: Buffer): void {
    this.push(b);
  }
  u32(v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number | bigint): void {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  string(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  scalar(type: GgufScalarType, v: unknown): void {
    if (type === "string") {
      this.string(v as string);
      return;
    }
    const codec = GGUF_SCALARS[type];
    const b = Buffer.allocUnsafe(codec.bytes);
    codec.write(b, v, 0);
    this.push(b);
  }
  value(key: string, v: GgufMetaValue): void {
    this.string(key);
    this.u32(GGUF_VALUE_TYPES[v.type]);
    if (v.type === "array") {
      this.u32(GGUF_VALUE_TYPES[v.itemType]);
      this.u64(v.value.length);
      for (const x of v.value) this.scalar(v.itemType, x);
    } else {
      this.scalar(v.type, v.value);
    }
  }
}

function alignmentOf(metadata: GgufWriteInput["metadata"]): number {
  const entry = metadata.find(([k]) => k === GGUF_ALIGNMENT_KEY);
  if (entry === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const v = entry[1];
  if (!isGgufAlignment(v)) throw new RangeError(`${GGUF_ALIGNMENT_KEY} must be a uint32 power of two`);
  return v.value;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Checks what llama.cpp's gguf loader would refuse, so the error is ours and names the culprit. */
function validate(input: GgufWriteInput): void {
  const keys = new Set<string>();
  for (const [k] of input.metadata) {
    if (!k) throw new RangeError("empty metadata key");
    if (keys.has(k)) throw new RangeError(`duplicate metadata key ${JSON.stringify(k)}`);
    keys.add(k);
  }
  const names = new Set<string>();
  for (const t of input.tensors) {
    if (names.has(t.name)) throw new RangeError(`duplicate tensor name ${JSON.stringify(t.name)}`);
    names.add(t.name);
    if (Buffer.byteLength(t.name) > GGUF_MAX_TENSOR_NAME_BYTES) {
      throw new RangeError(
        `tensor name ${JSON.stringify(t.name)} is longer than ${GGUF_MAX_TENSOR_NAME_BYTES} bytes`,
      );
    }
    if (t.shape.length > GGUF_MAX_DIMS || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new RangeError(`tensor ${JSON.stringify(t.name)}: bad shape [${t.shape.join(", ")}]`);
    }
  }
}

/** Writes a GGUF v3 file atomically. Returns the number of bytes written. */
export async function writeGguf(path: string, input: GgufWriteInput): Promise<number> {
  validate(input);
  const alignment = alignmentOf(input.metadata);
  // Check every tensor before anything touches the disk; encode each only when it is written.
  const sizes = input.tensors.map(checkTensor);

  const h = new HeaderBuilder();
  h.raw(Buffer.from(GGUF_MAGIC, "latin1"));
  h.u32(GGUF_VERSION);
  h.u64(input.tensors.length);
  h.u64(input.metadata.length);
  for (const [key, v] of input.metadata) h.value(key, v);
  let offset = 0;
  input.tensors.forEach((t, i) => {
    h.string(t.name);
    h.u32(t.shape.length);
    for (const d of t.shape) h.u64(d);
    h.u32(GGML_TYPES[t.type].id);
    h.u64(offset);
    offset = alignUp(offset + sizes[i]!, alignment);
  });
  // Like llama.cpp and gguf-py: the header is padded only when a data section follows.
  const headerPad = input.tensors.length > 0 ? alignUp(h.length, alignment) - h.length : 0;
  if (headerPad) h.raw(Buffer.alloc(headerPad));

  const out = await AtomicFile.create(path);
  try {
    await out.write(Buffer.concat(h.chunks, h.length));
    let written = h.length;
    const MB = 1 << 20;
    // Only big files get a bar: a few-MB test model writes in milliseconds.
    const progress =
      offset > 256 * MB
        ? new Progress({ label: `writing ${basename(path)} (MB)`, total: Math.ceil(offset / MB) })
        : undefined;
    for (const t of input.tensors) {
      const blob = encodeTensor(t);
      await out.write(blob);
      const pad = alignUp(blob.byteLength, alignment) - blob.byteLength;
      if (pad) await out.write(new Uint8Array(pad));
      written += blob.byteLength + pad;
      progress?.tick((blob.byteLength + pad) / MB);
    }
    progress?.finish();
    await out.commit();
    return written;
  } catch (e) {
    await out.abort();
    throw e;
  }
}
