/**
 * LoRA adapters as llama.cpp adapter GGUFs (what `llama_adapter_lora_init` in llama.cpp's
 * src/llama-adapter.cpp reads, and node-llama-cpp's `lora` context option applies to a base model):
 *
 * - metadata: general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (f32), and
 *   general.architecture equal to the base model's (llama.cpp refuses a mismatch);
 * - tensors: `<base tensor name>.lora_a` with ggml shape [in, r] and `.lora_b` [r, out], e.g.
 *   blk.0.attn_q.weight.lora_a; llama.cpp adds scale · B·(A·x) with scale = alpha / r (r = lora_b's ne0).
 *
 * Our engine names the same tensors blk.N.attn_q.lora_a / .lora_b (src/model/lora.ts) with the same shapes
 * and the same alpha / r scaling, so the export only renames and checks shapes.
 */

import { f32, type GgufMetaValue, str } from "../gguf/types.js";
import { type GgufTensorInput, writeGguf } from "../gguf/writer.js";
import type { LlamaConfig } from "../model/config.js";
import { type LlamaArch, llamaArchFor } from "../model/llama-gguf.js";
import { LORA_TARGETS, type LoraOptions, loraNames } from "../model/lora.js";
import { llamaTensorSpecs } from "../model/weights.js";
import { InputError } from "../util/errors.js";

export interface LoraAdapterInput {
  /** The base model's config. */
  config: LlamaConfig;
  /** The base's llama.cpp architecture (llama.cpp refuses an adapter of another); default as writeLlamaGguf picks it. */
  arch?: LlamaArch;
  lora: LoraOptions;
  /** The engine's adapter tensors (blk.N.<part>.lora_a [in, r], .lora_b [r, out]), float32, ggml order. */
  tensors: ReadonlyMap<string, Float32Array>;
  /** Storage type of A and B (default F32). */
  type?: "F32" | "F16";
  name?: string;
  /** Extra metadata (e.g. the SteerLM schema and template). */
  metadata?: ReadonlyArray<readonly [string, GgufMetaValue]>;
}

/** Writes the adapter; returns the bytes written. Every adapted projection must have both A and B. */
export async function writeLoraAdapterGguf(path: string, input: LoraAdapterInput): Promise<number> {
  const { config, lora } = input;
  const r = lora.rank;
  const shapes = new Map(llamaTensorSpecs(config).map((s) => [s.name, s.shape]));
  const fail = (field: string, what: string) => new InputError(what, { file: path, field });
  for (const t of lora.targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) throw fail("lora.targets", `unknown target ${t}`);
  }
  const tensors: GgufTensorInput[] = [];
  const used = new Set<string>();
  for (let l = 0; l < config.numLayers; l++) {
    for (const target of lora.targets) {
      const n = loraNames(l, target);
      const baseName = n.a.replace(/\.lora_a$/, ".weight");
      const [inDim, outDim] = shapes.get(baseName) as [number, number];
      for (const [name, shape] of [
        [n.a, [inDim, r]],
        [n.b, [r, outDim]],
      ] as const) {
        const data = input.tensors.get(name);
        if (data === undefined) throw fail(name, "missing adapter tensor");
        if (data.length !== shape[0] * shape[1]) {
          throw fail(
            name,
            `has ${data.length} values, shape [${shape.join(", ")}] needs ${shape[0] * shape[1]}`,
          );
        }
        used.add(name);
        const suffix = name.endsWith(".lora_a") ? "lora_a" : "lora_b";
        tensors.push({ name: `${baseName}.${suffix}`, shape: [...shape], type: input.type ?? "F32", data });
      }
    }
  }
  const extra = [...input.tensors.keys()].find((k) => !used.has(k));
  if (extra !== undefined) throw fail(extra, `not an adapter tensor of targets ${lora.targets.join(",")}`);
  return writeGguf(path, {
    metadata: [
      ["general.architecture", str(input.arch ?? llamaArchFor(config))],
      ["general.type", str("adapter")],
      ["general.name", str(input.name ?? "steerlm-lora")],
      ["adapter.type", str("lora")],
      ["adapter.lora.alpha", f32(lora.alpha)],
      ...(input.metadata ?? []),
    ],
    tensors,
  });
}
