/**
 * Pure conversions between float32 and ggml's storage types. No I/O, no allocation beyond the result.
 * Block layouts follow ggml-common.h (block_q8_0, block_q4_0, block_q4_K, block_q6_K); the quantisers
 * reproduce ggml's reference (`quantize_row_*_ref`) rounding so files we write match llama.cpp's bytes.
 */
import { GGML_TYPES, type GgmlTypeName } from "./types.js";

/** Typed-array views read host order; GGUF is little-endian, so views are a fast path only on LE hosts. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE half bits, round-to-nearest-even; overflow -> ±inf; NaN stays NaN (quiet). */
export function f32ToF16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf / NaN
  const e = exp - 127 + 15; // rebias
  if (e >= 31) return sign | 0x7c00; // too large: inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the full 24-bit significand right, rounding half to even.
    if (e < -10) return sign; // below half the smallest subnormal: ±0
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h; // a carry into bit 10 correctly yields the smallest normal
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // carry may ripple into the exponent (and to inf): correct
  return h;
}

let f16Table: Float32Array | undefined;

/** Built from bits so that every half (NaN payloads too, made quiet) widens exactly as ggml's does. */
function buildF16Table(): Float32Array {
  const t = new Float32Array(65536);
  const bits = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0)
      t[h] = (sign ? -1 : 1) * mant * 2 ** -24; // zero / subnormal: exact in float32
    else if (exp === 31)
      bits[h] = (sign | 0x7f800000 | (mant ? 0x400000 | (mant << 13) : 0)) >>> 0; // NaNs come out quiet, as from F16C
    else bits[h] = (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
  }
  return t;
}

export function f16BitsToF32(bits: number): number {
  f16Table ??= buildF16Table();
  return f16Table[bits & 0xffff]!;
}

/** float32 -> bfloat16 bits, round-to-nearest-even (NaN kept quiet, as ggml_compute_fp32_to_bf16 does). */
export function f32ToBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

export function f32ToF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]!);
  return out;
}

export function f32ToBf16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToBf16Bits(src[i]!);
  return out;
}

/** C's roundf: halves away from zero (Math.round rounds -2.5 to -2). */
function roundf(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/**
 * Q8_0: blocks of 32 values as {f16 d, int8 q[32]} with x ≈ d·q, d = max|x|/127. Error per value is at
 * most d/2 (plus the f16 rounding of d). `src.length` must be a multiple of 32.
 */
export function quantizeQ8_0(src: Float32Array): Uint8Array {
  const { blockSize: QK, bytesPerBlock } = GGML_TYPES.Q8_0;
  if (src.length % QK !== 0) throw new RangeError(`Q8_0 needs a multiple of ${QK} values, got ${src.length}`);
  const nb = src.length / QK;
  const out = new Uint8Array(nb * bytesPerBlock);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(src[b * QK + j]!));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    const o = b * bytesPerBlock;
    view.setUint16(o, f32ToF16Bits(d), true);
    for (let j = 0; j < QK; j++) view.setInt8(o + 2 + j, roundf(Math.fround(src[b * QK + j]! * id)));
  }
  return out;
}

/** Decodes `n` values of a tensor stored as `type` into float32. Throws RangeError for types we cannot decode. */
export function dequantize(type: GgmlTypeName, bytes: Uint8Array, n: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { blockSize: QK, bytesPerBlock } = GGML_TYPES[type];
  const out = new Float32Array(n);
  switch (type) {
    case "F32":
      if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0)
        out.set(new Float32Array(bytes.buffer, bytes.byteOffset, n));
      else for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case "F16": {
      f16Table ??= buildF16Table();
      const table = f16Table;
      if (LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) {
        const h = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
        for (let i = 0; i < n; i++) out[i] = table[h[i]!] as number;
      } else {
        for (let i = 0; i < n; i++) out[i] = table[view.getUint16(i * 2, true)]!;
      }
      return out;
    }
    case "BF16":
      for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(view.getUint16(i * 2, true));
      return out;
    case "Q8_0":
      for (let b = 0; b < n / QK; b++) {
        const o = b * bytesPerBlock;
        const d = f16BitsToF32(view.getUint16(o, true));
        for (let j = 0; j < QK; j++) out[b * QK + j] = d * view.getInt8(o + 2 + j);
      }
      return out;
    case "Q4_0":
      for (let b = 0; b < n / QK; b++) {
        const o = b * bytesPerBlock;
        const d = f16BitsToF32(view.getUint16(o, true));
        for (let j = 0; j < 16; j++) {
          const q = bytes[o + 2 + j]!;
          out[b * 32 + j] = ((q & 0xf) - 8) * d;
          out[b * 32 + j + 16] = ((q >> 4) - 8) * d;
        }
      }
      return out;
    case "Q4_K":
      dequantizeQ4K(bytes, view, out);
      return out;
    case "Q6_K":
      dequantizeQ6K(bytes, view, out);
      return out;
    default:
      throw new RangeError(`cannot decode ggml type ${type} (supported: ${DECODABLE_TYPES.join(", ")})`);
  }
}

