/**
 * GGUF reader. `readGguf` reads only the header (metadata + tensor infos) through a small rolling buffer,
 * so a multi-GB model costs a few MB; tensor data is read on demand with `readTensorBytes`/`readTensorF32`.
 * Every problem in a file is an InputError naming the file, the byte offset and the field being read.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { InputError } from "../util/errors.js";
import { openInputFile } from "../util/files.js";
import { DECODABLE_TYPES, dequantize } from "./quant.js";
import {
  elementCount,
  GGML_TYPES,
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_DIMS,
  GGUF_SCALARS,
  GGUF_VERSION,
  type GgufArrayValue,
  type GgufFile,
  type GgufMetaValue,
  type GgufScalarType,
  type GgufTensorInfo,
  ggmlTypeById,
  ggufValueTypeById,
  isGgufAlignment,
  tensorByteLength,
} from "./types.js";

const CHUNK = 1 << 20;

/** A forward-only cursor over a file with a refillable buffer. `what` names the field being read, for errors. */
class Cursor {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  what = "header";

  constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    readonly size: number,
  ) {}

  remaining(): number {
    return this.size - this.pos;
  }

  fail(what: string, at = this.pos): InputError {
    return new InputError(what, { file: this.path, field: `byte ${at}: ${this.what}` });
  }

  /** Makes `n` bytes at `pos` available in `buf`; returns their offset inside `buf`. */
  private async need(n: number): Promise<number> {
    const inBuf = this.pos - this.bufStart;
    if (inBuf + n <= this.buf.length) return inBuf;
    if (this.pos + n > this.size) {
      throw this.fail(`file ends at byte ${this.size} but ${n} more bytes are needed (truncated file?)`);
    }
    const len = Math.min(Math.max(n, CHUNK), this.size - this.pos);
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.fh.read(buf, got, len - got, this.pos + got);
      if (bytesRead === 0) throw this.fail(`file ended early while reading (it shrank during the read?)`);
      got += bytesRead;
    }
    this.buf = buf;
    this.bufStart = this.pos;
    return 0;
  }

  async bytes(n: number): Promise<Buffer> {
    const o = await this.need(n);
    this.pos += n;
    return this.buf.subarray(o, o + n);
  }
  async u32(): Promise<number> {
    const o = await this.need(4);
    this.pos += 4;
    return this.buf.readUInt32LE(o);
  }
  /** A u64 count or offset; refuses values past 2^53 (no real file has them). */
  async u64n(): Promise<number> {
    const o = await this.need(8);
    const v = this.buf.readBigUInt64LE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.fail(`value ${v} is implausibly large`);
    this.pos += 8;
    return Number(v);
  }
  async string(): Promise<string> {
    const at = this.pos;
    const len = await this.u64n();
    if (len > this.size - this.pos) {
      throw this.fail(`string length ${len} runs past the end of the file (${this.size} bytes)`, at);
    }
    return (await this.bytes(len)).toString("utf8");
  }

  async scalar(type: Exclude<GgufScalarType, "string">): Promise<number | bigint | boolean> {
    const n = GGUF_SCALARS[type].bytes;
    const o = await this.need(n);
    this.pos += n;
    return this.decode(type, o);
  }

  // Fast paths for long arrays (a 150k-token vocabulary): read from the buffer without an await per item;
  // undefined means "not fully buffered", and the caller falls back to the async read.
  bufferedString(): string | undefined {
    const o = this.pos - this.bufStart;
    if (o + 8 > this.buf.length) return undefined;
    const len = this.buf.readBigUInt64LE(o);
    if (len > BigInt(this.buf.length - o - 8)) return undefined;
    const end = o + 8 + Number(len);
    this.pos += 8 + Number(len);
    return this.buf.toString("utf8", o + 8, end);
  }
  bufferedScalar(type: Exclude<GgufScalarType, "string">): number | bigint | boolean | undefined {
    const o = this.pos - this.bufStart;
    const n = GGUF_SCALARS[type].bytes;
    if (o + n > this.buf.length) return undefined;
    this.pos += n;
    return this.decode(type, o);
  }

  private decode(type: Exclude<GgufScalarType, "string">, o: number): number | bigint | boolean {
    const v = GGUF_SCALARS[type].read(this.buf, o);
    if (type !== "bool") return v;
    if (v !== 0 && v !== 1) throw this.fail(`bool must be 0 or 1, got ${v}`, this.pos - 1);
    return v === 1;
  }
}

