/**
 * The GGUF data model, shared by the reader, the writer and everything that builds metadata.
 *
 * Layout of a GGUF v3 file (ggml/include/gguf.h): magic "GGUF", u32 version, u64 tensor count, u64 kv count,
 * the key/value pairs, the tensor infos, padding to `alignment`, then the tensor data blob. All little-endian.
 * Values keep their GGUF type (`{type, value}`) so that uint32 vs int32 vs float32 survive a round trip:
 * llama.cpp rejects some keys when their type differs (e.g. general.alignment must be uint32).
 */

/** GGUF value types with their on-disk ids (`enum gguf_type`). */
export const GGUF_VALUE_TYPES = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

export type GgufValueType = keyof typeof GGUF_VALUE_TYPES;
/** Every type an array element may have: llama.cpp's gguf.cpp rejects arrays of arrays, and so do we. */
export type GgufScalarType = Exclude<GgufValueType, "array">;
/** Types whose values are JS numbers (exact: every one of them fits a double). */
export type GgufNumberType =
  | "uint8"
  | "int8"
  | "uint16"
  | "int16"
  | "uint32"
  | "int32"
  | "float32"
  | "float64";
/** 64-bit integers are kept as bigint so that no value is rounded. */
export type GgufBigIntType = "uint64" | "int64";

export type GgufScalarValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string };

export type GgufArrayValue =
  | { type: "array"; itemType: GgufNumberType; value: readonly number[] }
  | { type: "array"; itemType: GgufBigIntType; value: readonly bigint[] }
  | { type: "array"; itemType: "bool"; value: readonly boolean[] }
  | { type: "array"; itemType: "string"; value: readonly string[] };

export type GgufMetaValue = GgufScalarValue | GgufArrayValue;

const GGUF_TYPE_BY_ID: ReadonlyMap<number, GgufValueType> = new Map(
  Object.entries(GGUF_VALUE_TYPES).map(([name, id]) => [id, name as GgufValueType]),
);

export function ggufValueTypeById(id: number): GgufValueType | undefined {
  return GGUF_TYPE_BY_ID.get(id);
}

type FixedScalarType = Exclude<GgufScalarType, "string">;

interface ScalarCodec {
  /** Bytes one scalar of this type takes on disk; strings are variable (u64 length + UTF-8 bytes). */
  bytes: number;
  /** The raw value at `o` (a bool's byte unchecked: the reader says where a bad one stands). */
  read(b: Buffer, o: number): number | bigint;
  /** `v` must be of the JS type that matches the type (number, bigint or boolean). */
  write(b: Buffer, v: unknown, o: number): void;
}

/** How each fixed-size scalar is laid out (little-endian): the one table the reader and the writer share. */
export const GGUF_SCALARS: Readonly<Record<FixedScalarType, ScalarCodec>> = {
  uint8: { bytes: 1, read: (b, o) => b.readUInt8(o), write: (b, v, o) => b.writeUInt8(v as number, o) },
  int8: { bytes: 1, read: (b, o) => b.readInt8(o), write: (b, v, o) => b.writeInt8(v as number, o) },
  uint16: {
    bytes: 2,
    read: (b, o) => b.readUInt16LE(o),
    write: (b, v, o) => b.writeUInt16LE(v as number, o),
  },
  int16: { bytes: 2, read: (b, o) => b.readInt16LE(o), write: (b, v, o) => b.writeInt16LE(v as number, o) },
  uint32: {
    bytes: 4,
    read: (b, o) => b.readUInt32LE(o),
    write: (b, v, o) => b.writeUInt32LE(v as number, o),
  },
  int32: { bytes: 4, read: (b, o) => b.readInt32LE(o), write: (b, v, o) => b.writeInt32LE(v as number, o) },
  float32: { bytes: 4, read: (b, o) => b.readFloatLE(o), write: (b, v, o) => b.writeFloatLE(v as number, o) },
  bool: { bytes: 1, read: (b, o) => b.readUInt8(o), write: (b, v, o) => b.writeUInt8(v ? 1 : 0, o) },
  uint64: {
    bytes: 8,
    read: (b, o) => b.readBigUInt64LE(o),
    write: (b, v, o) => b.writeBigUInt64LE(v as bigint, o),
  },
  int64: {
    bytes: 8,
    read: (b, o) => b.readBigInt64LE(o),
    write: (b, v, o) => b.writeBigInt64LE(v as bigint, o),
  },
  float64: {
    bytes: 8,
    read: (b, o) => b.readDoubleLE(o),
    write: (b, v, o) => b.writeDoubleLE(v as number, o),
  },
};

