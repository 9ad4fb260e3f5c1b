import { SteerlmError } from "../util/errors.js";
import type { HfTokenizerJson } from "./hf-json.js";

/**
 * Which llama.cpp pre-tokenizer (`tokenizer.ggml.pre`) runs the same splits as a byte-level BPE
 * tokenizer.json. llama.cpp's own converter recognises tokenizers by hashing the ids of a test string; we
 * recognise the pre-tokenizer's structure instead, for the layouts real tokenizers use:
 *
 * | tokenizer.json pre_tokenizer                                      | llama.cpp pre  | e.g.            |
 * |-------------------------------------------------------------------|----------------|-----------------|
 * | ByteLevel(use_regex)                                              | gpt-2          | GPT-2, ours     |
 * | Sequence[Digits(individual), ByteLevel(use_regex)]                | smollm         | SmolLM 1/2      |
 * | Sequence[Split(Llama-3 regex, Isolated), ByteLevel(no regex)]      | llama-bpe      | Llama 3.x       |
 * | Sequence[Split(Qwen2 regex, Isolated), ByteLevel(no regex)]        | qwen2          | Qwen2/2.5       |
 *
 * llama.cpp hard-wires some model settings to the name: llama-bpe ignores merges for whole words that are
 * in the vocabulary (HF: model.ignore_merges), so a file must agree; qwen2 files carry an NFC normalizer
 * that llama.cpp does not run (identical for NFC input, which is what text usually is).
 */
export type LlamaCppPre = "gpt-2" | "smollm" | "llama-bpe" | "qwen2";

export const LLAMA3_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
export const QWEN2_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface PreTokenizerJson {
  type?: string;
  use_regex?: boolean;
  add_prefix_space?: boolean;
  individual_digits?: boolean;
  pattern?: { Regex?: string; String?: string };
  behavior?: string;
  invert?: boolean;
  pretokenizers?: PreTokenizerJson[];
}

const byteLevel = (p: PreTokenizerJson | undefined, useRegex: boolean) =>
  p?.type === "ByteLevel" && (p.use_regex ?? true) === useRegex && !p.add_prefix_space;

function splitRegex(p: PreTokenizerJson | undefined): string | undefined {
  if (p?.type !== "Split" || p.behavior !== "Isolated" || p.invert) return undefined;
  return p.pattern?.Regex;
}

export function llamaCppPre(json: HfTokenizerJson, source: string): LlamaCppPre {
  const pre = json.pre_tokenizer as PreTokenizerJson | null;
  // A Sequence of exactly two pre-tokenizers: the first splits (digits or a regex), the second is ByteLevel.
  const seq = pre?.type === "Sequence" ? (pre.pretokenizers ?? []) : [];
  const [first, second] = seq.length === 2 ? seq : [];
  let name: LlamaCppPre | undefined;
  if (pre && byteLevel(pre, true)) name = "gpt-2";
  else if (
    first?.type === "Digits" &&
    first.individual_digits &&
    second !== undefined &&
    byteLevel(second, true)
  )
    name = "smollm";
  else if (first !== undefined && second !== undefined && byteLevel(second, false)) {
    const regex = splitRegex(first);
    if (regex === LLAMA3_SPLIT_REGEX) name = "llama-bpe";
    else if (regex === QWEN2_SPLIT_REGEX) name = "qwen2";
  }
  if (!name)
    throw new SteerlmError(
      `${source}: no llama.cpp pre-tokenizer is known to match this pre_tokenizer: ${JSON.stringify(pre).slice(0, 300)}`,
      "supported: GPT-2's ByteLevel, SmolLM's Digits+ByteLevel, Llama-3's and Qwen2's Split+ByteLevel",
    );

  const normalizer = json.normalizer as { type?: string } | null | undefined;
  if (normalizer && !(name === "qwen2" && normalizer.type === "NFC"))
    throw new SteerlmError(
      `${source}: llama.cpp runs no normalizer, this tokenizer has ${JSON.stringify(normalizer)}`,
    );
  const ignoreMerges = (json.model as { ignore_merges?: boolean }).ignore_merges ?? false;
  if (ignoreMerges !== (name === "llama-bpe"))
    throw new SteerlmError(
      `${source}: model.ignore_merges is ${ignoreMerges}, but llama.cpp's "${name}" tokenizer ${name === "llama-bpe" ? "always" : "never"} ignores merges`,
    );
  return name;
}

const BYTE_LEVEL = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
const isolated = (regex: string) => ({
  type: "Split",
  pattern: { Regex: regex },
  behavior: "Isolated",
  invert: false,
});

/**
 * The inverse of `llamaCppPre`: a tokenizer.json's pre_tokenizer and normalizer for a llama.cpp pre name, in
 * the layout the published tokenizers of that family use (the table above). `ignoreMerges` is the
 * model.ignore_merges llama.cpp hard-wires to the name.
 */
export function preTokenizerJson(pre: LlamaCppPre): {
  pre_tokenizer: unknown;
  normalizer: unknown;
  ignoreMerges: boolean;
} {
  switch (pre) {
    case "gpt-2":
      return { pre_tokenizer: BYTE_LEVEL, normalizer: null, ignoreMerges: false };
    case "smollm":
      return {
        pre_tokenizer: {
          type: "Sequence",
          pretokenizers: [{ type: "Digits", individual_digits: true }, BYTE_LEVEL],
        },
        normalizer: null,
        ignoreMerges: false,
      };
    case "llama-bpe":
    case "qwen2":
      return {
        pre_tokenizer: {
          type: "Sequence",
          pretokenizers: [
            isolated(pre === "llama-bpe" ? LLAMA3_SPLIT_REGEX : QWEN2_SPLIT_REGEX),
            { ...BYTE_LEVEL, trim_offsets: false, use_regex: false },
          ],
        },
        normalizer: pre === "qwen2" ? { type: "NFC" } : null,
        ignoreMerges: pre === "llama-bpe",
      };
  }
}

export const LLAMA_CPP_PRES: readonly LlamaCppPre[] = ["gpt-2", "smollm", "llama-bpe", "qwen2"];
