/**
 * A Llama-family model as a Hugging Face directory that transformers, vLLM and `steerlm model convert` load:
 * config.json, generation_config.json, model.safetensors (or shards and model.safetensors.index.json, as
 * transformers' save_pretrained writes them), tokenizer.json and tokenizer_config.json. The weights come in
 * GGUF layout (ggml order, GGUF names): names and shapes are mapped back, and the "llama" architecture's q/k
 * row permutation is undone.
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { AttributeSchema } from "../data/attributes.js";
import type { LlamaConfig } from "../model/config.js";
import { type LlamaArch, llamaTensorShapes } from "../model/llama-gguf.js";
import type { HfTokenizer } from "../tokenizer/hf.js";
import { tokenizerConfigJson } from "../tokenizer/to-hf.js";
import { writeFileAtomic } from "../util/atomic.js";
import { InputError } from "../util/errors.js";
import { SAFETENSORS_INDEX, SAFETENSORS_SINGLE } from "./checkpoint.js";
import type { ConvertType } from "./convert.js";
import { type HfDtype, toHfConfig } from "./hf-config.js";
import { hfTensorNames, qkPermutedHeads, unpermuteQkRows } from "./hf-tensors.js";
import {
  type SafetensorsFloat,
  type SafetensorsTensorInput,
  safetensorsByteLength,
  writeSafetensors,
} from "./safetensors.js";
import { END_OF_TURN, eosTokenIds, steeringChatTemplate } from "./steering.js";

/** huggingface_hub's MAX_SHARD_SIZE, the default of transformers' save_pretrained. */
export const DEFAULT_MAX_SHARD_SIZE = 5_000_000_000;

export const SAFETENSORS_DTYPE: Readonly<Record<ConvertType, SafetensorsFloat>> = {
  f32: "F32",
  f16: "F16",
  bf16: "BF16",
};
const TORCH_DTYPE: Readonly<Record<ConvertType, HfDtype>> = {
  f32: "float32",
  f16: "float16",
  bf16: "bfloat16",
};

const UNITS: Readonly<Record<string, number>> = {
  "": 1,
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/** "5GB" (decimal units, as huggingface_hub parses them), "500MiB" (binary) or a byte count. */
export function parseShardSize(text: string, field = "maxShardSize"): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = UNITS[(m?.[2] ?? "").toUpperCase()];
  const bytes = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : Number.NaN;
  if (!(bytes >= 1)) {
    throw new InputError(`expected a size such as 5GB, 500MB or 2GiB, got ${JSON.stringify(text)}`, {
      setting: field,
    });
  }
  return bytes;
}

/** The files of one directory's tokenizer: tokenizer.json and tokenizer_config.json. */
export interface HfTokenizerFiles {
  tokenizer: HfTokenizer;
  /** The SteerLM schema: its chat template replaces `chatTemplate`. */
  schema: AttributeSchema | null;
  /** A chat template to carry when there is no schema (the one a converted model came with). */
  chatTemplate?: string;
  modelMaxLength: number;
}

export function writeTokenizerFiles(dir: string, t: HfTokenizerFiles): void {
  const addsBos = t.tokenizer.addBos && t.tokenizer.bosId !== null;
  const chatTemplate = t.schema === null ? t.chatTemplate : steeringChatTemplate(t.schema, addsBos);
  writeJson(join(dir, "tokenizer.json"), t.tokenizer.json);
  writeJson(
    join(dir, "tokenizer_config.json"),
    tokenizerConfigJson(t.tokenizer, {
      modelMaxLength: t.modelMaxLength,
      ...(chatTemplate !== undefined ? { chatTemplate } : {}),
    }),
  );
}

export interface HfModelInput {
  config: LlamaConfig;
  /** The llama.cpp architecture whose layout the weights are in ("llama": q/k rows permuted). */
  arch: LlamaArch;
  /** A weight by GGUF name: float32 in ggml order. Called once per tensor, as it is written. */
  weight: (ggufName: string) => Promise<Float32Array>;
  tokenizer: HfTokenizer;
  schema: AttributeSchema | null;
  chatTemplate?: string;
}

export interface HfWriteOptions {
  /** dtype of every tensor (save_pretrained writes norms in the model's dtype too). Default f32. */
  type?: ConvertType;
  /** Above this many bytes of tensors, shards of at most this size (one larger tensor gets its own). */
  maxShardSize?: number;
}

