/**
 * llama.cpp's conventions for Llama-family GGUFs, in one place: tensor names and shapes, the metadata keys
 * (gguf-py/gguf/constants.py), and the two architectures we write.
 *
 * - "llama": plain Llama/Mistral/SmolLM. llama.cpp applies RoPE in its "normal" style (rotating adjacent
 *   pairs 2i, 2i+1). HF checkpoints rotate halves (i, i+d/2), so llama.cpp's convert_hf_to_gguf.py permutes
 *   the rows of attn_q/attn_k. Our own models are defined natively in the GGUF layout, so nothing here
 *   permutes anything; the Hugging Face importer must apply that permutation when it converts.
 * - "qwen2": Llama with q/k/v biases. llama.cpp uses NEOX-style RoPE (halves) for it, so HF Qwen2 weights go
 *   in unpermuted, and the engine must rotate halves for this architecture (see `llamaRopeStyle`).
 *   llama.cpp's qwen2 loader assumes head_dim · n_head = n_embd.
 *
 * Shapes are in ggml order (ne0 first): a linear layer y = W x with W of PyTorch shape [out, in] is stored
 * with shape [in, out], which is the same row-major memory.
 */

import type { RopeMode } from "../ggml/context.js";
import { metaNumber, metaString } from "../gguf/reader.js";
import {
  f32,
  GGML_TYPES,
  type GgmlTypeName,
  type GgufFile,
  type GgufMetaValue,
  str,
  u32,
} from "../gguf/types.js";
import { type GgufVocab, vocabMetadata } from "../gguf/vocab.js";
import { type GgufTensorInput, writeGguf } from "../gguf/writer.js";
import { InputError } from "../util/errors.js";
import type { LlamaConfig } from "./config.js";
import { resolveLlamaConfig } from "./config.js";
import { llamaTensorSpecs } from "./weights.js";

export type LlamaArch = "llama" | "qwen2";

export {
  type LlamaGlobalTensor,
  type LlamaLayerTensor,
  type LlamaTensorKind,
  llamaTensorName,
} from "./tensor-names.js";

/** The architecture we write for a config: Qwen2 when it has q/k/v biases. */
export function llamaArchFor(config: LlamaConfig): LlamaArch {
  return config.qkvBias ? "qwen2" : "llama";
}

/** How llama.cpp rotates q/k for an architecture: "normal" = adjacent pairs, "neox" = halves. */
export function llamaRopeStyle(arch: LlamaArch): RopeMode {
  return arch === "qwen2" ? "neox" : "normal";
}

/** Every tensor a model of this config has, with its ggml shape, in the order we write them. */
export function llamaTensorShapes(config: LlamaConfig): Array<{ name: string; shape: number[] }> {
  return llamaTensorSpecs(config).map(({ name, shape }) => ({ name, shape }));
}

/** general.file_type (`enum llama_ftype`) for the type of the big matrices. */
const FILE_TYPE: Partial<Record<GgmlTypeName, number>> = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 };

export interface LlamaMetadataOptions {
  arch?: LlamaArch;
  name?: string;
  /** The type of the 2-D weights (sets general.file_type). */
  fileType?: GgmlTypeName;
}

/**
 * The metadata entries of a Llama-family GGUF. `extra` entries are appended; one with a key we already
 * set replaces ours in place (e.g. a different general.name).
 */
export function llamaMetadata(
  config: LlamaConfig,
  vocab: GgufVocab,
  extra: ReadonlyArray<readonly [string, GgufMetaValue]> = [],
  options: LlamaMetadataOptions = {},
): Array<[string, GgufMetaValue]> {
  const arch = options.arch ?? llamaArchFor(config);
  const source = "model config";
  if (vocab.tokens.length !== config.vocabSize) {
    throw new InputError(
      `the vocabulary has ${vocab.tokens.length} tokens but vocabSize is ${config.vocabSize}`,
      {
        file: source,
        field: "vocabSize",
      },
    );
  }
  const customHeadDim = config.headDim * config.numHeads !== config.hiddenSize;
  if (arch === "qwen2" && customHeadDim) {
    throw new InputError("llama.cpp's qwen2 architecture needs headDim × numHeads = hiddenSize", {
      file: source,
      field: "headDim",
    });
  }
  const k = (key: string) => `${arch}.${key}`;
  const entries: Array<[string, GgufMetaValue]> = [
    ["general.architecture", str(arch)],
    ["general.name", str(options.name ?? "steerlm")],
    [k("vocab_size"), u32(config.vocabSize)],
    [k("context_length"), u32(config.contextLength)],
    [k("embedding_length"), u32(config.hiddenSize)],
    [k("block_count"), u32(config.numLayers)],
    [k("feed_forward_length"), u32(config.ffnSize)],
    [k("rope.dimension_count"), u32(config.headDim)],
    [k("rope.freq_base"), f32(config.ropeTheta)],
    [k("attention.head_count"), u32(config.numHeads)],
    [k("attention.head_count_kv"), u32(config.numKvHeads)],
    [k("attention.layer_norm_rms_epsilon"), f32(config.rmsNormEps)],
  ];
  if (customHeadDim) {
    entries.push(
      [k("attention.key_length"), u32(config.headDim)],
      [k("attention.value_length"), u32(config.headDim)],
    );
  }
  const ft = FILE_TYPE[options.fileType ?? "F32"];
  if (ft !== undefined) entries.push(["general.file_type", u32(ft)]);
  if (options.fileType === "Q8_0") entries.push(["general.quantization_version", u32(2)]);
  entries.push(...vocabMetadata(vocab, "vocabulary"));
  for (const [key, value] of extra) {
    const i = entries.findIndex(([e]) => e === key);
    if (i >= 0) entries[i] = [key, value];
    else entries.push([key, value]);
  }
  return entries;
}

