/**
 * `steerlm export hf`: a run, a checkpoint or a GGUF as a Hugging Face model directory (src/interop/hf-write.ts),
 * or a LoRA run's adapters as a PEFT adapter directory (src/interop/peft.ts) for its untouched base.
 */
import { isGgufFile } from "../gguf/reader.js";
import type { ConvertType } from "../interop/convert.js";
import { ggufToHf } from "../interop/gguf-to-hf.js";
import { type HfWriteResult, writeHfModel } from "../interop/hf-write.js";
import { writePeftAdapter } from "../interop/peft.js";
import { llamaArchFor } from "../model/llama-gguf.js";
import { InputError } from "../util/errors.js";
import { headerSchema } from "./checkpoint.js";
import { checkpointTokenizer, readCheckpointModel, readLoraCheckpoint } from "./export.js";

export interface HfExportOptions {
  /** dtype of every tensor; default f32. */
  type?: ConvertType;
  /** Bytes above which the weights are sharded; default 5 GB. */
  maxShardSize?: number;
  /** A run's base found elsewhere now (ExportOptions.baseGguf). */
  baseGguf?: string;
}

export interface HfExportResult extends HfWriteResult {
  /** The checkpoint exported; null for a GGUF input. */
  checkpoint: string | null;
  step: number | null;
}

/** A run's newest checkpoint, a checkpoint file, or a GGUF model, as a Hugging Face directory. */
export async function exportHf(
  input: string,
  dir: string,
  opts: HfExportOptions = {},
): Promise<HfExportResult> {
  if (isGgufFile(input)) {
    if (opts.baseGguf !== undefined)
      throw new InputError(
        "names the base of a run; a GGUF model has none",
        { setting: "baseGguf" },
        "drop it",
      );
    return { ...(await ggufToHf(input, dir, opts)), checkpoint: null, step: null };
  }
  const m = await readCheckpointModel(input, opts.baseGguf);
  const h = m.header;
  const r = await writeHfModel(
    dir,
    {
      config: h.model,
      arch: llamaArchFor(h.model),
      weight: async (name) => m.weights.get(name) as Float32Array,
      tokenizer: checkpointTokenizer(m),
      schema: m.schema,
    },
    opts,
  );
  return { ...r, checkpoint: m.checkpoint, step: h.step };
}

export interface PeftExportResult {
  dir: string;
  checkpoint: string;
  step: number;
  bytes: number;
  /** The base GGUF the adapter belongs to (its Hugging Face export is the PEFT base). */
  baseModel: string;
}

/**
 * A `steerlm sft --lora` run's adapters as a PEFT adapter directory, with the run's tokenizer files (they carry
 * the steering chat template). `baseModelName` fills adapter_config.json's base_model_name_or_path.
 */
export async function exportPeftAdapter(
  input: string,
  dir: string,
  opts: { type?: ConvertType; baseModelName?: string; baseGguf?: string } = {},
): Promise<PeftExportResult> {
  const r = await readLoraCheckpoint(input, opts.baseGguf);
  const h = r.header;
  const bytes = await writePeftAdapter(dir, {
    config: h.model,
    arch: r.arch,
    lora: r.lora,
    tensors: r.tensors,
    baseModel: opts.baseModelName ?? null,
    tokenizer: {
      tokenizer: checkpointTokenizer(r),
      schema: headerSchema(h, r.checkpoint),
      modelMaxLength: h.model.contextLength,
    },
    ...(opts.type !== undefined ? { type: opts.type } : {}),
  });
  return { dir, checkpoint: r.checkpoint, step: h.step, bytes, baseModel: r.baseModel };
}