export const DECODABLE_TYPES: readonly GgmlTypeName[] = [
  "F32",
  "F16",
  "BF16",
  "Q8_0",
  "Q4_0",
  "Q4_K",
  "Q6_K",
];

/** The 6-bit scale and min of sub-block j (of 8) packed into the 12 bytes at `s` (ggml's get_scale_min_k4). */
function scaleMinK4(j: number, bytes: Uint8Array, s: number): [number, number] {
  const q = (i: number) => bytes[s + i]!;
  if (j < 4) return [q(j) & 63, q(j + 4) & 63];
  return [(q(j + 4) & 0xf) | ((q(j - 4) >> 6) << 4), (q(j + 4) >> 4) | ((q(j) >> 6) << 4)];
}

/** block_q4_K (144 bytes / 256 values): f16 d, f16 dmin, u8 scales[12], u8 qs[128]; x = d·sc·q − dmin·m. */
function dequantizeQ4K(bytes: Uint8Array, view: DataView, out: Float32Array): void {
  for (let b = 0; b < out.length / 256; b++) {
    const o = b * 144;
    const d = f16BitsToF32(view.getUint16(o, true));
    const dmin = f16BitsToF32(view.getUint16(o + 2, true));
    let qs = o + 16;
    let y = b * 256;
    for (let j = 0; j < 8; j += 2) {
      const [sc1, m1] = scaleMinK4(j, bytes, o + 4);
      const [sc2, m2] = scaleMinK4(j + 1, bytes, o + 4);
      const d1 = d * sc1;
      const d2 = d * sc2;
      const mm1 = dmin * m1;
      const mm2 = dmin * m2;
      for (let l = 0; l < 32; l++) out[y + l] = d1 * (bytes[qs + l]! & 0xf) - mm1;
      for (let l = 0; l < 32; l++) out[y + 32 + l] = d2 * (bytes[qs + l]! >> 4) - mm2;
      qs += 32;
      y += 64;
    }
  }
}

/** block_q6_K (210 bytes / 256 values): u8 ql[128], u8 qh[64], i8 scales[16], f16 d; x = d·sc·(q − 32). */
function dequantizeQ6K(bytes: Uint8Array, view: DataView, out: Float32Array): void {
  for (let b = 0; b < out.length / 256; b++) {
    const o = b * 210;
    const d = f16BitsToF32(view.getUint16(o + 208, true));
    for (let half = 0; half < 2; half++) {
      const ql = o + half * 64;
      const qh = o + 128 + half * 32;
      const sc = o + 192 + half * 8;
      const y = b * 256 + half * 128;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = bytes[qh + l]!;
        const lo = bytes[ql + l]!;
        const lo2 = bytes[ql + l + 32]!;
        const q1 = ((lo & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((lo2 & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((lo >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((lo2 >> 4) | (((h >> 6) & 3) << 4)) - 32;
        out[y + l] = d * view.getInt8(sc + is) * q1;
        out[y + l + 32] = d * view.getInt8(sc + is + 2) * q2;
        out[y + l + 64] = d * view.getInt8(sc + is + 4) * q3;
        out[y + l + 96] = d * view.getInt8(sc + is + 6) * q4;
      }
    }
  }
}
