import type { AttributeSchema } from "../data/attributes.js";
import { metaString, readGguf, readTensorF32 } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import { type GgufVocab, readGgufVocab } from "../gguf/vocab.js";
import { writeLoraAdapterGguf } from "../interop/lora-gguf.js";
import { steerGguf, steerlmMetadata } from "../interop/steering.js";
import { HEAD_WEIGHT } from "../model/head.js";
import { type LlamaArch, writeLlamaGguf } from "../model/llama-gguf.js";
import { type LoraOptions, loraNames } from "../model/lora.js";
import { llamaTensorSpecs } from "../model/weights.js";
import type { HfTokenizer } from "../tokenizer/hf.js";
import { toGgufVocab } from "../tokenizer/to-gguf.js";
import { ggufVocabTokenizer } from "../tokenizer/to-hf.js";
import { InputError } from "../util/errors.js";
import {
  type CheckpointData,
  type CheckpointHeader,
  checkpointBase,
  headerSchema,
  readCheckpoint,
  resolveCheckpoint,
} from "./checkpoint.js";
import { tokenizerFromJson } from "./setup.js";

/**
 * A run's checkpoint as a GGUF llama.cpp and node-llama-cpp load: the whole model (`exportGguf`, LoRA
 * adapters merged into their base), or a LoRA run's adapters alone (`exportLoraAdapter`, loaded next to the
 * untouched base GGUF: node-llama-cpp's `createContext({lora})`). Both give the same model, and both carry
 * SteerLM's schema and template in their metadata. The checkpoint readers here serve the Hugging Face
 * export too (export-hf.ts).
 */

export interface ExportOptions {
  /** Storage type of the 2-D weights (norms stay F32). Default F32. */
  type?: "F32" | "F16" | "BF16" | "Q8_0";
  name?: string;
  /** A base outside the run, found elsewhere now (the run moved): checked by its SHA-256 (`checkpointBase`). */
  baseGguf?: string;
}

export interface ExportResult {
  path: string;
  checkpoint: string;
  step: number;
  bytes: number;
}

/** A checkpoint's whole model: its header, the base GGUF it started from, every weight (LoRA merged). */
export interface CheckpointModel {
  checkpoint: string;
  header: CheckpointHeader;
  schema: AttributeSchema;
  base: GgufFile | null;
  /** By GGUF name, float32 in ggml order, in the layout of `llamaArchFor(header.model)`. */
  weights: Map<string, Float32Array>;
}

/**
 * A run (its newest checkpoint) or a checkpoint file, with the weights the checkpoint does not hold taken
 * from its base GGUF, and LoRA adapters merged into their frozen base: W + (alpha/r)·B·A.
 */
export async function readCheckpointModel(input: string, baseGguf?: string): Promise<CheckpointModel> {
  const checkpoint = resolveCheckpoint(input);
  const ck = readCheckpoint(checkpoint);
  const h = ck.header;
  // A regression attribute model's output is its head, which neither a llama.cpp GGUF nor a causal LM
  // has a place for: exporting the backbone alone would silently give a different model.
  if (ck.weights.has(HEAD_WEIGHT)) {
    throw new InputError(
      "this checkpoint is a regression attribute model (it has a reg_head): an exported model cannot carry its head",
      { file: checkpoint, field: HEAD_WEIGHT },
      "use the run directly: `steerlm annotate --apm <run> ...`",
    );
  }
  const basePath = await baseOf(h, checkpoint, baseGguf);
  const base = basePath === null ? null : await readGguf(basePath);
  const weights = new Map<string, Float32Array>();
  for (const spec of llamaTensorSpecs(h.model)) {
    const w = ck.weights.get(spec.name) ?? (base ? await readTensorF32(base, spec.name) : undefined);
    if (!w)
      throw new InputError(`weight ${spec.name} is in neither the checkpoint nor a base model`, {
        file: checkpoint,
      });
    weights.set(spec.name, w);
  }
  if (h.lora) mergeLora(ck, weights);
  return { checkpoint, header: h, schema: headerSchema(h, checkpoint), base, weights };
}

/**
 * The checkpoint's base GGUF: where the run recorded it, or `given` for a base that lived outside the run
 * and is elsewhere now (checked by the SHA-256 the run recorded; refused where the run keeps no such base).
 */
async function baseOf(h: CheckpointHeader, checkpoint: string, given?: string): Promise<string | null> {
  if (given !== undefined && !h.baseSha256)
    throw new InputError(
      h.baseModel === null
        ? "the run started from no base model"
        : "the run keeps its base in its own directory (or is older than base checks): nothing to give",
      { file: checkpoint, setting: "baseGguf" },
      "drop it",
    );
  return checkpointBase(h, checkpoint, given);
}

type CheckpointSource = Pick<CheckpointModel, "checkpoint" | "header" | "base">;

/** The checkpoint's vocabulary: its own tokenizer (a model trained from scratch), else its base GGUF's. */
export function checkpointVocab(m: CheckpointSource): GgufVocab {
  if (m.header.tokenizer !== null) return toGgufVocab(tokenizerFromJson(m.header.tokenizer, m.checkpoint));
  if (m.base) return readGgufVocab(m.base);
  throw noTokenizer(m);
}

