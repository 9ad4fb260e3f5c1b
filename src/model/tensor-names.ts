/** llama.cpp's names of a Llama-family model's tensors (its GGUF convention; steerlm's engine uses them too). */

/** "blk.3.attn_q.weight": tensor `part` of block `layer`. */
export const blockTensor = (layer: number, part: string): string => `blk.${layer}.${part}`;

export type LlamaGlobalTensor = "token_embd" | "output_norm" | "output";
export type LlamaLayerTensor =
  | "attn_norm"
  | "attn_q"
  | "attn_k"
  | "attn_v"
  | "attn_output"
  | "attn_q.bias"
  | "attn_k.bias"
  | "attn_v.bias"
  | "ffn_norm"
  | "ffn_gate"
  | "ffn_up"
  | "ffn_down";
export type LlamaTensorKind = LlamaGlobalTensor | LlamaLayerTensor;

const GLOBAL: ReadonlySet<string> = new Set(["token_embd", "output_norm", "output"]);

/** `llamaTensorName("attn_q", 3)` -> "blk.3.attn_q.weight"; `("attn_q.bias", 3)` -> "blk.3.attn_q.bias". */
export function llamaTensorName(kind: LlamaGlobalTensor): string;
export function llamaTensorName(kind: LlamaLayerTensor, layer: number): string;
export function llamaTensorName(kind: LlamaTensorKind, layer?: number): string {
  const leaf = kind.endsWith(".bias") ? kind : `${kind}.weight`;
  if (GLOBAL.has(kind)) {
    if (layer !== undefined) throw new RangeError(`${kind} is not a per-layer tensor`);
    return leaf;
  }
  if (layer === undefined || !Number.isInteger(layer) || layer < 0) {
    throw new RangeError(`${kind} needs a layer index, got ${String(layer)}`);
  }
  return blockTensor(layer, leaf);
}
