/**
 * LoRA adapters as PEFT adapter directories (what `PeftModel.from_pretrained(base, dir)` loads, and vLLM's
 * `--lora-modules`): adapter_config.json with the keys of PEFT's LoraConfig (peft 0.18,
 * src/peft/tuners/lora/config.py; keys it does not find take its defaults) and adapter_model.safetensors
 * with tensors `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r], where
 * `<module>` is the adapted Linear's name in the transformers model (`model.layers.0.self_attn.q_proj`).
 * PEFT adds (lora_alpha / r)·B·A to the base weight, exactly as steerlm and llama.cpp do.
 *
 * Our A [in, r] and B [r, out] (ggml order) are the same memory as PyTorch's [r, in] and [out, r]; only B's
 * rows of a q/k projection need the "llama" architecture's permutation undone (its rows are the weight's).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { LlamaConfig } from "../model/config.js";
import type { LlamaArch } from "../model/llama-gguf.js";
import { type LoraOptions, loraNames } from "../model/lora.js";
import { InputError } from "../util/errors.js";
import type { ConvertType } from "./convert.js";
import { hfLoraModule, hfTensorNames, qkPermutedHeads, unpermuteQkRows } from "./hf-tensors.js";
import { type HfTokenizerFiles, SAFETENSORS_DTYPE, writeJson, writeTokenizerFiles } from "./hf-write.js";
import { type SafetensorsTensorInput, writeSafetensors } from "./safetensors.js";

export const PEFT_CONFIG = "adapter_config.json";
export const PEFT_WEIGHTS = "adapter_model.safetensors";

export interface PeftAdapterInput {
  /** The base model's config. */
  config: LlamaConfig;
  /** The llama.cpp architecture whose layout the base weights are in ("llama": q/k rows permuted). */
  arch: LlamaArch;
  lora: LoraOptions;
  /** The engine's adapter tensors (blk.N.<part>.lora_a [in, r], .lora_b [r, out]), float32, ggml order. */
  tensors: ReadonlyMap<string, Float32Array>;
  /** adapter_config.json's base_model_name_or_path: where the base's Hugging Face files are, if known. */
  baseModel: string | null;
  /** The tokenizer files to put beside the adapter (they carry the steering chat template). */
  tokenizer: HfTokenizerFiles;
  type?: ConvertType;
}

export async function writePeftAdapter(dir: string, input: PeftAdapterInput): Promise<number> {
  const { config, lora } = input;
  const r = lora.rank;
  const names = hfTensorNames(config);
  const dtype = SAFETENSORS_DTYPE[input.type ?? "f32"];
  const tensors: SafetensorsTensorInput[] = [];
  const modules = new Set<string>();
  for (let l = 0; l < config.numLayers; l++) {
    for (const target of lora.targets) {
      const n = loraNames(l, target);
      const module = (names.get(n.a.replace(/\.lora_a$/, ".weight")) as string).replace(/\.weight$/, "");
      modules.add(hfLoraModule(target));
      const a = tensor(input, n.a);
      const b = tensor(input, n.b);
      const heads = qkPermutedHeads(n.b, config, input.arch);
      tensors.push(
        {
          name: `base_model.model.${module}.lora_A.weight`,
          shape: [r, a.length / r],
          dtype,
          values: async () => a,
        },
        {
          name: `base_model.model.${module}.lora_B.weight`,
          shape: [b.length / r, r],
          dtype,
          values: async () => (heads === undefined ? b : unpermuteQkRows(b, heads, r)),
        },
      );
    }
  }
  mkdirSync(dir, { recursive: true });
  const bytes = await writeSafetensors(join(dir, PEFT_WEIGHTS), tensors);
  writeJson(join(dir, PEFT_CONFIG), {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: input.baseModel,
    revision: null,
    inference_mode: true,
    r,
    lora_alpha: lora.alpha,
    lora_dropout: 0,
    target_modules: [...modules],
    exclude_modules: null,
    fan_in_fan_out: false,
    bias: "none",
    use_rslora: false,
    use_dora: false,
    lora_bias: false,
    modules_to_save: null,
    init_lora_weights: true,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
  });
  writeTokenizerFiles(dir, input.tokenizer);
  return bytes;
}

function tensor(input: PeftAdapterInput, name: string): Float32Array {
  const t = input.tensors.get(name);
  if (t === undefined) throw new InputError("missing adapter tensor", { field: name });
  if (t.length % input.lora.rank !== 0) {
    throw new InputError(`has ${t.length} values, not a multiple of the rank ${input.lora.rank}`, {
      field: name,
    });
  }
  return t;
}
