/**
 * The Hugging Face writers' parts: the config mapping in both directions, the inverse q/k permutation, the
 * safetensors writer, shard sizes and the shard layout (read back through the same reader `model convert`
 * uses). End to end, with a PyTorch reference and llama.cpp as oracles: test/hf-export.test.ts.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { BUILTIN_SCHEMAS } from "../data/attributes.js";
import { type LlamaConfig, resolveLlamaConfig } from "../model/config.js";
import { llamaTensorShapes } from "../model/llama-gguf.js";
import { initLlamaWeights } from "../model/weights.js";
import { trainByteLevelBpe } from "../tokenizer/bpe-train.js";
import { HfTokenizer } from "../tokenizer/hf.js";
import { Rng } from "../util/rng.js";
import { openHfCheckpoint, SAFETENSORS_INDEX } from "./checkpoint.js";
import { mapHfConfig, toHfConfig } from "./hf-config.js";
import { permuteQkRows, qkPermutedHeads, unpermuteQkRows } from "./hf-tensors.js";
import { parseShardSize, writeHfModel } from "./hf-write.js";
import { readSafetensorsF32, readSafetensorsHeader, writeSafetensors } from "./safetensors.js";

const tmp = tempDir("steerlm-hf-write-");
afterAll(() => tmp.cleanup());

const configs: Array<[string, LlamaConfig]> = [
  [
    "llama, GQA",
    resolveLlamaConfig({ vocabSize: 300, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2 }),
  ],
  [
    "qwen2, tied, theta 1e6, eps 1e-6",
    resolveLlamaConfig({
      vocabSize: 300,
      hiddenSize: 32,
      numLayers: 1,
      numHeads: 4,
      qkvBias: true,
      tiedEmbeddings: true,
      ropeTheta: 1e6,
      rmsNormEps: 1e-6,
      contextLength: 4096,
    }),
  ],
  [
    "llama, head dim 16 × 4 heads ≠ width 48",
    resolveLlamaConfig({
      vocabSize: 300,
      hiddenSize: 48,
      numLayers: 1,
      numHeads: 4,
      headDim: 16,
      ffnSize: 96,
    }),
  ],
];

describe("config.json ⇄ LlamaConfig", () => {
  it.each(configs)("%s: mapHfConfig(toHfConfig(c)) is c", (_, config) => {
    const json = toHfConfig(config, { dtype: "bfloat16", bosId: 1, eosId: 2, schema: null });
    const spec = mapHfConfig(JSON.parse(JSON.stringify(json)));
    expect(spec.config).toEqual(config);
    expect(spec.family).toBe(config.qkvBias ? "qwen2" : "llama");
    expect(spec.schema).toBeNull();
    expect(json).toMatchObject({
      torch_dtype: "bfloat16",
      bos_token_id: 1,
      eos_token_id: 2,
      rope_scaling: null,
    });
  });

  it("writes a float32 eps or theta (as a GGUF holds it) as the decimal it came from", () => {
    const config = {
      ...(configs[0]?.[1] as LlamaConfig),
      rmsNormEps: Math.fround(1e-5),
      ropeTheta: Math.fround(5e5),
    };
    const json = toHfConfig(config, { dtype: "float32", bosId: null, eosId: null, schema: null });
    expect(json.rms_norm_eps).toBe(1e-5);
    expect(json.rope_theta).toBe(500000);
  });

  it("carries the SteerLM schema under `steerlm`, and reads it back", () => {
    const schema = BUILTIN_SCHEMAS.helpsteer;
    if (schema === undefined) throw new Error("no helpsteer schema");
    const json = JSON.parse(
      JSON.stringify(
        toHfConfig(configs[0]?.[1] as LlamaConfig, { dtype: "float32", bosId: 0, eosId: 0, schema }),
      ),
    );
    expect(json.steerlm.template).toContain("<extra_id_2>{values}");
    expect(mapHfConfig(json).schema).toEqual(schema);
    expect(() => mapHfConfig({ ...json, steerlm: { schema: { attributes: [] } } })).toThrow(
      /config\.json: steerlm\.schema: attributes: expected a non-empty list/,
    );
    expect(() => mapHfConfig({ ...json, steerlm: "helpsteer" })).toThrow(/config\.json: steerlm: expected/);
  });
});

describe("q/k rows", () => {
  it("unpermuteQkRows undoes permuteQkRows for weights, biases and LoRA B", () => {
    const rng = new Rng(3);
    for (const [heads, headDim, cols] of [
      [4, 8, 32],
      [2, 8, 1],
      [2, 16, 4],
    ] as const) {
      const x = rng.normalArray(heads * headDim * cols, 1);
      const p = permuteQkRows(x, heads, cols);
      expect(p).not.toEqual(x);
      expect(unpermuteQkRows(p, heads, cols)).toEqual(x);
    }
    const c = configs[0]?.[1] as LlamaConfig;
    expect(qkPermutedHeads("blk.1.attn_q.weight", c, "llama")).toBe(4);
    expect(qkPermutedHeads("blk.1.attn_k.lora_b", c, "llama")).toBe(2);
    expect(qkPermutedHeads("blk.1.attn_k.lora_a", c, "llama")).toBeUndefined();
    expect(qkPermutedHeads("blk.1.attn_v.weight", c, "llama")).toBeUndefined();
    expect(qkPermutedHeads("blk.1.attn_q.weight", c, "qwen2")).toBeUndefined();
  });
});

describe("safetensors writer", () => {
  it("writes what the reader reads back, F32 exactly, F16/BF16 rounded, with an 8-byte aligned header", async () => {
    const values = Float32Array.from([1, -2.5, 0.1, 65504, Math.PI, -1e-3]);
    const path = join(tmp.path, "t.safetensors");
    await writeSafetensors(path, [
      { name: "a", shape: [2, 3], dtype: "F32", values: async () => values },
      { name: "b", shape: [6], dtype: "F16", values: async () => values },
      { name: "c", shape: [3, 2], dtype: "BF16", values: async () => values },
    ]);
    const bytes = readFileSync(path);
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
    const file = await readSafetensorsHeader(path);
    expect(file.metadata).toEqual({ format: "pt" });
    expect(file.tensors.get("a")?.shape).toEqual([2, 3]);
    expect(await readSafetensorsF32(file.tensors.get("a") as never)).toEqual(values);
    const half = await readSafetensorsF32(file.tensors.get("b") as never);
    const bf = await readSafetensorsF32(file.tensors.get("c") as never);
    values.forEach((v, i) => {
      expect(Math.abs(half[i]! - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11);
      expect(Math.abs(bf[i]! - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8);
    });
  });

  it("refuses a value F16 cannot hold, naming the tensor, and leaves no file", async () => {
    const path = join(tmp.path, "big.safetensors");
    await expect(
      writeSafetensors(path, [
        { name: "w", shape: [1], dtype: "F16", values: async () => Float32Array.of(1e5) },
      ]),
    ).rejects.toThrow(/big\.safetensors: w: value 100000 is outside the float16 range/);
    expect(existsSync(path)).toBe(false);
  });
});

describe("shards", () => {
  it("parses sizes as huggingface_hub does (decimal units), and binary ones", () => {
    expect(parseShardSize("5GB")).toBe(5e9);
    expect(parseShardSize("2.5 MB")).toBe(2.5e6);
    expect(parseShardSize("500MiB")).toBe(500 * 2 ** 20);
    expect(parseShardSize("1000")).toBe(1000);
    expect(() => parseShardSize("5 parsecs")).toThrow(/maxShardSize: expected a size such as 5GB/);
    expect(() => parseShardSize("0")).toThrow(/expected a size/);
  });

  it("splits in order, a big tensor alone; the index maps every tensor; a later single-file export removes the index", async () => {
    const config = configs[0]?.[1] as LlamaConfig;
    const weights = initLlamaWeights(config, new Rng(5), 0.3);
    const text = "Shards hold tensors in order. helpfulness 4, verbosity 2.";
    const tokenizer = new HfTokenizer(trainByteLevelBpe([text, text.toUpperCase()], { vocabSize: 300 }));
    const input = {
      config,
      arch: "llama" as const,
      weight: async (name: string) => weights.get(name) as Float32Array,
      tokenizer,
      schema: null,
    };
    const dir = join(tmp.path, "sharded");
    // The embeddings are 300·32·4 = 38,400 bytes, above the limit: alone. Then the layers fill shards.
    const r = await writeHfModel(dir, input, { maxShardSize: 20_000 });
    expect(r.shards.length).toBeGreaterThan(2);
    expect(r.shards[0]).toBe(`model-00001-of-${String(r.shards.length).padStart(5, "0")}.safetensors`);
    const index = JSON.parse(readFileSync(join(dir, SAFETENSORS_INDEX), "utf8"));
    const names = Object.keys(index.weight_map);
    expect(names).toEqual([...names].sort());
    expect(names.length).toBe(llamaTensorShapes(config).length);
    expect(index.weight_map["model.embed_tokens.weight"]).toBe(r.shards[0]);
    expect(index.metadata.total_size).toBe(r.totalSize);
    const shards = await Promise.all(
      r.shards.map(async (s) => [...(await readSafetensorsHeader(join(dir, s))).tensors.values()]),
    );
    const bytes = shards.map((ts) => ts.reduce((a, t) => a + t.byteLength, 0));
    expect(bytes.reduce((a, b) => a + b, 0)).toBe(r.totalSize);
    for (const [i, ts] of shards.entries()) expect(ts.length === 1 || bytes[i]! <= 20_000).toBe(true);
    // Untied: the output matrix is as big as the embeddings, and alone in the last shard.
    expect(shards.at(-1)?.map((t) => t.name)).toEqual(["lm_head.weight"]);
    const ckpt = await openHfCheckpoint(dir);
    const down = ckpt.tensors.get("model.layers.1.mlp.down_proj.weight");
    expect(down?.shape).toEqual([32, config.ffnSize]);
    expect(await readSafetensorsF32(down as never)).toEqual(weights.get("blk.1.ffn_down.weight"));

    writeFileSync(join(dir, "notes.txt"), "not ours");
    const single = await writeHfModel(dir, input);
    expect(single.shards).toEqual(["model.safetensors"]);
    expect(existsSync(join(dir, SAFETENSORS_INDEX))).toBe(false);
    expect(existsSync(join(dir, r.shards[0]!))).toBe(false);
    expect(existsSync(join(dir, "notes.txt"))).toBe(true);
    expect((await openHfCheckpoint(dir)).files).toEqual([join(dir, "model.safetensors")]);
  });
});