async function readValue(c: Cursor, type: GgufScalarType): Promise<GgufMetaValue> {
  if (type === "string") return { type, value: await c.string() };
  const v = await c.scalar(type);
  // The cast is sound: `scalar` returns the JS type that matches `type`.
  return { type, value: v } as GgufMetaValue;
}

async function readArray(c: Cursor): Promise<GgufArrayValue> {
  const typeAt = c.pos;
  const itemType = ggufValueTypeById(await c.u32());
  if (itemType === undefined) throw c.fail("unknown array element type", typeAt);
  if (itemType === "array")
    throw c.fail("arrays of arrays are not supported (llama.cpp rejects them too)", typeAt);
  const n = await c.u64n();
  const minItem = itemType === "string" ? 8 : GGUF_SCALARS[itemType].bytes;
  if (n * minItem > c.size - c.pos) throw c.fail(`array of ${n} ${itemType} runs past the end of the file`);
  const values: Array<string | number | bigint | boolean> = new Array(n);
  const what = c.what;
  for (let i = 0; i < n; i++) {
    if (c.remaining() < 8) c.what = `${what}[${i}]`; // only near the end: naming every element is costly
    values[i] =
      itemType === "string"
        ? (c.bufferedString() ?? (await c.string()))
        : (c.bufferedScalar(itemType) ?? (await c.scalar(itemType)));
  }
  c.what = what;
  return { type: "array", itemType, value: values } as GgufArrayValue;
}

/** Whether `path` is a file that starts with the GGUF magic (whatever its extension). */
export function isGgufFile(path: string): boolean {
  if (!statSync(path, { throwIfNoEntry: false })?.isFile()) return false;
  const fd = openSync(path, "r");
  try {
    const magic = Buffer.alloc(4);
    return readSync(fd, magic, 0, 4, 0) === 4 && magic.toString("latin1") === GGUF_MAGIC;
  } finally {
    closeSync(fd);
  }
}

