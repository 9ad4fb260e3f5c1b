/**
 * The Hugging Face importer's edges: the safetensors reader on hand-written bytes, the q/k permutation on a
 * hand-worked example, config mapping per family, and every refusal naming its file, field and value.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openHfCheckpoint } from "../src/interop/checkpoint.js";
import { convertHfToGguf, openHfModel } from "../src/interop/convert.js";
import { mapHfConfig } from "../src/interop/hf-config.js";
import { permuteQkRows } from "../src/interop/hf-tensors.js";
import { readSafetensorsF32, readSafetensorsHeader } from "../src/interop/safetensors.js";
import { saveTokenizerJson, trainByteLevelBpe } from "../src/tokenizer/bpe-train.js";
import { InputError } from "../src/util/errors.js";
import { haveSharedData, runCli, sharedData, tempDir } from "./helpers.js";
import { encodeSafetensors, type FixtureOptions, writeHfModelDir } from "./hf-fixture.js";

const tmp = tempDir("steerlm-interop-edges-");
afterAll(() => tmp.cleanup());
let n = 0;
const newDir = () => {
  const d = join(tmp.path, `m${n++}`);
  mkdirSync(d);
  return d;
};

/** A raw safetensors file from a header object and data bytes, as the format README lays it out. */
function rawSafetensors(header: object, data: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

describe("safetensors reader", () => {
  it("decodes F16, BF16 and F32 little-endian values at their offsets", async () => {
    const data = Buffer.alloc(2 * 3 + 2 * 2 + 4);
    for (const [i, h] of [0x3800, 0xbd00, 0x4200].entries()) data.writeUInt16LE(h, 2 * i); // 0.5, -1.25, 3 in IEEE half
    for (const [i, b] of [0x3fc0, 0xc020].entries()) data.writeUInt16LE(b, 6 + 2 * i); // 1.5, -2.5 in bfloat16
    data.writeFloatLE(0.1, 10);
    const path = join(tmp.path, "mixed.safetensors");
    writeFileSync(
      path,
      rawSafetensors(
        {
          h: { dtype: "F16", shape: [3], data_offsets: [0, 6] },
          b: { dtype: "BF16", shape: [1, 2], data_offsets: [6, 10] },
          f: { dtype: "F32", shape: [], data_offsets: [10, 14] },
          __metadata__: { format: "pt" },
        },
        data,
      ),
    );
    const file = await readSafetensorsHeader(path);
    expect(file.metadata).toEqual({ format: "pt" });
    const get = (name: string) => readSafetensorsF32(file.tensors.get(name) as never);
    expect(Array.from(await get("h"))).toEqual([0.5, -1.25, 3]);
    expect(Array.from(await get("b"))).toEqual([1.5, -2.5]);
    expect(Array.from(await get("f"))).toEqual([Math.fround(0.1)]);
  });

  it("refuses truncated data, inconsistent offsets and non-float dtypes by tensor name", async () => {
    const bad = async (header: object, bytes: number) => {
      const path = join(tmp.path, `bad${n++}.safetensors`);
      writeFileSync(path, rawSafetensors(header, Buffer.alloc(bytes)));
      return readSafetensorsHeader(path);
    };
    await expect(bad({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 8)).rejects.toThrow(
      /w: data ends at 16 but the data section has 8 bytes/,
    );
    await expect(bad({ w: { dtype: "F32", shape: [4], data_offsets: [0, 12] } }, 16)).rejects.toThrow(
      /w: F32 \[4\] needs 16 bytes but data_offsets span 12/,
    );
    await expect(bad({ w: { dtype: "Q4", shape: [4], data_offsets: [0, 2] } }, 2)).rejects.toThrow(
      /w: unknown dtype "Q4"/,
    );
    const ints = await bad({ w: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, 8);
    await expect(readSafetensorsF32(ints.tensors.get("w") as never)).rejects.toThrow(
      /w: dtype I64 is not supported \(supported: F32, F16, BF16\)/,
    );
    // nesting too deep to print (JSON.stringify overflows the stack on it) is still a located error
    const deep = join(tmp.path, "deep.safetensors");
    const json = `{"w": {"dtype": "F32", "shape": ${"[".repeat(100_000)}${"]".repeat(100_000)}, "data_offsets": [0, 4]}}`;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(deep, Buffer.concat([len, Buffer.from(json), Buffer.alloc(4)]));
    await expect(readSafetensorsHeader(deep)).rejects.toThrow(
      "w: shape must be a list of non-negative integers, got array of 1, nested too deep to print",
    );
    const path = join(tmp.path, "not.safetensors");
    writeFileSync(path, '{"hello": 1}');
    await expect(readSafetensorsHeader(path)).rejects.toThrow(/header length .* does not fit/);
  });
});

describe("q/k row permutation (llama.cpp's LlamaModel.permute)", () => {
  it("interleaves each head's halves: rows [a0 a1 b0 b1] -> [a0 b0 a1 b1]", () => {
    // 2 heads of 4 rows, 2 columns; row r holds [10r, 10r+1].
    const w = Float32Array.from({ length: 16 }, (_, i) => 10 * Math.floor(i / 2) + (i % 2));
    const rowsOf = (a: Float32Array) => Array.from({ length: a.length / 2 }, (_, r) => a[2 * r] as number);
    expect(rowsOf(permuteQkRows(w, 2, 2))).toEqual([0, 20, 10, 30, 40, 60, 50, 70]);
    expect(Array.from(permuteQkRows(Float32Array.from([0, 1, 2, 3]), 1, 1))).toEqual([0, 2, 1, 3]);
  });
});

describe("config.json mapping", () => {
  const llama = {
    architectures: ["LlamaForCausalLM"],
    vocab_size: 49152,
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    max_position_embeddings: 8192,
    tie_word_embeddings: true,
  };

  it("maps SmolLM-135M's config (llama architecture, GQA, tied)", () => {
    const spec = mapHfConfig(llama);
    expect(spec).toMatchObject({ family: "llama", arch: "llama", permuteQk: true, ropeScaling: null });
    expect(spec.config).toEqual({
      vocabSize: 49152,
      hiddenSize: 576,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      headDim: 64,
      ffnSize: 1536,
      ropeTheta: 100000,
      rmsNormEps: 1e-5,
      tiedEmbeddings: true,
      qkvBias: false,
      contextLength: 8192,
    });
  });

  it("maps Qwen2 (biases, no permutation) and transformers 5's rope_parameters", () => {
    const spec = mapHfConfig({
      ...llama,
      architectures: ["Qwen2ForCausalLM"],
      num_attention_heads: 12,
      num_key_value_heads: 2,
      rope_theta: undefined,
      rope_parameters: { rope_type: "default", rope_theta: 1000000 },
    });
    expect(spec).toMatchObject({ family: "qwen2", arch: "qwen2", permuteQk: false });
    expect(spec.config).toMatchObject({ qkvBias: true, ropeTheta: 1000000, headDim: 48 });
  });

  it("caps Mistral's context at its sliding window (where full attention is identical)", () => {
    const spec = mapHfConfig({
      ...llama,
      architectures: ["MistralForCausalLM"],
      sliding_window: 4096,
      max_position_embeddings: 32768,
    });
    expect(spec.config.contextLength).toBe(4096);
    expect(spec.arch).toBe("llama");
  });

  it("maps yarn to llama.cpp's scaling fields", () => {
    const spec = mapHfConfig({
      ...llama,
      rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 2048, beta_fast: 32 },
    });
    expect(spec.ropeScaling).toEqual({ type: "yarn", factor: 4, originalContextLength: 2048, betaFast: 32 });
  });

  const refusals: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      "architecture",
      { architectures: ["Qwen3ForCausalLM"] },
      /architectures: architecture "Qwen3ForCausalLM" is not supported/,
    ],
    [
      "RoPE type",
      { rope_scaling: { rope_type: "dynamic", factor: 2 } },
      /rope_scaling\.rope_type: RoPE scaling "dynamic" is not supported/,
    ],
    ["activation", { hidden_act: "gelu" }, /hidden_act: only "silu" \(SwiGLU\) is supported, got "gelu"/],
    [
      "quantisation",
      { quantization_config: { quant_method: "gptq" } },
      /quantization_config: quantised checkpoints are not supported \(quant_method "gptq"\)/,
    ],
    ["Llama attention bias", { attention_bias: true }, /attention_bias: attention biases on a Llama model/],
    [
      "GQA ratio",
      { num_key_value_heads: 4 },
      /num_key_value_heads: 4 does not divide num_attention_heads \(9\)/,
    ],
    ["missing field", { hidden_size: undefined }, /hidden_size: is required/],
    ["partial RoPE", { partial_rotary_factor: 0.5 }, /partial_rotary_factor: partial RoPE is not supported/],
    ["MoE", { num_local_experts: 8 }, /num_local_experts: mixture-of-experts models are not supported/],
    [
      "linear without factor",
      { rope_scaling: { type: "linear" } },
      /rope_scaling\.factor: expected a positive number/,
    ],
  ];
  for (const [what, change, message] of refusals) {
    it(`refuses: ${what}`, () => {
      const call = () => mapHfConfig({ ...llama, ...change }, "/m/config.json");
      expect(call).toThrow(InputError);
      expect(call).toThrow(message);
      expect(call).toThrow(/^\/m\/config\.json: /);
    });
  }
});

