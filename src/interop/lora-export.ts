/**
 * A `steerlm sft --lora` run's adapters as a llama.cpp adapter GGUF, to load next to the untouched base
 * GGUF the run trained on (node-llama-cpp: `createContext({lora: adapter})`). The merged alternative is
 * `exportGguf` (src/run/export.ts); both give the same model.
 */
import { loadSchema } from "../data/attributes.js";
import { metaString, readGguf } from "../gguf/reader.js";
import { STEERLM_SCHEMA_KEY, STEERLM_TEMPLATE_KEY, str } from "../gguf/types.js";
import { readCheckpoint } from "../run/checkpoint.js";
import { resolveCheckpoint, STEERLM_TEMPLATE_TEXT } from "../run/export.js";
import { InputError } from "../util/errors.js";
import { writeLoraAdapterGguf } from "./lora-gguf.js";

export interface LoraExportResult {
  path: string;
  checkpoint: string;
  step: number;
  bytes: number;
  /** The base GGUF the adapter belongs to. */
  baseModel: string;
}

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
    metadata: [
      [STEERLM_SCHEMA_KEY, str(JSON.stringify(loadSchema(h.schema)))],
      [STEERLM_TEMPLATE_KEY, str(STEERLM_TEMPLATE_TEXT)],
    ],
  });
  return { path: out, checkpoint, step: h.step, bytes, baseModel: h.baseModel };
}
