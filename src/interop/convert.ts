/**
 * `convertHfToGguf`: a Hugging Face model directory (config.json, safetensors, tokenizer.json) to a GGUF
 * that llama.cpp loads, tokenizes like the HF tokenizer, and computes the same logits from.
 */
import { existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { AttributeSchema } from "../data/attributes.js";
import { f32, type GgufMetaValue, str, u32 } from "../gguf/types.js";
import type { GgufVocab } from "../gguf/vocab.js";
import { f32ToBf16, type GgufTensorInput, writeGguf } from "../gguf/writer.js";
import type { LlamaConfig } from "../model/config.js";
import { llamaMetadata } from "../model/llama-gguf.js";
import { type HfTokenizer, loadHfTokenizer } from "../tokenizer/hf.js";
import { TOKEN_TYPE, toGgufVocab } from "../tokenizer/to-gguf.js";
import { InputError } from "../util/errors.js";
import { readInputText } from "../util/files.js";
import { log } from "../util/log.js";
import { Progress } from "../util/progress.js";
import { type HfCheckpoint, openHfCheckpoint } from "./checkpoint.js";
import { f32ToF16Checked } from "./float16.js";
import { type HfModelSpec, llama3RopeFactors, type RopeScaling, readHfConfig } from "./hf-config.js";
import { loadPlannedTensor, planTensors, type TensorPlanEntry } from "./hf-tensors.js";
import { steerGguf } from "./steering.js";

export type ConvertType = "f32" | "f16" | "bf16";
export const CONVERT_TYPES: readonly ConvertType[] = ["f32", "f16", "bf16"];

/** A float type as a user writes it (any case), refused by name otherwise. */
export function parseConvertType(text: string): ConvertType {
  const type = text.toLowerCase() as ConvertType;
  if (!CONVERT_TYPES.includes(type)) {
    throw new InputError(`expected one of ${CONVERT_TYPES.join(", ")}, got ${JSON.stringify(text)}`, {
      setting: "type",
    });
  }
  return type;
}

export interface HfModel {
  dir: string;
  spec: HfModelSpec;
  checkpoint: HfCheckpoint;
  plan: TensorPlanEntry[];
}

/** Reads and checks everything but the tensor data: config, checkpoint headers, the tensor plan. */
export async function openHfModel(dir: string): Promise<HfModel> {
  const spec = readHfConfig(dir);
  const checkpoint = await openHfCheckpoint(dir);
  return { dir, spec, checkpoint, plan: planTensors(spec, checkpoint) };
}

export interface ConvertOptions {
  /** Storage type of the 2-D weights; norms and biases stay F32 either way (as llama.cpp's converter does). */
  type?: ConvertType;
  /** general.name; default: the directory's name. */
  name?: string;
  /**
   * Steer with this schema (its steering chat template, `steerlm.schema`): a model trained on SteerLM data by
   * another engine. Default: the schema of config.json's `steerlm` key (a model steerlm exported), else none.
   */
  schema?: AttributeSchema;
}

export interface ConvertResult {
  out: string;
  spec: HfModelSpec;
  tensors: number;
  bytes: number;
  /** Placeholder tokens appended so the vocabulary fills the embedding rows. */
  paddedTokens: number;
}

export async function convertHfToGguf(
  dir: string,
  out: string,
  opts: ConvertOptions = {},
): Promise<ConvertResult> {
  const type = parseConvertType(opts.type ?? "f16");
  const model = await openHfModel(dir);
  const { spec } = model;
  const tokenizerPath = join(dir, "tokenizer.json");
  if (!existsSync(tokenizerPath)) {
    throw new InputError(
      "no tokenizer.json in the model directory",
      { file: dir },
      "the GGUF must carry the vocabulary",
    );
  }
  const hf = hfVocab(loadHfTokenizer(tokenizerPath), spec.config, tokenizerPath);
  // A model steerlm exported (config.json's `steerlm` key) gets back everything `export gguf` writes.
  const schema = opts.schema ?? spec.schema;
  if (opts.schema && spec.schema && JSON.stringify(opts.schema) !== JSON.stringify(spec.schema))
    log.warn(
      `${dir}: config.json's steerlm schema is ${spec.schema.name}; steering with ${opts.schema.name} as asked`,
    );
  const steered = schema === null ? { vocab: hf.vocab, metadata: [] } : steerGguf(hf.vocab, schema);

  const tensors: GgufTensorInput[] = [];
  const progress = new Progress({ label: "convert", total: model.plan.length });
  for (const entry of model.plan) {
    const data = await loadPlannedTensor(entry);
    // F16 is encoded right away so that only half the memory is held until the file is written.
    if (entry.shape.length >= 2 && type === "f16") {
      const half = f32ToF16Checked(data, { file: entry.source.file, field: entry.source.name });
      tensors.push({ name: entry.gguf, shape: entry.shape, type: "F16", data: half });
    } else if (entry.shape.length >= 2 && type === "bf16") {
      // BF16 checkpoints (most current models) round-trip bit-exactly; F32 ones are rounded to nearest even.
      tensors.push({ name: entry.gguf, shape: entry.shape, type: "BF16", data: f32ToBf16(data) });
    } else {
      tensors.push({ name: entry.gguf, shape: entry.shape, type: "F32", data });
    }
    progress.tick(1);
  }
  progress.finish();
  if (spec.ropeScaling?.type === "llama3") {
    const c = spec.config;
    tensors.push({
      name: "rope_freqs.weight",
      shape: [c.headDim / 2],
      type: "F32",
      data: llama3RopeFactors(spec.ropeScaling, c.headDim, c.ropeTheta),
    });
  }
  const extra = [...ropeScalingMetadata(spec.arch, spec.ropeScaling), ...steered.metadata];
  const metadata = llamaMetadata(spec.config, steered.vocab, extra, {
    arch: spec.arch,
    name: opts.name ?? basename(resolve(dir)),
    fileType: type === "f16" ? "F16" : type === "bf16" ? "BF16" : "F32",
  });
  const bytes = await writeGguf(out, { metadata, tensors });
  log.debug(
    `${out}: ${spec.family} (${spec.arch}) ${spec.config.numLayers} layers, width ${spec.config.hiddenSize}, ${tensors.length} tensors, ${(bytes / 2 ** 20).toFixed(1)} MiB`,
  );
  return { out, spec, tensors: tensors.length, bytes, paddedTokens: hf.padded };
}

/** rope.scaling.* as llama.cpp reads them (llama-model.cpp); llama3 goes into the rope_freqs tensor instead. */
function ropeScalingMetadata(arch: string, s: RopeScaling | null): Array<[string, GgufMetaValue]> {
  if (s === null || s.type === "llama3") return [];
  const k = (key: string) => `${arch}.rope.scaling.${key}`;
  const out: Array<[string, GgufMetaValue]> = [
    [k("type"), str(s.type)],
    [k("factor"), f32(s.factor)],
  ];
  if (s.type === "yarn") {
    out.push([k("original_context_length"), u32(s.originalContextLength)]);
    if (s.extFactor !== undefined) out.push([k("yarn_ext_factor"), f32(s.extFactor)]);
    if (s.attnFactor !== undefined) out.push([k("yarn_attn_factor"), f32(s.attnFactor)]);
    if (s.betaFast !== undefined) out.push([k("yarn_beta_fast"), f32(s.betaFast)]);
    if (s.betaSlow !== undefined) out.push([k("yarn_beta_slow"), f32(s.betaSlow)]);
  }
  return out;
}

/**
 * The chat template beside a tokenizer.json, for llama.cpp to read from the GGUF: `chat_template.jinja`, where
 * current transformers saves it (and which it reads first), else tokenizer_config.json's `chat_template`,
 * a string or a list of named templates (the one named "default", as llama.cpp's converter takes).
 */
function hfChatTemplate(tokenizerPath: string, inConfig: unknown): string | null {
  const file = join(dirname(tokenizerPath), "chat_template.jinja");
  if (existsSync(file)) return readInputText(file);
  if (typeof inConfig === "string") return inConfig;
  if (Array.isArray(inConfig)) {
    const named = inConfig.find((t: { name?: unknown }) => t?.name === "default") as
      | { template?: unknown }
      | undefined;
    if (typeof named?.template === "string") return named.template;
  }
  return null;
}

/**
 * The tokenizer's GGUF vocabulary, padded to the embedding rows: checkpoints often round vocab_size up
 * (Qwen2: 151936 rows for 151646 tokens), and llama.cpp needs one token per row. Padding tokens are
 * UNUSED, so text never produces them (llama.cpp's converter does the same with "[PAD{i}]").
 */
function hfVocab(
  tokenizer: HfTokenizer,
  config: LlamaConfig,
  source: string,
): { vocab: GgufVocab; padded: number } {
  const vocab: GgufVocab = toGgufVocab(tokenizer);
  const template = hfChatTemplate(source, tokenizer.config.chat_template);
  if (template !== null) vocab.chatTemplate = template;
  const n = vocab.tokens.length;
  if (n > config.vocabSize) {
    throw new InputError(
      `the tokenizer has ${n} tokens but config.json's vocab_size is ${config.vocabSize}`,
      { file: source, field: "vocab_size" },
      "ids beyond the embedding rows would index past the matrix",
    );
  }
  for (let i = n; i < config.vocabSize; i++) {
    vocab.tokens.push(`[PAD${i}]`);
    vocab.tokenTypes.push(TOKEN_TYPE.unused);
    vocab.scores?.push(0);
  }
  return { vocab, padded: config.vocabSize - n };
}
