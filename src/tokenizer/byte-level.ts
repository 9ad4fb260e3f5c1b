import { at } from "../util/at.js";

/**
 * GPT-2's byte-level scheme, shared by the BPE trainer and the GGUF export:
 * - every byte maps to one printable character (bytes that are printable Latin-1 map to themselves, the
 *   others to U+0100 and up, in byte order), so any UTF-8 input has a spelling in 256 base tokens;
 * - text is first split with GPT-2's pattern. llama.cpp's "gpt-2" pre-tokenizer uses the same pattern, which
 *   is what lets a vocabulary trained here tokenize identically in llama.cpp.
 */
function buildByteTables(): { order: number[]; toChar: string[]; fromChar: Map<string, number> } {
  const order: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) order.push(b);
  for (let b = 0xa1; b <= 0xac; b++) order.push(b);
  for (let b = 0xae; b <= 0xff; b++) order.push(b);
  const toChar = new Array<string>(256);
  for (const b of order) toChar[b] = String.fromCharCode(b);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (toChar[b] === undefined) {
      toChar[b] = String.fromCharCode(256 + extra++);
      order.push(b);
    }
  }
  const fromChar = new Map(toChar.map((c, b) => [c, b] as const));
  return { order, toChar, fromChar };
}

const tables = buildByteTables();

/** The 256 base symbols in GPT-2's id order ("!" first, as in GPT-2's vocab). */
export const BYTE_SYMBOLS: readonly string[] = tables.order.map((b) => at(tables.toChar, b, "byte table"));

/** GPT-2's pre-tokenization pattern (HF ByteLevel with use_regex, llama.cpp pre "gpt-2"). */
export const GPT2_SPLIT_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

export function gpt2Split(text: string): string[] {
  return text.match(new RegExp(GPT2_SPLIT_PATTERN, "gu")) ?? [];
}

const encoder = new TextEncoder();

/** UTF-8 bytes of `text`, each as its byte-level character. */
export function toByteLevel(text: string): string {
  let out = "";
  for (const b of encoder.encode(text)) out += tables.toChar[b];
  return out;
}

/** Inverse of `toByteLevel` for a whole piece; undefined when a character is not a byte symbol. */
export function fromByteLevel(piece: string): Uint8Array | undefined {
  const bytes = new Uint8Array(piece.length);
  let i = 0;
  for (const ch of piece) {
    const b = tables.fromChar.get(ch);
    if (b === undefined) return undefined;
    bytes[i++] = b;
  }
  return bytes.subarray(0, i);
}