/** Reads the header of a GGUF (v2 or v3) file. Tensor data stays on disk. */
export async function readGguf(path: string): Promise<GgufFile> {
  const fh = await openInputFile(path);
  try {
    const size = (await fh.stat()).size;
    const c = new Cursor(fh, path, size);
    c.what = "magic";
    const magic = (await c.bytes(4)).toString("latin1");
    if (magic !== GGUF_MAGIC) {
      const hint = ["ggml", "ggmf", "ggjt", "lmgg", "fmgg", "tjgg"].includes(magic.toLowerCase())
        ? "this is a pre-GGUF ggml file; convert it with a current llama.cpp"
        : "is this a GGUF model file?";
      throw new InputError(
        `not a GGUF file: magic is ${JSON.stringify(magic)}, expected ${JSON.stringify(GGUF_MAGIC)}`,
        {
          file: path,
          field: "byte 0: magic",
        },
        hint,
      );
    }
    c.what = "version";
    const version = await c.u32();
    if (version !== 2 && version !== GGUF_VERSION) {
      const hint =
        (version & 0xffff) === 0 ? "a big-endian GGUF? only little-endian files are supported" : undefined;
      throw new InputError(
        `unsupported GGUF version ${version} (supported: 2, ${GGUF_VERSION})`,
        { file: path, field: "byte 4: version" },
        hint,
      );
    }
    c.what = "tensor count";
    const nTensors = await c.u64n();
    c.what = "metadata count";
    const nKv = await c.u64n();
    // Each kv takes at least 12 bytes and each tensor info at least 24: bounds garbage counts before looping.
    if (nKv * 12 + nTensors * 24 > size)
      throw c.fail(`counts (${nTensors} tensors, ${nKv} keys) exceed the file size`);

    const metadata = new Map<string, GgufMetaValue>();
    for (let i = 0; i < nKv; i++) {
      c.what = `metadata key #${i}`;
      const key = await c.string();
      if (metadata.has(key)) throw c.fail(`duplicate metadata key ${JSON.stringify(key)}`);
      c.what = `metadata ${JSON.stringify(key)}`;
      const typeAt = c.pos;
      const type = ggufValueTypeById(await c.u32());
      if (type === undefined) throw c.fail("unknown value type", typeAt);
      metadata.set(key, type === "array" ? await readArray(c) : await readValue(c, type));
    }

    let alignment = GGUF_DEFAULT_ALIGNMENT;
    const al = metadata.get(GGUF_ALIGNMENT_KEY);
    if (al !== undefined) {
      if (!isGgufAlignment(al)) {
        throw new InputError(`must be a uint32 power of two, got ${al.type} ${String(al.value)}`, {
          file: path,
          field: GGUF_ALIGNMENT_KEY,
        });
      }
      alignment = al.value;
    }

    const tensors: GgufTensorInfo[] = [];
    const names = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      c.what = `tensor #${i} name`;
      const name = await c.string();
      if (names.has(name)) throw c.fail(`duplicate tensor name ${JSON.stringify(name)}`);
      names.add(name);
      c.what = `tensor ${JSON.stringify(name)}`;
      const nDims = await c.u32();
      if (nDims > GGUF_MAX_DIMS)
        throw c.fail(`has ${nDims} dimensions; ggml allows at most ${GGUF_MAX_DIMS}`);
      const shape: number[] = [];
      for (let d = 0; d < nDims; d++) shape.push(await c.u64n());
      const typeAt = c.pos;
      const typeId = await c.u32();
      const type = ggmlTypeById(typeId);
      if (type === undefined) throw c.fail(`unknown ggml tensor type id ${typeId}`, typeAt);
      const offsetAt = c.pos;
      const offset = await c.u64n();
      if (offset % alignment !== 0)
        throw c.fail(`data offset ${offset} is not a multiple of ${alignment}`, offsetAt);
      const byteLength = tensorByteLength(type, shape);
      if (byteLength === undefined) {
        throw c.fail(
          `ne0 = ${shape[0]} is not a multiple of ${type}'s block size ${GGML_TYPES[type].blockSize}`,
        );
      }
      tensors.push({ name, shape, type, offset, byteLength });
    }

    // llama.cpp skips the padding only when there is a data section (a vocab-only file ends unpadded).
    const dataOffset = nTensors > 0 ? Math.ceil(c.pos / alignment) * alignment : c.pos;
    for (const t of tensors) {
      const end = dataOffset + t.offset + t.byteLength;
      if (end > size) {
        throw new InputError(
          `tensor data ends at byte ${end} but the file has ${size} bytes (truncated file?)`,
          { file: path, field: `tensor ${JSON.stringify(t.name)}` },
        );
      }
    }
    return { version, metadata, tensors, alignment, dataOffset, path };
  } catch (e) {
    throw await withMangleHint(e, fh);
  } finally {
    await fh.close();
  }
}

/**
 * A binary GGUF that went through a text conversion has invalid bytes replaced by U+FFFD (EF BF BD);
 * the parse then fails far from the cause. Say so when the header region shows that signature.
 */
async function withMangleHint(e: unknown, fh: FileHandle): Promise<unknown> {
  if (!(e instanceof InputError) || e.hint !== undefined) return e;
  const head = Buffer.alloc(4096);
  const { bytesRead } = await fh.read(head, 0, head.length, 0);
  if (head.subarray(0, bytesRead).indexOf(Buffer.from([0xef, 0xbf, 0xbd])) < 0) return e;
  return new InputError(
    e.what,
    e.place,
    "the header contains U+FFFD replacement bytes (EF BF BD): the file was probably decoded and re-encoded as text; get an unmodified copy",
  );
}

export function findTensor(file: GgufFile, name: string): GgufTensorInfo {
  const t = file.tensors.find((x) => x.name === name);
  if (t === undefined) {
    throw new InputError("tensor not found", { file: file.path, field: name });
  }
  return t;
}

