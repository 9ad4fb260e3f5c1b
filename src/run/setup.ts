import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { AttributeSchema } from "../data/attributes.js";
import { type DataRecord, toConversation } from "../data/record.js";
import { renderConversation } from "../data/template.js";
import { metaString, readGguf, readTensorF32 } from "../gguf/reader.js";
import { ggufSchema } from "../gguf/schema.js";
import { ggufAddsBos, readGgufVocab } from "../gguf/vocab.js";
import { convertHfToGguf } from "../interop/convert.js";
import { hfSchema } from "../interop/hf-config.js";
import { type LlamaConfig, resolveLlamaConfig } from "../model/config.js";
import { llamaTensorShapes, readLlamaConfig, writeLlamaGguf } from "../model/llama-gguf.js";
import { defaultFrozenType, ggufMatrixType, ggufWeightSource } from "../model/load.js";
import { type FrozenType, LORA_FROZEN_DEFAULT } from "../model/model.js";
import type { WeightSource } from "../model/weights.js";
import { saveTokenizerJson, trainByteLevelBpe } from "../tokenizer/bpe-train.js";
import { addControlTokensToGgufVocab, extendEmbeddingRows } from "../tokenizer/control.js";
import { loadGgufTokenizer } from "../tokenizer/gguf.js";
import { HfTokenizer, loadHfTokenizer } from "../tokenizer/hf.js";
import type { HfAddedToken, HfTokenizerJson } from "../tokenizer/hf-json.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { log } from "../util/log.js";
import { type ResolvedSftConfig, readModelInit } from "./config.js";
import type { ModelInitInput } from "./settings.js";

/** What a run starts from: the model shape, its tokenizer, and initial weights (null: random). */
export interface ModelSetup {
  config: LlamaConfig;
  tokenizer: Tokenizer;
  /** Prepended to every sequence when the vocabulary's model expects a BOS. */
  bos: number | null;
  /** Initial weights; null: a new model, initialised from the seed. */
  source: WeightSource | null;
  /** tokenizer.json text of a tokenizer trained here (it travels inside checkpoints). */
  tokenizerJson: string | null;
  /** The GGUF the run started from. */
  baseModel: string | null;
}

export const TOKENIZER_FILE = "tokenizer.json";

/**
 * A new model: a byte-level BPE trained on the text of the training conversations (the template's text
 * parts; control tokens are added as specials by the trainer), saved as `<runDir>/tokenizer.json`, and a
 * Llama config whose vocabulary is that tokenizer's. A run directory that already has the tokenizer
 * (a resumed run) reuses it, so the ids never change under a checkpoint.
 */
export function setupNewModel(
  runDir: string,
  init: string | ModelInitInput,
  records: readonly DataRecord[],
  schema: AttributeSchema,
  vocabSize: number,
  seqLen: number,
  attributeTokens = true,
): ModelSetup {
  const { input, source } = readModelInit(init);
  const path = join(runDir, TOKENIZER_FILE);
  if (!existsSync(path)) {
    const texts = function* () {
      for (const r of records) {
        for (const p of renderConversation(toConversation(r, schema), "acsft").parts)
          if (p.kind === "text") yield p.text;
      }
    };
    const t0 = performance.now();
    const pairs = attributeTokens ? attributePairs(schema) : [];
    const bpe = trainByteLevelBpe(texts(), { vocabSize, reserved: pairs.length });
    const json = withPlainTokens(bpe, pairs);
    saveTokenizerJson(path, json);
    log.info(
      `trained a byte-level BPE tokenizer (${vocabSize} ids) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${path}`,
    );
  }
  const tokenizer = loadHfTokenizer(path);
  const config = resolveLlamaConfig(
    { contextLength: seqLen, ...input, vocabSize: tokenizer.vocabSize },
    source,
  );
  return {
    config,
    tokenizer,
    bos: tokenizer.addBos ? tokenizer.bosId : null,
    source: null,
    tokenizerJson: readFileSync(path, "utf8"),
    baseModel: null,
  };
}

/** Every `name:value` of a schema, in canonical order: quality:0 .. verbosity:4. */
export function attributePairs(schema: AttributeSchema): string[] {
  return schema.attributes.flatMap((a) =>
    Array.from({ length: a.max - a.min + 1 }, (_, i) => `${a.name}:${a.min + i}`),
  );
}

/**
 * Appends non-special added tokens (ids after the last one). Why, for the value line: GPT-2's pre-tokenizer
 * cuts `humor:4` into `humor`, `:`, `4`, so a model must compose two attention steps (which attribute a digit
 * belongs to, then find that digit) before it can read one setting, and a small model learns that late (we
 * measured: toxicity and complexity used after 1,500 steps, humor, correctness and verbosity barely).
 * As one token per setting, a response position finds `humor:4` with a single lookup. These tokens are
 * ordinary text (tokenizer.json `special: false`, llama.cpp USER_DEFINED): user text spelling `humor:4`
 * gets the same id, which grants nothing; only `<extra_id_2>`, a control token, opens a value line.
 */
