import { loadSchema } from "../data/attributes.js";
import { templateText } from "../data/template.js";
import { metaString, readGguf, readTensorF32 } from "../gguf/reader.js";
import { type GgufMetaValue, STEERLM_SCHEMA_KEY, STEERLM_TEMPLATE_KEY, str } from "../gguf/types.js";
import { type GgufVocab, readGgufVocab } from "../gguf/vocab.js";
import { writeLoraAdapterGguf } from "../interop/lora-gguf.js";
import { HEAD_WEIGHT } from "../model/head.js";
import { writeLlamaGguf } from "../model/llama-gguf.js";
import { loraNames } from "../model/lora.js";
import { llamaTensorSpecs } from "../model/weights.js";
import { toGgufVocab } from "../tokenizer/to-gguf.js";
import { InputError } from "../util/errors.js";
import { type CheckpointData, readCheckpoint, resolveCheckpoint } from "./checkpoint.js";
import { tokenizerFromJson } from "./setup.js";

/**
 * A run's checkpoint as a GGUF llama.cpp and node-llama-cpp load: the whole model (`exportGguf`, LoRA
 * adapters merged into their base), or a LoRA run's adapters alone (`exportLoraAdapter`, loaded next to the
 * untouched base GGUF: node-llama-cpp's `createContext({lora})`). Both give the same model, and both carry
 * SteerLM's schema and template in their metadata.
 */

export interface ExportOptions {
  /** Storage type of the 2-D weights (norms stay F32). Default F32. */
  type?: "F32" | "F16" | "BF16" | "Q8_0";
  name?: string;
}

export interface ExportResult {
  path: string;
  checkpoint: string;
  step: number;
  bytes: number;
}

/**
 * Writes a checkpoint as a GGUF node-llama-cpp loads: Llama weights (LoRA adapters merged into their
 * frozen base: W + (alpha/r)·B·A), the vocabulary (the run's trained tokenizer, or the base GGUF's), and
 * SteerLM's schema and template in metadata.
 */
export async function exportGguf(
  input: string,
  out: string,
  opts: ExportOptions = {},
): Promise<ExportResult> {
  const checkpoint = resolveCheckpoint(input);
  const ck = readCheckpoint(checkpoint);
  const h = ck.header;
  // A regression attribute model's output is its head, which a llama.cpp GGUF has no place for: exporting
  // the backbone alone would silently give a different model.
  if (ck.weights.has(HEAD_WEIGHT)) {
    throw new InputError(
      "this checkpoint is a regression attribute model (it has a reg_head): a GGUF cannot carry its head",
      { file: checkpoint, field: HEAD_WEIGHT },
      "use the run directly: `steerlm annotate --apm <run> ...`",
    );
  }
  const base = h.baseModel ? await readGguf(h.baseModel) : null;
  let vocab: GgufVocab;
  if (h.tokenizer !== null) vocab = toGgufVocab(tokenizerFromJson(h.tokenizer, checkpoint));
  else if (base) vocab = readGgufVocab(base);
  else throw new InputError("the checkpoint carries no tokenizer and no base model", { file: checkpoint });

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

  const bytes = await writeLlamaGguf(out, {
    config: h.model,
    vocab,
    weights,
    type: opts.type ?? "F32",
    name: opts.name ?? "steerlm",
    metadata: steerlmMetadata(h.schema),
  });
  return { path: out, checkpoint, step: h.step, bytes };
}

/** SteerLM's schema and template, as exported models carry them. */
function steerlmMetadata(schema: string): Array<[string, GgufMetaValue]> {
  return [
    [STEERLM_SCHEMA_KEY, str(JSON.stringify(loadSchema(schema)))],
    [STEERLM_TEMPLATE_KEY, str(templateText())],
  ];
}

export interface LoraExportResult extends ExportResult {
  /** The base GGUF the adapter belongs to. */
  baseModel: string;
}

/** A `steerlm sft --lora` run's adapters as a llama.cpp adapter GGUF. */
export async function exportLoraAdapter(
  input: string,
  out: string,
  opts: { type?: "F32" | "F16"; name?: string } = {},
): Promise<LoraExportResult> {
  const checkpoint = resolveCheckpoint(input);
  const ck = readCheckpoint(checkpoint);
  const h = ck.header;
  if (h.lora === null) {
    throw new InputError(
      "the run is not a LoRA run: it has no adapters",
      { file: checkpoint, field: "lora" },
      "export its full weights with `steerlm export gguf` (without --lora)",
    );
  }
  if (h.baseModel === null) {
    throw new InputError("a LoRA run needs the base GGUF it adapted, and this one names none", {
      file: checkpoint,
      field: "baseModel",
    });
  }
  const base = await readGguf(h.baseModel);
  const arch = metaString(base, "general.architecture");
  if (arch !== "llama" && arch !== "qwen2") {
    throw new InputError(`architecture ${JSON.stringify(arch)} is not supported`, {
      file: h.baseModel,
      field: "general.architecture",
    });
  }
  const tensors = new Map([...ck.weights].filter(([name]) => /\.lora_[ab]$/.test(name)));
  const bytes = await writeLoraAdapterGguf(out, {
    config: h.model,
    arch,
    lora: h.lora,
    tensors,
    type: opts.type ?? "F32",
    name: opts.name ?? "steerlm-lora",
    metadata: steerlmMetadata(h.schema),
  });
  return { path: out, checkpoint, step: h.step, bytes, baseModel: h.baseModel };
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
          const s = scale * (b[o * r + k] as number);
          if (s === 0) continue;
          const row = o * inDim;
          const arow = k * inDim;
          for (let i = 0; i < inDim; i++) w[row + i] += s * (a[arow + i] as number);
        }
      }
      weights.set(baseName, w);
    }
  }
}
