/**
 * Test fixtures in Hugging Face format, written from the documented conventions and deliberately sharing
 * no code with src/interop (a naming or layout mistake there must not be mirrored here):
 *
 * - safetensors (huggingface/safetensors README, "Format"): u64 LE header size, JSON header
 *   `{name: {dtype, shape, data_offsets}}` + `__metadata__`, padded with spaces to 8 bytes, then the data.
 * - transformers' Llama/Mistral/Qwen2 state dict names: `model.embed_tokens.weight` [V, D],
 *   `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight` [out, in], `...mlp.{gate,up,down}_proj.weight`,
 *   `...input_layernorm.weight`, `...post_attention_layernorm.weight`, `model.norm.weight`,
 *   `lm_head.weight` [V, D] (absent when tie_word_embeddings).
 * - The forward pass of modeling_llama.py / modeling_qwen2.py: RMSNorm, RoPE with `rotate_half` (the two
 *   halves of each head rotate together), GQA by repeating kv heads, SwiGLU MLP, causal softmax attention.
 */
import { symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type FixtureDtype = "F32" | "BF16";

export interface FixtureRopeScaling {
  rope_type: "linear" | "llama3";
  factor: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

export interface FixtureOptions {
  architecture: "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM";
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  ropeTheta: number;
  rmsNormEps: number;
  tied: boolean;
  dtype: FixtureDtype;
  /** Number of safetensors shards (1: a single model.safetensors). */
  shards: number;
  seed: number;
  ropeScaling?: FixtureRopeScaling;
  /** A tokenizer.json to link into the directory. */
  tokenizerJson: string;
  extraConfig?: Record<string, unknown>;
  /** config.json head_dim when heads × head_dim differs from hidden (Mistral-Nemo style); default hidden / heads. */
  headDim?: number;
}

export interface HfTensor {
  shape: number[];
  /** Values exactly as stored (already rounded to the dtype). */
  data: Float32Array;
}

/** Deterministic normal samples (mulberry32 + Box-Muller). */
function normals(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
}

/** bfloat16 bits of a float32, round to nearest even. */
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0] as number;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

function bf16Value(bits: number): number {
  return new Float32Array(new Uint32Array([bits << 16]).buffer)[0] as number;
}

/** The state dict of the described model with random values (mean/std chosen to give non-trivial logits). */
export function makeStateDict(o: FixtureOptions): Map<string, HfTensor> {
  const rand = normals(o.seed);
  const hd = o.headDim ?? o.hidden / o.heads;
  const sd = new Map<string, HfTensor>();
  const add = (name: string, shape: number[], mean: number, std: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const v = Math.fround(mean + std * rand());
      data[i] = o.dtype === "BF16" ? bf16Value(bf16Bits(v)) : v;
    }
    sd.set(name, { shape, data });
  };
  add("model.embed_tokens.weight", [o.vocabSize, o.hidden], 0, 1);
  for (let l = 0; l < o.layers; l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [o.hidden], 1, 0.1);
    add(`${p}self_attn.q_proj.weight`, [o.heads * hd, o.hidden], 0, 0.4);
    add(`${p}self_attn.k_proj.weight`, [o.kvHeads * hd, o.hidden], 0, 0.4);
    add(`${p}self_attn.v_proj.weight`, [o.kvHeads * hd, o.hidden], 0, 0.4);
    if (o.architecture === "Qwen2ForCausalLM") {
      add(`${p}self_attn.q_proj.bias`, [o.heads * hd], 0, 0.3);
      add(`${p}self_attn.k_proj.bias`, [o.kvHeads * hd], 0, 0.3);
      add(`${p}self_attn.v_proj.bias`, [o.kvHeads * hd], 0, 0.3);
    }
    add(`${p}self_attn.o_proj.weight`, [o.hidden, o.heads * hd], 0, 0.3);
    add(`${p}post_attention_layernorm.weight`, [o.hidden], 1, 0.1);
    add(`${p}mlp.gate_proj.weight`, [o.ffn, o.hidden], 0, 0.3);
    add(`${p}mlp.up_proj.weight`, [o.ffn, o.hidden], 0, 0.3);
    add(`${p}mlp.down_proj.weight`, [o.hidden, o.ffn], 0, 0.3);
  }
  add("model.norm.weight", [o.hidden], 1, 0.1);
  if (!o.tied) add("lm_head.weight", [o.vocabSize, o.hidden], 0, 0.3);
  return sd;
}

