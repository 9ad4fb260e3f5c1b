/**
 * Hugging Face tensor names and layouts (transformers' modeling_llama / modeling_mistral / modeling_qwen2)
 * mapped to llama.cpp's GGUF tensors. A linear layer's weight is PyTorch [out, in], row-major; ggml stores
 * the same memory with shape [in, out], so only the shape list is reversed. The one data change is the q/k
 * row permutation of the "llama" architecture (see `permuteQkRows`).
 */
import type { LlamaConfig } from "../model/config.js";
import {
  type LlamaArch,
  type LlamaLayerTensor,
  llamaRopeStyle,
  llamaTensorName,
  llamaTensorShapes,
} from "../model/llama-gguf.js";
import { LORA_TARGET_TENSOR, type LoraTarget } from "../model/lora.js";
import { InputError } from "../util/errors.js";
import type { HfCheckpoint } from "./checkpoint.js";
import type { HfModelSpec } from "./hf-config.js";
import { readSafetensorsF32, type SafetensorsTensor } from "./safetensors.js";

export interface TensorPlanEntry {
  /** GGUF tensor name. */
  gguf: string;
  /** ggml shape (ne0 first). */
  shape: number[];
  source: SafetensorsTensor;
  /** Permute rows per head (q/k of the "llama" architecture): the number of heads in this projection. */
  permuteHeads?: number;
}

const HF_LAYER: ReadonlyArray<readonly [string, LlamaLayerTensor]> = [
  ["input_layernorm.weight", "attn_norm"],
  ["self_attn.q_proj.weight", "attn_q"],
  ["self_attn.k_proj.weight", "attn_k"],
  ["self_attn.v_proj.weight", "attn_v"],
  ["self_attn.q_proj.bias", "attn_q.bias"],
  ["self_attn.k_proj.bias", "attn_k.bias"],
  ["self_attn.v_proj.bias", "attn_v.bias"],
  ["self_attn.o_proj.weight", "attn_output"],
  ["post_attention_layernorm.weight", "ffn_norm"],
  ["mlp.gate_proj.weight", "ffn_gate"],
  ["mlp.up_proj.weight", "ffn_up"],
  ["mlp.down_proj.weight", "ffn_down"],
];

/** Tensors a checkpoint may carry that hold nothing the model needs (precomputed RoPE tables). */
const IGNORED = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/** PEFT's name of a LoRA target's module in a transformers Llama (q → q_proj): its weight's, in HF_LAYER. */
export function hfLoraModule(target: LoraTarget): string {
  const hf = HF_LAYER.find(([, part]) => part === LORA_TARGET_TENSOR[target])?.[0];
  if (hf === undefined) throw new Error(`no Hugging Face module for LoRA target ${target}`);
  return hf.split(".").at(-2) as string;
}

/** GGUF tensor name -> Hugging Face tensor name, for every tensor a model of this config can have. */
export function hfTensorNames(config: LlamaConfig): Map<string, string> {
  const names = new Map<string, string>([
    [llamaTensorName("token_embd"), "model.embed_tokens.weight"],
    [llamaTensorName("output_norm"), "model.norm.weight"],
    [llamaTensorName("output"), "lm_head.weight"],
  ]);
  for (let l = 0; l < config.numLayers; l++) {
    for (const [hf, kind] of HF_LAYER) names.set(llamaTensorName(kind, l), `model.layers.${l}.${hf}`);
  }
  return names;
}

/**
 * Which checkpoint tensor becomes which GGUF tensor, with every shape checked against the config. Refuses
 * missing tensors, wrong shapes and tensors the architecture does not know (they would be silently lost).
 */