/** The raw bytes of one tensor, exactly as stored. */
export async function readTensorBytes(file: GgufFile, name: string): Promise<Uint8Array> {
  const t = findTensor(file, name);
  const out = new Uint8Array(t.byteLength);
  const fh = await open(file.path, "r");
  try {
    let got = 0;
    while (got < t.byteLength) {
      const { bytesRead } = await fh.read(out, got, t.byteLength - got, file.dataOffset + t.offset + got);
      if (bytesRead === 0) {
        throw new InputError(
          `file ended after ${file.dataOffset + t.offset + got} bytes while reading the data`,
          {
            file: file.path,
            field: `tensor ${JSON.stringify(name)}`,
          },
        );
      }
      got += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return out;
}

/** One tensor decoded to float32, in ggml order (ne0 fastest). */
export async function readTensorF32(file: GgufFile, name: string): Promise<Float32Array> {
  const t = findTensor(file, name);
  if (!DECODABLE_TYPES.includes(t.type)) {
    throw new InputError(`cannot decode tensor type ${t.type} (supported: ${DECODABLE_TYPES.join(", ")})`, {
      file: file.path,
      field: `tensor ${JSON.stringify(name)}`,
    });
  }
  return dequantize(t.type, await readTensorBytes(file, name), elementCount(t.shape));
}

// ---- typed metadata getters: absent or mistyped keys are InputErrors naming the key ----

function meta(file: GgufFile, key: string): GgufMetaValue {
  const v = file.metadata.get(key);
  if (v === undefined) throw new InputError("missing metadata key", { file: file.path, field: key });
  return v;
}

function wrongType(file: GgufFile, key: string, want: string, v: GgufMetaValue): InputError {
  const got = v.type === "array" ? `array of ${v.itemType}` : v.type;
  return new InputError(`expected ${want}, got ${got}`, { file: file.path, field: key });
}

export function metaString(file: GgufFile, key: string): string;
export function metaString<T>(file: GgufFile, key: string, fallback: T): string | T;
export function metaString<T>(file: GgufFile, key: string, ...fallback: [T?]): string | T {
  if (fallback.length > 0 && !file.metadata.has(key)) return fallback[0]!;
  const v = meta(file, key);
  if (v.type !== "string") throw wrongType(file, key, "a string", v);
  return v.value;
}

/** Any numeric type (64-bit integers must fit a double exactly). */
export function metaNumber(file: GgufFile, key: string): number;
export function metaNumber<T>(file: GgufFile, key: string, fallback: T): number | T;
export function metaNumber<T>(file: GgufFile, key: string, ...fallback: [T?]): number | T {
  if (fallback.length > 0 && !file.metadata.has(key)) return fallback[0]!;
  const v = meta(file, key);
  if (v.type === "array" || v.type === "string" || v.type === "bool")
    throw wrongType(file, key, "a number", v);
  const x = v.value;
  if (typeof x === "bigint") {
    if (x > BigInt(Number.MAX_SAFE_INTEGER) || x < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new InputError(`value ${x} does not fit a JS number`, { file: file.path, field: key });
    }
    return Number(x);
  }
  return x;
}

export function metaBool(file: GgufFile, key: string): boolean;
export function metaBool<T>(file: GgufFile, key: string, fallback: T): boolean | T;
export function metaBool<T>(file: GgufFile, key: string, ...fallback: [T?]): boolean | T {
  if (fallback.length > 0 && !file.metadata.has(key)) return fallback[0]!;
  const v = meta(file, key);
  if (v.type !== "bool") throw wrongType(file, key, "a bool", v);
  return v.value;
}

type ArrayItem<K> = K extends "string"
  ? string
  : K extends "bool"
    ? boolean
    : K extends "uint64" | "int64"
      ? bigint
      : number;

/** An array value; with `itemType`, also checks the element type. */
export function metaArray(file: GgufFile, key: string): GgufArrayValue["value"];
export function metaArray<K extends GgufScalarType>(
  file: GgufFile,
  key: string,
  itemType: K,
): readonly ArrayItem<K>[];
export function metaArray(file: GgufFile, key: string, itemType?: GgufScalarType): GgufArrayValue["value"] {
  const v = meta(file, key);
  if (v.type !== "array") throw wrongType(file, key, `an array${itemType ? ` of ${itemType}` : ""}`, v);
  if (itemType !== undefined && v.itemType !== itemType)
    throw wrongType(file, key, `an array of ${itemType}`, v);
  return v.value;
}