/** Bytes one scalar of each fixed-size type takes on disk (the package's public name for GGUF_SCALARS' sizes). */
export const GGUF_SCALAR_BYTES = Object.fromEntries(
  Object.entries(GGUF_SCALARS).map(([type, codec]) => [type, codec.bytes]),
) as Readonly<Record<FixedScalarType, number>>;

const INT_RANGES: Readonly<Record<Exclude<GgufNumberType, "float32" | "float64">, [number, number]>> = {
  uint8: [0, 0xff],
  int8: [-0x80, 0x7f],
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};

/** Throws RangeError when `n` cannot be stored exactly as `type` (a programming error, not user input). */
export function checkNumber(type: GgufNumberType, n: number): number {
  if (type === "float32" || type === "float64") {
    if (typeof n !== "number") throw new RangeError(`GGUF ${type}: expected a number, got ${typeof n}`);
    return n;
  }
  const [lo, hi] = INT_RANGES[type];
  if (!Number.isInteger(n) || n < lo || n > hi) {
    throw new RangeError(`GGUF ${type}: ${String(n)} is not an integer in [${lo}, ${hi}]`);
  }
  return n;
}

const BIG_RANGES: Readonly<Record<GgufBigIntType, [bigint, bigint]>> = {
  uint64: [0n, 0xffff_ffff_ffff_ffffn],
  int64: [-0x8000_0000_0000_0000n, 0x7fff_ffff_ffff_ffffn],
};

export function checkBigInt(type: GgufBigIntType, n: number | bigint): bigint {
  if (typeof n === "number" && !Number.isSafeInteger(n)) {
    throw new RangeError(`GGUF ${type}: ${n} is not a safe integer; pass a bigint`);
  }
  const b = BigInt(n);
  const [lo, hi] = BIG_RANGES[type];
  if (b < lo || b > hi) throw new RangeError(`GGUF ${type}: ${b} is out of range`);
  return b;
}

// Constructors: `u32(3)` reads better than `{type: "uint32", value: 3}` in long metadata lists.
export const u8 = (n: number): GgufMetaValue => ({ type: "uint8", value: checkNumber("uint8", n) });
export const i8 = (n: number): GgufMetaValue => ({ type: "int8", value: checkNumber("int8", n) });
export const u16 = (n: number): GgufMetaValue => ({ type: "uint16", value: checkNumber("uint16", n) });
export const i16 = (n: number): GgufMetaValue => ({ type: "int16", value: checkNumber("int16", n) });
export const u32 = (n: number): GgufMetaValue => ({ type: "uint32", value: checkNumber("uint32", n) });
export const i32 = (n: number): GgufMetaValue => ({ type: "int32", value: checkNumber("int32", n) });
/** The value is rounded to float32 now, so what you read back equals what you passed in. */
export const f32 = (n: number): GgufMetaValue => ({ type: "float32", value: Math.fround(n) });
export const f64 = (n: number): GgufMetaValue => ({ type: "float64", value: checkNumber("float64", n) });
export const u64 = (n: number | bigint): GgufMetaValue => ({
  type: "uint64",
  value: checkBigInt("uint64", n),
});
export const i64 = (n: number | bigint): GgufMetaValue => ({ type: "int64", value: checkBigInt("int64", n) });
export const bool = (b: boolean): GgufMetaValue => ({ type: "bool", value: b });
export const str = (s: string): GgufMetaValue => ({ type: "string", value: s });