export function withPlainTokens(json: HfTokenizerJson, contents: readonly string[]): HfTokenizerJson {
  let next = -1;
  for (const id of Object.values(json.model.vocab as Record<string, number>)) next = Math.max(next, id);
  for (const t of json.added_tokens) next = Math.max(next, t.id);
  const added: HfAddedToken[] = contents.map((content) => ({
    id: ++next,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: false,
  }));
  return { ...json, added_tokens: [...json.added_tokens, ...added] };
}

/** A tokenizer carried inside a checkpoint (for export and for runs whose directory lost tokenizer.json). */
export function tokenizerFromJson(text: string, source: string): HfTokenizer {
  return new HfTokenizer(JSON.parse(text), {}, source);
}

/**
 * An existing Llama-family GGUF: its config, its vocabulary (through llama.cpp) and its weights. A vocabulary
 * without the SteerLM control tokens (a plain Llama-2 GGUF) first gets them, as CONTROL tokens with new
 * embedding (and output) rows at the mean of the existing ones, written as `<runDir>/base.gguf`, which the
 * run then starts from (and which export and --resume use).
 */
export async function setupFromGguf(path: string, runDir: string): Promise<ModelSetup> {
  const prepared = join(runDir, BASE_FILE);
  let source = existsSync(prepared) ? prepared : path;
  if (source === path && statSync(path, { throwIfNoEntry: false })?.isDirectory()) {
    // A Hugging Face directory (config.json, safetensors, tokenizer.json): converted once, in F32 so that
    // the weights train from exactly what the checkpoint holds.
    const converted = join(runDir, HF_BASE_FILE);
    if (!existsSync(converted)) {
      const r = await convertHfToGguf(path, converted, { type: "f32" });
      log.info(`${path}: converted the Hugging Face model to ${converted} (${r.tensors} tensors)`);
    }
    source = converted;
    path = converted;
  }
  if (source === path) {
    const withControls = await addControlTokensToGguf(path, prepared);
    if (withControls) source = withControls;
  }
  const file = await readGguf(source);
  const config = readLlamaConfig(file);
  const tokenizer = await loadGgufTokenizer(source);
  const weights = ggufWeightSource(file);
  const addBos = ggufAddsBos(file);
  return {
    config,
    tokenizer,
    bos: addBos ? tokenizer.bosId : null,
    source: weights,
    tokenizerJson: null,
    baseModel: source,
  };
}

export const BASE_FILE = "base.gguf";

/**
 * The frozen storage a LoRA run on `model` gets by default: a GGUF's own (model/load.ts `defaultFrozenType`);
 * bf16 (LORA_FROZEN_DEFAULT) for a Hugging Face directory (converted to F32).
 */
export async function defaultRunFrozenType(model: string): Promise<FrozenType> {
  if (statSync(model, { throwIfNoEntry: false })?.isDirectory()) return LORA_FROZEN_DEFAULT;
  return defaultFrozenType(await readGguf(model));
}
export const HF_BASE_FILE = "hf-base.gguf";

/**
 * Without --schema, a run from a steerlm model keeps the model's schema (its GGUF's `steerlm.schema`, a
 * Hugging Face export's `steerlm` key): retrained under the built-in default it would be prompted with
 * attributes it never saw, in another order. Decided once and stored in the settings (source "model").
 */
export async function withModelSchema(resolved: ResolvedSftConfig): Promise<ResolvedSftConfig> {
  const { config: cfg, sources } = resolved;
  if (sources.schema !== "default" || cfg.model === null || cfg.init !== null) return resolved;
  const at = statSync(cfg.model, { throwIfNoEntry: false });
  if (at === undefined) return resolved; // a hub id (a job's model): nothing here to read
  const schema = at.isDirectory() ? hfSchema(cfg.model) : ggufSchema(await readGguf(cfg.model));
  if (schema === null) return resolved;
  log.info(`${cfg.model}: trained with its own attribute schema ${schema.name}`);
  return {
    ...resolved,
    config: { ...cfg, schema: JSON.stringify(schema) },
    sources: { ...sources, schema: "model" },
  };
}

/** Writes `out` with the control tokens added when `path` lacks them; returns `out`, or null when nothing was missing. */
async function addControlTokensToGguf(path: string, out: string): Promise<string | null> {
  const file = await readGguf(path);
  const { vocab, added } = addControlTokensToGgufVocab(readGgufVocab(file));
  if (added.length === 0) return null;
  const config = readLlamaConfig(file);
  const grown: LlamaConfig = { ...config, vocabSize: config.vocabSize + added.length };
  const weights = new Map<string, Float32Array>();
  for (const spec of llamaTensorShapes(config)) {
    let w = await readTensorF32(file, spec.name);
    if (spec.name === "token_embd.weight" || spec.name === "output.weight") {
      w = extendEmbeddingRows(w, config.vocabSize, config.hiddenSize, added.length);
    }
    weights.set(spec.name, w);
  }
  await writeLlamaGguf(out, {
    config: grown,
    vocab,
    weights,
    // the base's own storage: a Q8_0 base stays Q8_0 (its values requantise to the same blocks)
    type: ggufMatrixType(file),
    name: metaString(file, "general.name", "base"),
  });
  log.info(
    `${path}: the vocabulary lacks ${added.map((a) => a.name).join(", ")}; added as control tokens ` +
      `(ids ${added.map((a) => a.id).join(", ")}, embeddings at the mean row) in ${out}`,
  );
  return out;
}