export interface LlamaGgufInput {
  config: LlamaConfig;
  vocab: GgufVocab;
  /** Keyed by GGUF tensor name (`llamaTensorName`); float32 values in ggml order. */
  weights: ReadonlyMap<string, Float32Array>;
  /** Storage type of the 2-D weights; norms and biases always stay F32 (as llama.cpp's converter does). */
  type?: "F32" | "F16" | "BF16" | "Q8_0";
  /** Extra metadata, e.g. [STEERLM_SCHEMA_KEY, str(json)]. */
  metadata?: ReadonlyArray<readonly [string, GgufMetaValue]>;
  arch?: LlamaArch;
  name?: string;
}

/** Writes a Llama-family model that llama.cpp / node-llama-cpp loads. Returns the bytes written. */
export async function writeLlamaGguf(path: string, input: LlamaGgufInput): Promise<number> {
  const { config, weights } = input;
  const type = input.type ?? "F32";
  const expected = llamaTensorShapes(config);
  const names = new Set(expected.map((t) => t.name));
  const unexpected = [...weights.keys()].filter((n) => !names.has(n));
  if (unexpected.length > 0) {
    throw new InputError(
      `unexpected tensors for this config: ${unexpected.slice(0, 5).join(", ")}`,
      {
        file: path,
        field: "weights",
      },
      config.tiedEmbeddings && unexpected.includes("output.weight")
        ? "the config has tied embeddings"
        : undefined,
    );
  }
  const tensors: GgufTensorInput[] = expected.map(({ name, shape }) => {
    const data = weights.get(name);
    if (data === undefined) throw new InputError("missing weight", { file: path, field: name });
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) {
      throw new InputError(`has ${data.length} values, shape [${shape.join(", ")}] needs ${n}`, {
        file: path,
        field: name,
      });
    }
    // 1-D tensors stay F32; a quantised type needs ne0 to be a multiple of its block.
    let t: GgmlTypeName = shape.length === 1 ? "F32" : type;
    if (t === "Q8_0" && shape[0]! % GGML_TYPES.Q8_0.blockSize !== 0) t = "F16";
    return { name, shape, type: t, data };
  });
  const metadata = llamaMetadata(config, input.vocab, input.metadata ?? [], {
    arch: input.arch ?? llamaArchFor(config),
    name: input.name ?? "steerlm",
    fileType: type,
  });
  return writeGguf(path, { metadata, tensors });
}

/**
 * The model config stored in a Llama-family GGUF ("llama" or "qwen2"), validated by resolveLlamaConfig.
 * Refuses what our engine does not implement (MoE, RoPE scaling) with the key that says so.
 */
export function readLlamaConfig(file: GgufFile): LlamaConfig {
  const arch = metaString(file, "general.architecture");
  if (arch !== "llama" && arch !== "qwen2") {
    throw new InputError(`architecture ${JSON.stringify(arch)} is not supported (supported: llama, qwen2)`, {
      file: file.path,
      field: "general.architecture",
    });
  }
  const k = (key: string) => `${arch}.${key}`;
  const refuse = (key: string, what: string) => new InputError(what, { file: file.path, field: key });
  if (metaNumber(file, k("expert_count"), 0) > 0)
    throw refuse(k("expert_count"), "mixture-of-experts models are not supported");
  const scaling = metaString(file, k("rope.scaling.type"), "none");
  if (scaling !== "none" && !(scaling === "linear" && metaNumber(file, k("rope.scaling.factor"), 1) === 1)) {
    throw refuse(k("rope.scaling.type"), `RoPE scaling ${JSON.stringify(scaling)} is not supported`);
  }
  const has = (name: string) => file.tensors.some((t) => t.name === name);
  const embd = file.tensors.find((t) => t.name === "token_embd.weight");
  const tokens = file.metadata.get("tokenizer.ggml.tokens");
  const vocabFromTensors = embd?.shape[1] ?? (tokens?.type === "array" ? tokens.value.length : undefined);
  // keys a file may leave out take resolveLlamaConfig's defaults (llama.cpp's)
  const config = resolveLlamaConfig(
    {
      vocabSize: metaNumber(file, k("vocab_size"), vocabFromTensors ?? 0),
      hiddenSize: metaNumber(file, k("embedding_length")),
      numLayers: metaNumber(file, k("block_count")),
      numHeads: metaNumber(file, k("attention.head_count")),
      numKvHeads: metaNumber(file, k("attention.head_count_kv"), undefined),
      headDim: metaNumber(file, k("attention.key_length"), undefined),
      ffnSize: metaNumber(file, k("feed_forward_length")),
      ropeTheta: metaNumber(file, k("rope.freq_base"), undefined),
      rmsNormEps: metaNumber(file, k("attention.layer_norm_rms_epsilon")),
      tiedEmbeddings: file.tensors.length > 0 && !has("output.weight"),
      qkvBias: has("blk.0.attn_q.bias"),
      contextLength: metaNumber(file, k("context_length")),
    },
    file.path,
  );
  const rotDims = metaNumber(file, k("rope.dimension_count"), config.headDim);
  if (rotDims !== config.headDim) {
    throw refuse(
      k("rope.dimension_count"),
      `partial RoPE (${rotDims} of ${config.headDim} head dims) is not supported`,
    );
  }
  // steerlm writes a config back as llamaArchFor(config) and rotates as that architecture does: a file
  // named otherwise would be trained with one RoPE and exported with the other
  if (arch !== llamaArchFor(config)) {
    throw new InputError(
      `a ${arch} model ${config.qkvBias ? "with" : "without"} q/k/v biases is not supported (steerlm reads biased models as qwen2, unbiased ones as llama)`,
      { file: file.path, field: "general.architecture" },
    );
  }
  return config;
}