describe("checkpoint refusals", () => {
  const tiny = (): FixtureOptions => ({
    architecture: "LlamaForCausalLM",
    vocabSize: 8,
    hidden: 8,
    layers: 1,
    heads: 2,
    kvHeads: 2,
    ffn: 8,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    tied: false,
    dtype: "F32",
    shards: 1,
    seed: 1,
    tokenizerJson: "/nonexistent/tokenizer.json",
  });

  it("names a missing lm_head and says how a tied model is declared", async () => {
    const dir = newDir();
    const sd = writeHfModelDir(dir, tiny());
    sd.delete("lm_head.weight");
    writeFileSync(join(dir, "model.safetensors"), encodeSafetensors(sd, "F32"));
    await expect(openHfModel(dir)).rejects.toThrow(/lm_head\.weight: missing tensor lm_head\.weight/);
  });

  it("names a tensor whose shape disagrees with config.json", async () => {
    const dir = newDir();
    writeHfModelDir(dir, tiny());
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, intermediate_size: 16 }));
    await expect(openHfModel(dir)).rejects.toThrow(
      /model\.layers\.0\.mlp\.gate_proj\.weight: shape \[8, 8\] does not match config\.json, which implies \[16, 8\]/,
    );
  });

  it("refuses tensors the architecture does not have instead of dropping them", async () => {
    const dir = newDir();
    const sd = writeHfModelDir(dir, tiny());
    sd.set("model.layers.0.self_attn.q_norm.weight", { shape: [4], data: new Float32Array(4) });
    writeFileSync(join(dir, "model.safetensors"), encodeSafetensors(sd, "F32"));
    await expect(openHfModel(dir)).rejects.toThrow(
      /1 tensor\(s\) that a llama model of this config does not have: model\.layers\.0\.self_attn\.q_norm\.weight/,
    );
  });

  it("names a shard the index lists but the directory lacks", async () => {
    const dir = newDir();
    writeHfModelDir(dir, { ...tiny(), shards: 2 });
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
    index.weight_map["model.norm.weight"] = "model-00009-of-00009.safetensors";
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
    await expect(openHfCheckpoint(dir)).rejects.toThrow(
      /shard model-00009-of-00009\.safetensors does not exist/,
    );
    index.weight_map["model.norm.weight"] = "../evil.safetensors";
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
    await expect(openHfCheckpoint(dir)).rejects.toThrow(
      /weight_map\.model\.norm\.weight: expected a shard file name/,
    );
  });

  it("refuses a directory without safetensors (pickle checkpoints are not read)", async () => {
    const empty = newDir();
    writeFileSync(join(empty, "pytorch_model.bin"), "");
    await expect(openHfCheckpoint(empty)).rejects.toThrow(
      /no model\.safetensors or model\.safetensors\.index\.json/,
    );
  });

  it("refuses an F16 conversion that would overflow, naming the tensor", async () => {
    const dir = newDir();
    const tok = join(tmp.path, `tok${n}.json`);
    saveTokenizerJson(tok, trainByteLevelBpe(["tiny"], { vocabSize: 260 }));
    const opts = { ...tiny(), vocabSize: 260, tokenizerJson: tok };
    const sd = writeHfModelDir(dir, opts);
    (sd.get("model.layers.0.mlp.up_proj.weight")?.data as Float32Array)[3] = 1e5;
    writeFileSync(join(dir, "model.safetensors"), encodeSafetensors(sd, "F32"));
    await expect(convertHfToGguf(dir, join(dir, "x.gguf"))).rejects.toThrow(
      /model\.layers\.0\.mlp\.up_proj\.weight: value 100000 is outside the float16 range/,
    );
    await expect(convertHfToGguf(dir, join(dir, "x.gguf"), { type: "bf16" })).resolves.toHaveProperty(
      "out",
      join(dir, "x.gguf"),
    );
  });

  it("the CLI prints the refusal and exits 1", async () => {
    const dir = newDir();
    writeHfModelDir(dir, tiny());
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, architectures: ["GemmaForCausalLM"] }));
    const r = await runCli(["model", "convert", dir, "-o", join(dir, "x.gguf")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `steerlm: ${join(dir, "config.json")}: architectures: architecture "GemmaForCausalLM" is not supported`,
    );
    expect(r.stderr).toContain("hint: supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM");
  });

  it.skipIf(!haveSharedData)("refuses a tokenizer with more tokens than vocab_size rows", async () => {
    const dir = newDir();
    writeHfModelDir(dir, { ...tiny(), tokenizerJson: sharedData("tokenizers", "gpt2", "tokenizer.json") });
    await expect(convertHfToGguf(dir, join(dir, "x.gguf"))).rejects.toThrow(
      /tokenizer\.json: vocab_size: the tokenizer has 50257 tokens but config\.json's vocab_size is 8/,
    );
  });
});