export function planTensors(spec: HfModelSpec, ckpt: HfCheckpoint): TensorPlanEntry[] {
  const { config } = spec;
  const hfName = hfTensorNames(config);
  const used = new Set<string>();
  const plan: TensorPlanEntry[] = [];
  for (const { name, shape } of llamaTensorShapes(config)) {
    const hf = hfName.get(name);
    if (hf === undefined) throw new Error(`no Hugging Face name for GGUF tensor ${name}`);
    const source = ckpt.tensors.get(hf);
    if (source === undefined) {
      const hint =
        hf === "lm_head.weight"
          ? "the checkpoint has no lm_head.weight: set tie_word_embeddings to true in config.json if the model ties them"
          : undefined;
      throw new InputError(`missing tensor ${hf}`, { file: ckpt.dir, field: hf }, hint);
    }
    const expected = [...shape].reverse();
    if (source.shape.length !== expected.length || source.shape.some((d, i) => d !== expected[i])) {
      throw new InputError(
        `shape [${source.shape.join(", ")}] does not match config.json, which implies [${expected.join(", ")}]`,
        { file: source.file, field: hf },
      );
    }
    used.add(hf);
    const entry: TensorPlanEntry = { gguf: name, shape, source };
    const heads = qkPermutedHeads(name, config, spec.arch);
    if (heads !== undefined) entry.permuteHeads = heads;
    plan.push(entry);
  }
  // A tied model may still store lm_head (a copy of the embeddings); it is not needed.
  if (config.tiedEmbeddings) used.add("lm_head.weight");
  const unknown = [...ckpt.tensors.keys()].filter((n) => !used.has(n) && !IGNORED.test(n));
  if (unknown.length > 0) {
    throw new InputError(
      `${unknown.length} tensor(s) that a ${spec.family} model of this config does not have: ${unknown.slice(0, 4).join(", ")}${unknown.length > 4 ? ", ..." : ""}`,
      { file: ckpt.dir, field: unknown[0]! },
      "the checkpoint's architecture differs from config.json (or needs a feature the converter lacks)",
    );
  }
  return plan;
}

/**
 * llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py): within each head of `headDim` rows, row
 * j·(headDim/2) + i moves to 2i + j, so that the halves HF rotates together become the adjacent pairs that
 * llama.cpp's "normal" RoPE rotates. `cols` is 1 for a bias.
 */
export function permuteQkRows(data: Float32Array, heads: number, cols: number): Float32Array {
  return moveQkRows(data, heads, cols, "to-pairs");
}

/** The inverse of `permuteQkRows`: llama.cpp's adjacent-pair row order back to Hugging Face's halves. */
export function unpermuteQkRows(data: Float32Array, heads: number, cols: number): Float32Array {
  return moveQkRows(data, heads, cols, "to-halves");
}

function moveQkRows(
  data: Float32Array,
  heads: number,
  cols: number,
  direction: "to-pairs" | "to-halves",
): Float32Array {
  const rows = data.length / cols;
  const headDim = rows / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new RangeError(`cannot split ${rows} rows into ${heads} heads of even size`);
  }
  const half = headDim / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const halves = (h * headDim + j * half + i) * cols;
        const pairs = (h * headDim + 2 * i + j) * cols;
        const [from, to] = direction === "to-pairs" ? [halves, pairs] : [pairs, halves];
        out.set(data.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

/**
 * Whether `ggufName`'s rows are permuted in `arch`'s GGUF layout (q/k weights, biases and LoRA B of an
 * architecture llama.cpp rotates by adjacent pairs): the number of heads of its projection, else undefined.
 */
export function qkPermutedHeads(ggufName: string, config: LlamaConfig, arch: LlamaArch): number | undefined {
  if (llamaRopeStyle(arch) !== "normal") return undefined;
  if (/\.attn_q\.(weight|bias|lora_b)$/.test(ggufName)) return config.numHeads;
  if (/\.attn_k\.(weight|bias|lora_b)$/.test(ggufName)) return config.numKvHeads;
  return undefined;
}

/** A planned tensor's float32 values in GGUF layout (permuted when the plan says so). */
export async function loadPlannedTensor(entry: TensorPlanEntry): Promise<Float32Array> {
  const data = await readSafetensorsF32(entry.source);
  if (entry.permuteHeads === undefined) return data;
  const cols = entry.shape.length === 1 ? 1 : entry.shape[0]!;
  return permuteQkRows(data, entry.permuteHeads, cols);
}