/** The same as a Hugging Face tokenizer (the base GGUF's vocabulary written as a tokenizer.json). */
export function checkpointTokenizer(m: CheckpointSource): HfTokenizer {
  if (m.header.tokenizer !== null) return tokenizerFromJson(m.header.tokenizer, m.checkpoint);
  if (m.base) return ggufVocabTokenizer(readGgufVocab(m.base), m.base.path);
  throw noTokenizer(m);
}

const noTokenizer = (m: CheckpointSource) =>
  new InputError("the checkpoint carries no tokenizer and no base model", { file: m.checkpoint });

/**
 * Writes a checkpoint as a GGUF node-llama-cpp loads: Llama weights (LoRA adapters merged), the vocabulary
 * (the run's trained tokenizer, or the base GGUF's), and what steering needs (src/interop/steering.ts):
 * SteerLM's schema and template, the chat template, `<extra_id_1>` as end of turn.
 */
export async function exportGguf(
  input: string,
  out: string,
  opts: ExportOptions = {},
): Promise<ExportResult> {
  const m = await readCheckpointModel(input, opts.baseGguf);
  const { vocab, metadata } = steerGguf(checkpointVocab(m), m.schema);
  const bytes = await writeLlamaGguf(out, {
    config: m.header.model,
    vocab,
    weights: m.weights,
    type: opts.type ?? "F32",
    name: opts.name ?? "steerlm",
    metadata,
  });
  return { path: out, checkpoint: m.checkpoint, step: m.header.step, bytes };
}

/** A LoRA run's checkpoint: its adapters and the base GGUF they belong to. */
export interface LoraCheckpoint {
  checkpoint: string;
  header: CheckpointHeader;
  lora: LoraOptions;
  baseModel: string;
  base: GgufFile;
  /** The base's llama.cpp architecture (the layout of its weights, and so of the adapters). */
  arch: LlamaArch;
  /** The engine's adapter tensors (blk.N.<part>.lora_a / .lora_b). */
  tensors: Map<string, Float32Array>;
}

export async function readLoraCheckpoint(input: string, baseGguf?: string): Promise<LoraCheckpoint> {
  const checkpoint = resolveCheckpoint(input);
  const ck = readCheckpoint(checkpoint);
  const h = ck.header;
  if (h.lora === null) {
    throw new InputError(
      "the run is not a LoRA run: it has no adapters",
      { file: checkpoint, field: "lora" },
      "export its full weights without --lora",
    );
  }
  const baseModel = await baseOf(h, checkpoint, baseGguf);
  if (baseModel === null) {
    throw new InputError("a LoRA run needs the base GGUF it adapted, and this one names none", {
      file: checkpoint,
      field: "baseModel",
    });
  }
  const base = await readGguf(baseModel);
  const arch = metaString(base, "general.architecture");
  if (arch !== "llama" && arch !== "qwen2") {
    throw new InputError(`architecture ${JSON.stringify(arch)} is not supported`, {
      file: baseModel,
      field: "general.architecture",
    });
  }
  const tensors = new Map([...ck.weights].filter(([name]) => /\.lora_[ab]$/.test(name)));
  return { checkpoint, header: h, lora: h.lora, baseModel, base, arch, tensors };
}

export interface LoraExportResult extends ExportResult {
  /** The base GGUF the adapter belongs to. */
  baseModel: string;
}

/** A `steerlm sft --lora` run's adapters as a llama.cpp adapter GGUF. */
export async function exportLoraAdapter(
  input: string,
  out: string,
  opts: { type?: "F32" | "F16"; name?: string; baseGguf?: string } = {},
): Promise<LoraExportResult> {
  const r = await readLoraCheckpoint(input, opts.baseGguf);
  const bytes = await writeLoraAdapterGguf(out, {
    config: r.header.model,
    arch: r.arch,
    lora: r.lora,
    tensors: r.tensors,
    type: opts.type ?? "F32",
    name: opts.name ?? "steerlm-lora",
    metadata: steerlmMetadata(headerSchema(r.header, r.checkpoint)),
  });
  return { path: out, checkpoint: r.checkpoint, step: r.header.step, bytes, baseModel: r.baseModel };
}

/**
 * W [in, out] (ggml order: `out` rows of `in` values) += scale · B·A with A [in, r] (r rows of `in`)
 * and B [r, out] (`out` rows of r), so W'[o][i] = W[o][i] + scale · Σ_k B[o][k] · A[k][i].
 */
function mergeLora(ck: CheckpointData, weights: Map<string, Float32Array>): void {
  const lora = ck.header.lora;
  if (!lora) return;
  const scale = lora.alpha / lora.rank;
  const r = lora.rank;
  for (let l = 0; l < ck.header.model.numLayers; l++) {
    for (const target of lora.targets) {
      const n = loraNames(l, target);
      const baseName = n.a.replace(/\.lora_a$/, ".weight");
      const w = Float32Array.from(weights.get(baseName) as Float32Array);
      const a = ck.weights.get(n.a);
      const b = ck.weights.get(n.b);
      if (!a || !b) throw new InputError(`the checkpoint lacks LoRA tensors ${n.a} / ${n.b}`, { field: n.a });
      const inDim = a.length / r;
      const outDim = b.length / r;
      for (let o = 0; o < outDim; o++) {
        for (let k = 0; k < r; k++) {
          const s = scale * b[o * r + k]!;
          if (s === 0) continue;
          const row = o * inDim;
          const arow = k * inDim;
          for (let i = 0; i < inDim; i++) w[row + i]! += s * a[arow + i]!;
        }
      }
      weights.set(baseName, w);
    }
  }
}