/** Serialises tensors as one .safetensors file. */
export function encodeSafetensors(tensors: ReadonlyMap<string, HfTensor>, dtype: FixtureDtype): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  const blobs: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    let blob: Buffer;
    if (dtype === "F32") {
      blob = Buffer.alloc(t.data.length * 4);
      for (const [i, v] of t.data.entries()) blob.writeFloatLE(v, i * 4);
    } else {
      blob = Buffer.alloc(t.data.length * 2);
      for (const [i, v] of t.data.entries()) blob.writeUInt16LE(bf16Bits(v), i * 2);
    }
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + blob.length] };
    offset += blob.length;
    blobs.push(blob);
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([size, Buffer.from(json), ...blobs]);
}

/** Writes config.json, the weights (sharded with an index when asked) and links the tokenizer. */
export function writeHfModelDir(dir: string, o: FixtureOptions): Map<string, HfTensor> {
  const sd = makeStateDict(o);
  const model_type = { LlamaForCausalLM: "llama", MistralForCausalLM: "mistral", Qwen2ForCausalLM: "qwen2" }[
    o.architecture
  ];
  const config: Record<string, unknown> = {
    architectures: [o.architecture],
    model_type,
    vocab_size: o.vocabSize,
    hidden_size: o.hidden,
    intermediate_size: o.ffn,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    hidden_act: "silu",
    max_position_embeddings: 256,
    rms_norm_eps: o.rmsNormEps,
    rope_theta: o.ropeTheta,
    rope_scaling: o.ropeScaling ?? null,
    tie_word_embeddings: o.tied,
    torch_dtype: o.dtype === "BF16" ? "bfloat16" : "float32",
    ...(o.architecture === "Qwen2ForCausalLM" ? { use_sliding_window: false, sliding_window: 4096 } : {}),
    ...(o.headDim !== undefined ? { head_dim: o.headDim } : {}),
    ...o.extraConfig,
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  symlinkSync(o.tokenizerJson, join(dir, "tokenizer.json"));
  const names = [...sd.keys()];
  if (o.shards === 1) {
    writeFileSync(join(dir, "model.safetensors"), encodeSafetensors(sd, o.dtype));
    return sd;
  }
  const weightMap: Record<string, string> = {};
  let total = 0;
  const per = Math.ceil(names.length / o.shards);
  for (let s = 0; s < o.shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(o.shards).padStart(5, "0")}.safetensors`;
    const part = new Map(names.slice(s * per, (s + 1) * per).map((n) => [n, sd.get(n) as HfTensor]));
    const buf = encodeSafetensors(part, o.dtype);
    total += buf.length;
    for (const n of part.keys()) weightMap[n] = file;
    writeFileSync(join(dir, file), buf);
  }
  writeFileSync(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
  );
  return sd;
}

// ---- reference forward (float64 accumulation over the stored float32 values) ----

/** y[out] = W[out, in] · x[in] (+ b). */
function linear(w: HfTensor, x: Float64Array, b?: HfTensor): Float64Array {
  const [rows, cols] = w.shape as [number, number];
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = b ? (b.data[r] as number) : 0;
    for (let c = 0; c < cols; c++) s += (w.data[r * cols + c] as number) * (x[c] as number);
    y[r] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: HfTensor, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * (w.data[i] as number));
}

/** transformers' inverse frequencies, including linear and llama3 scaling. */
function inverseFrequencies(o: FixtureOptions, hd: number): Float64Array {
  const inv = new Float64Array(hd / 2);
  for (let i = 0; i < hd / 2; i++) inv[i] = 1 / o.ropeTheta ** ((2 * i) / hd);
  const s = o.ropeScaling;
  if (s?.rope_type === "linear") return inv.map((f) => f / s.factor);
  if (s?.rope_type === "llama3") {
    const old = s.original_max_position_embeddings ?? 8192;
    const low = s.low_freq_factor ?? 1;
    const high = s.high_freq_factor ?? 4;
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < old / high) return f;
      if (wavelen > old / low) return f / s.factor;
      const smooth = (old / wavelen - low) / (high - low);
      return (1 - smooth) * (f / s.factor) + smooth * f;
    });
  }
  return inv;
}

/** rotate_half RoPE on one head vector of size hd, in place. */
function rope(v: Float64Array, off: number, hd: number, pos: number, inv: Float64Array): void {
  const half = hd / 2;
  for (let i = 0; i < half; i++) {
    const a = pos * (inv[i] as number);
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x1 = v[off + i] as number;
    const x2 = v[off + i + half] as number;
    v[off + i] = x1 * c - x2 * s;
    v[off + i + half] = x2 * c + x1 * s;
  }
}

/** Logits [T][V] of the HF model on `ids` (no cache, causal). */
export function referenceLogits(
  o: FixtureOptions,
  sd: ReadonlyMap<string, HfTensor>,
  ids: number[],
): Float64Array[] {
  const W = (n: string) => {
    const t = sd.get(n);
    if (!t) throw new Error(`fixture lacks ${n}`);
    return t;
  };
  const D = o.hidden;
  const hd = o.headDim ?? D / o.heads;
  const group = o.heads / o.kvHeads;
  const inv = inverseFrequencies(o, hd);
  const emb = W("model.embed_tokens.weight");
  let xs = ids.map((id) => Float64Array.from(emb.data.subarray(id * D, (id + 1) * D)));
  for (let l = 0; l < o.layers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (n: string) =>
      o.architecture === "Qwen2ForCausalLM" ? W(`${p}self_attn.${n}.bias`) : undefined;
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    xs.forEach((x, t) => {
      const h = rmsNorm(x, W(`${p}input_layernorm.weight`), o.rmsNormEps);
      const q = linear(W(`${p}self_attn.q_proj.weight`), h, bias("q_proj"));
      const k = linear(W(`${p}self_attn.k_proj.weight`), h, bias("k_proj"));
      for (let hh = 0; hh < o.heads; hh++) rope(q, hh * hd, hd, t, inv);
      for (let hh = 0; hh < o.kvHeads; hh++) rope(k, hh * hd, hd, t, inv);
      qs.push(q);
      ks.push(k);
      vs.push(linear(W(`${p}self_attn.v_proj.weight`), h, bias("v_proj")));
    });
    xs = xs.map((x, t) => {
      const attn = new Float64Array(o.heads * hd);
      for (let hh = 0; hh < o.heads; hh++) {
        const kvh = Math.floor(hh / group);
        const scores = new Float64Array(t + 1);
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < hd; i++)
            dot += (qs[t]?.[hh * hd + i] as number) * (ks[s]?.[kvh * hd + i] as number);
          scores[s] = dot / Math.sqrt(hd);
        }
        const m = Math.max(...scores);
        let z = 0;
        for (let s = 0; s <= t; s++) z += Math.exp((scores[s] as number) - m);
        for (let s = 0; s <= t; s++) {
          const w = Math.exp((scores[s] as number) - m) / z;
          for (let i = 0; i < hd; i++)
            attn[hh * hd + i] = (attn[hh * hd + i] as number) + w * (vs[s]?.[kvh * hd + i] as number);
        }
      }
      const o1 = linear(W(`${p}self_attn.o_proj.weight`), attn);
      const x1 = x.map((v, i) => v + (o1[i] as number));
      const h2 = rmsNorm(x1, W(`${p}post_attention_layernorm.weight`), o.rmsNormEps);
      const g = linear(W(`${p}mlp.gate_proj.weight`), h2);
      const u = linear(W(`${p}mlp.up_proj.weight`), h2);
      const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * (u[i] as number));
      const d = linear(W(`${p}mlp.down_proj.weight`), act);
      return x1.map((v, i) => v + (d[i] as number));
    });
  }
  const head = o.tied ? emb : W("lm_head.weight");
  return xs.map((x) => linear(head, rmsNorm(x, W("model.norm.weight"), o.rmsNormEps)));
}

export function logSoftmax(logits: Float64Array): Float64Array {
  const m = Math.max(...logits);
  let z = 0;
  for (const v of logits) z += Math.exp(v - m);
  const lz = m + Math.log(z);
  return logits.map((v) => v - lz);
}