export function arr(type: GgufNumberType, values: ArrayLike<number>): GgufMetaValue;
export function arr(type: GgufBigIntType, values: ArrayLike<number | bigint>): GgufMetaValue;
export function arr(type: "bool", values: ArrayLike<boolean>): GgufMetaValue;
export function arr(type: "string", values: ArrayLike<string>): GgufMetaValue;
export function arr(
  type: GgufScalarType,
  values: ArrayLike<number | bigint | boolean | string>,
): GgufMetaValue {
  const list = Array.from(values);
  switch (type) {
    case "string":
      return { type: "array", itemType: type, value: list as string[] };
    case "bool":
      return { type: "array", itemType: type, value: list as boolean[] };
    case "uint64":
    case "int64":
      return {
        type: "array",
        itemType: type,
        value: list.map((v) => checkBigInt(type, v as number | bigint)),
      };
    case "float32":
      return { type: "array", itemType: type, value: list.map((v) => Math.fround(v as number)) };
    default:
      return { type: "array", itemType: type, value: list.map((v) => checkNumber(type, v as number)) };
  }
}

/**
 * ggml tensor types: the id stored in the file (`enum ggml_type`, ggml/include/ggml.h), elements per block
 * and bytes per block (gguf-py `GGML_QUANT_SIZES`). Every type a current GGUF may hold is listed so that
 * the header of any file can be read; only some can be decoded (see `readTensorF32`).
 */
export const GGML_TYPES = {
  F32: { id: 0, blockSize: 1, bytesPerBlock: 4 },
  F16: { id: 1, blockSize: 1, bytesPerBlock: 2 },
  Q4_0: { id: 2, blockSize: 32, bytesPerBlock: 18 },
  Q4_1: { id: 3, blockSize: 32, bytesPerBlock: 20 },
  Q5_0: { id: 6, blockSize: 32, bytesPerBlock: 22 },
  Q5_1: { id: 7, blockSize: 32, bytesPerBlock: 24 },
  Q8_0: { id: 8, blockSize: 32, bytesPerBlock: 34 },
  Q8_1: { id: 9, blockSize: 32, bytesPerBlock: 40 },
  Q2_K: { id: 10, blockSize: 256, bytesPerBlock: 84 },
  Q3_K: { id: 11, blockSize: 256, bytesPerBlock: 110 },
  Q4_K: { id: 12, blockSize: 256, bytesPerBlock: 144 },
  Q5_K: { id: 13, blockSize: 256, bytesPerBlock: 176 },
  Q6_K: { id: 14, blockSize: 256, bytesPerBlock: 210 },
  Q8_K: { id: 15, blockSize: 256, bytesPerBlock: 292 },
  IQ2_XXS: { id: 16, blockSize: 256, bytesPerBlock: 66 },
  IQ2_XS: { id: 17, blockSize: 256, bytesPerBlock: 74 },
  IQ3_XXS: { id: 18, blockSize: 256, bytesPerBlock: 98 },
  IQ1_S: { id: 19, blockSize: 256, bytesPerBlock: 50 },
  IQ4_NL: { id: 20, blockSize: 32, bytesPerBlock: 18 },
  IQ3_S: { id: 21, blockSize: 256, bytesPerBlock: 110 },
  IQ2_S: { id: 22, blockSize: 256, bytesPerBlock: 82 },
  IQ4_XS: { id: 23, blockSize: 256, bytesPerBlock: 136 },
  I8: { id: 24, blockSize: 1, bytesPerBlock: 1 },
  I16: { id: 25, blockSize: 1, bytesPerBlock: 2 },
  I32: { id: 26, blockSize: 1, bytesPerBlock: 4 },
  I64: { id: 27, blockSize: 1, bytesPerBlock: 8 },
  F64: { id: 28, blockSize: 1, bytesPerBlock: 8 },
  IQ1_M: { id: 29, blockSize: 256, bytesPerBlock: 56 },
  BF16: { id: 30, blockSize: 1, bytesPerBlock: 2 },
  TQ1_0: { id: 34, blockSize: 256, bytesPerBlock: 54 },
  TQ2_0: { id: 35, blockSize: 256, bytesPerBlock: 66 },
  MXFP4: { id: 39, blockSize: 32, bytesPerBlock: 17 },
  NVFP4: { id: 40, blockSize: 64, bytesPerBlock: 36 },
  Q1_0: { id: 41, blockSize: 128, bytesPerBlock: 18 },
  Q2_0: { id: 42, blockSize: 64, bytesPerBlock: 18 },
} as const;