export interface HfWriteResult {
  dir: string;
  architecture: string;
  /** The safetensors files written, in order. */
  shards: string[];
  /** Bytes of tensor data (the index's metadata.total_size). */
  totalSize: number;
}

export async function writeHfModel(
  dir: string,
  input: HfModelInput,
  opts: HfWriteOptions = {},
): Promise<HfWriteResult> {
  const { config } = input;
  const type = opts.type ?? "f32";
  const dtype = SAFETENSORS_DTYPE[type];
  const names = hfTensorNames(config);
  const tensors: SafetensorsTensorInput[] = llamaTensorShapes(config).map(({ name, shape }) => ({
    name: names.get(name) as string,
    shape: [...shape].reverse(),
    dtype,
    values: async () => {
      const w = await input.weight(name);
      const heads = qkPermutedHeads(name, config, input.arch);
      return heads === undefined ? w : unpermuteQkRows(w, heads, shape.length === 1 ? 1 : shape[0]!);
    },
  }));
  mkdirSync(dir, { recursive: true });
  const { shards, totalSize } = await writeShards(dir, tensors, opts.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE);

  const { tokenizer } = input;
  const hfConfig = toHfConfig(config, {
    dtype: TORCH_DTYPE[type],
    bosId: tokenizer.bosId,
    eosId: tokenizer.eosId,
    schema: input.schema,
  });
  writeJson(join(dir, "config.json"), hfConfig);
  const endOfTurn =
    input.schema !== null && tokenizer.hasControlTokens() ? tokenizer.encodeControl(END_OF_TURN) : null;
  writeJson(join(dir, "generation_config.json"), {
    bos_token_id: tokenizer.bosId,
    eos_token_id: eosTokenIds(tokenizer.eosId, endOfTurn),
  });
  writeTokenizerFiles(dir, {
    tokenizer,
    schema: input.schema,
    modelMaxLength: config.contextLength,
    ...(input.chatTemplate !== undefined ? { chatTemplate: input.chatTemplate } : {}),
  });
  return { dir, architecture: (hfConfig.architectures as string[])[0] as string, shards, totalSize };
}

/**
 * huggingface_hub's split (split_state_dict_into_shards_factory): tensors in order, a new shard when the next
 * one would pass the limit, a tensor above the limit alone; one shard is `model.safetensors` with no index,
 * several are `model-00001-of-00003.safetensors`... with the index transformers writes (sorted keys).
 * Safetensors files of an earlier export that the new one does not use are removed: a stale index would
 * otherwise win over a new single file.
 */
async function writeShards(
  dir: string,
  tensors: readonly SafetensorsTensorInput[],
  maxShardSize: number,
): Promise<{ shards: string[]; totalSize: number }> {
  const groups: SafetensorsTensorInput[][] = [];
  let current: SafetensorsTensorInput[] = [];
  let currentSize = 0;
  let totalSize = 0;
  for (const t of tensors) {
    const size = safetensorsByteLength(t);
    totalSize += size;
    if (current.length > 0 && currentSize + size > maxShardSize) {
      groups.push(current);
      current = [];
      currentSize = 0;
    }
    current.push(t);
    currentSize += size;
  }
  if (current.length > 0) groups.push(current);
  const n = groups.length;
  const pad = (i: number) => String(i).padStart(5, "0");
  const shards = groups.map((_, i) =>
    n === 1 ? SAFETENSORS_SINGLE : `model-${pad(i + 1)}-of-${pad(n)}.safetensors`,
  );
  for (const [i, group] of groups.entries()) await writeSafetensors(join(dir, shards[i]!), group);
  const weightMap: Record<string, string> = {};
  if (n > 1) {
    const entries = groups.flatMap((g, i) => g.map((t) => [t.name, shards[i]!] as const));
    for (const [name, shard] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      weightMap[name] = shard;
    writeJson(join(dir, SAFETENSORS_INDEX), { metadata: { total_size: totalSize }, weight_map: weightMap });
  }
  const ours = new Set(shards);
  for (const f of readdirSync(dir)) {
    const stale =
      (f === SAFETENSORS_INDEX && n === 1) ||
      ((f === SAFETENSORS_SINGLE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)) && !ours.has(f));
    if (stale) rmSync(join(dir, f));
  }
  return { shards, totalSize };
}

/** JSON as transformers writes its files: two-space indent, a final newline (whole or not at all). */
export function writeJson(path: string, value: unknown): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}