export type GgmlTypeName = keyof typeof GGML_TYPES;

const GGML_TYPE_BY_ID: ReadonlyMap<number, GgmlTypeName> = new Map(
  Object.entries(GGML_TYPES).map(([name, t]) => [t.id, name as GgmlTypeName]),
);

export function ggmlTypeById(id: number): GgmlTypeName | undefined {
  return GGML_TYPE_BY_ID.get(id);
}

export function isGgmlTypeName(name: string): name is GgmlTypeName {
  return Object.hasOwn(GGML_TYPES, name);
}

/** Number of elements of a tensor (product of its dims; 1 for a 0-d shape). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Bytes a tensor of this type and shape takes. ggml quantises along ne0 (rows), so ne0 must be a
 * multiple of the block size; returns undefined when it is not (callers turn that into an error).
 */
export function tensorByteLength(type: GgmlTypeName, shape: readonly number[]): number | undefined {
  const { blockSize, bytesPerBlock } = GGML_TYPES[type];
  const ne0 = shape[0] ?? 1;
  if (ne0 % blockSize !== 0) return undefined;
  return (elementCount(shape) / blockSize) * bytesPerBlock;
}

/** One tensor's entry in the header. */
export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne0 (the contiguous, fastest-varying dim) first. A [rows=out, cols=in] matrix is [in, out]. */
  shape: number[];
  type: GgmlTypeName;
  /** Offset of the data relative to the start of the data section (`GgufFile.dataOffset`), as stored. */
  offset: number;
  byteLength: number;
}

export interface GgufFile {
  version: number;
  /** In file order; a Map keeps insertion order, so writing it back preserves the layout. */
  metadata: Map<string, GgufMetaValue>;
  /** In file order. */
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute byte offset of the data section in the file. */
  dataOffset: number;
  path: string;
}

/** Default data alignment (GGUF_DEFAULT_ALIGNMENT); `general.alignment` (uint32) overrides it. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_ALIGNMENT_KEY = "general.alignment";
export const GGUF_MAGIC = "GGUF";
/** The version steerlm writes; it reads 2 as well (the same layout for little-endian files). */
export const GGUF_VERSION = 3;

/** Whether `v` is a valid `general.alignment`: a uint32 power of two. */
export function isGgufAlignment(v: GgufMetaValue): v is GgufMetaValue & { type: "uint32"; value: number } {
  return v.type === "uint32" && v.value !== 0 && (v.value & (v.value - 1)) === 0;
}
/** llama.cpp's GGML_MAX_NAME is 64 including the NUL, so names may have at most 63 bytes. */
export const GGUF_MAX_TENSOR_NAME_BYTES = 63;
export const GGUF_MAX_DIMS = 4;

/** SteerLM metadata carried by exported models (issue 8, item 5). */
export const STEERLM_SCHEMA_KEY = "steerlm.schema";
export const STEERLM_TEMPLATE_KEY = "steerlm.template";
