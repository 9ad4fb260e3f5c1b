/**
 * Hugging Face import, end to end: HF-format directories written by test/hf-fixture.ts (independently of
 * src/interop), converted to GGUF, loaded by node-llama-cpp. The oracle for the numbers is a plain
 * float64 forward pass of the HF weights in HF's own conventions; llama.cpp must agree with it.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findTensor, readGguf, readTensorBytes } from "../src/gguf/reader.js";
import { convertHfToGguf } from "../src/interop/convert.js";
import { saveTokenizerJson, trainByteLevelBpe } from "../src/tokenizer/bpe-train.js";
import { loadHfTokenizer } from "../src/tokenizer/hf.js";
import { haveSharedData, runCli, sharedData, tempDir } from "./helpers.js";
import {
  type FixtureOptions,
  type HfTensor,
  logSoftmax,
  referenceLogits,
  writeHfModelDir,
} from "./hf-fixture.js";
import { argmax, maxAbsDiff, openWithLlamaCpp } from "./interop-llama-cpp.js";

const SAMPLE =
  "Steering a language model: choose helpfulness 4, verbosity 2.\nThe quick brown fox jumps over the lazy dog! 12345 naïve café";

const tmp = tempDir("steerlm-interop-");
afterAll(() => tmp.cleanup());

function newDir(name: string): string {
  const dir = join(tmp.path, name);
  mkdirSync(dir);
  return dir;
}

/** A small byte-level BPE trained here, saved as tokenizer.json (the Qwen2-style model's vocabulary). */
let smallTokenizer = "";
beforeAll(() => {
  const corpus = Array.from(
    { length: 40 },
    (_, i) => `${SAMPLE} Line ${i}: models, attributes and steering.`,
  );
  smallTokenizer = join(tmp.path, "small-tokenizer.json");
  saveTokenizerJson(smallTokenizer, trainByteLevelBpe(corpus, { vocabSize: 320 }));
});

/** Converts, then checks tokenizer ids and next-token log-probabilities against the HF reference. */
async function convertAndCompare(
  dir: string,
  o: FixtureOptions,
  sd: Map<string, HfTensor>,
  type: "f32" | "f16",
  tolerance: number,
): Promise<{ maxDiff: number; top1: number; tokens: number }> {
  const out = join(dir, `model-${type}.gguf`);
  await convertHfToGguf(dir, out, { type });
  const hfTok = loadHfTokenizer(join(dir, "tokenizer.json"));
  const run = await openWithLlamaCpp(out, o.vocabSize);
  try {
    const ids = hfTok.encode(SAMPLE);
    expect(run.tokenize(SAMPLE)).toEqual(ids);
    const context = ids.slice(0, 24);
    const ref = referenceLogits(o, sd, context).map(logSoftmax);
    const got = await run.logProbs(context);
    const maxDiff = maxAbsDiff(got, ref);
    const top1 = got.filter((row, t) => argmax(row) === argmax(ref[t] as Float64Array)).length / got.length;
    expect(maxDiff).toBeLessThanOrEqual(tolerance);
    return { maxDiff, top1, tokens: context.length };
  } finally {
    await run.dispose();
  }
}

describe.skipIf(!haveSharedData)("Llama directory (GPT-2 tokenizer, BF16, 2 shards, GQA, untied)", () => {
  const o: FixtureOptions = {
    architecture: "LlamaForCausalLM",
    // GPT-2 has 50257 tokens; checkpoints round the rows up, the converter pads the vocabulary.
    vocabSize: 50304,
    hidden: 16,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 40,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    tied: false,
    dtype: "BF16",
    shards: 2,
    seed: 11,
    tokenizerJson: sharedData("tokenizers", "gpt2", "tokenizer.json"),
  };
  let dir = "";
  let sd: Map<string, HfTensor>;
  beforeAll(() => {
    dir = newDir("llama");
    sd = writeHfModelDir(dir, o);
  });

  it("converts to F32 GGUF whose logits match the HF reference forward (q/k permuted)", async () => {
    const r = await convertAndCompare(dir, o, sd, "f32", 1e-3);
    expect(r.top1).toBe(1);
    console.log(`llama f32: max |Δ log p| = ${r.maxDiff.toExponential(2)} over ${r.tokens} positions`);
    const gguf = await readGguf(join(dir, "model-f32.gguf"));
    expect(gguf.metadata.get("general.architecture")?.value).toBe("llama");
    expect(gguf.metadata.get("llama.attention.head_count_kv")?.value).toBe(2);
    expect(gguf.metadata.get("tokenizer.ggml.tokens")?.value).toHaveLength(50304);
    expect(gguf.tensors.map((t) => t.name)).toContain("output.weight");
  });

  it("`steerlm model convert --type f16` writes F16 matrices, F32 norms, and still agrees", async () => {
    const out = join(dir, "cli-f16.gguf");
    const res = await runCli(["model", "convert", dir, "-o", out, "--type", "f16"]);
    expect(res.stderr).not.toContain("internal error");
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(
      "llama -> GGUF llama, 2 layers, width 16, 4/2 heads, vocab 50304 (47 padding tokens)",
    );
    const gguf = await readGguf(out);
    const types = new Map(gguf.tensors.map((t) => [t.name, t.type]));
    expect(types.get("blk.0.attn_q.weight")).toBe("F16");
    expect(types.get("token_embd.weight")).toBe("F16");
    expect(types.get("blk.0.attn_norm.weight")).toBe("F32");
    expect(gguf.metadata.get("general.file_type")?.value).toBe(1);
    // F16 storage rounds the BF16 weights and llama.cpp multiplies in F16: close, not exact.
    const r = await convertAndCompare(dir, o, sd, "f16", 5e-2);
    console.log(`llama f16: max |Δ log p| = ${r.maxDiff.toExponential(2)}, top-1 ${r.top1}`);
  });
  it("--type bf16 keeps BF16 weights bit-exact", async () => {
    const out = join(dir, "model-bf16.gguf");
    await convertHfToGguf(dir, out, { type: "bf16" });
    const gguf = await readGguf(out);
    expect(gguf.metadata.get("general.file_type")?.value).toBe(32);
    expect(findTensor(gguf, "blk.1.ffn_up.weight").type).toBe("BF16");
    // The fixture's own bytes for the same tensor, shard by shard, as the safetensors format lays them out.
    const stored = (sd.get("model.layers.1.mlp.up_proj.weight") as HfTensor).data;
    const bits = new Uint16Array(
      new Uint32Array(stored.buffer, stored.byteOffset, stored.length).map((u) => u >>> 16),
    );
    expect(Buffer.from(await readTensorBytes(gguf, "blk.1.ffn_up.weight"))).toEqual(Buffer.from(bits.buffer));
    const run = await openWithLlamaCpp(out, o.vocabSize);
    try {
      const ids = loadHfTokenizer(join(dir, "tokenizer.json")).encode(SAMPLE).slice(0, 24);
      const got = await run.logProbs(ids);
      const ref = referenceLogits(o, sd, ids).map(logSoftmax);
      // llama.cpp multiplies BF16 weights by BF16-rounded activations (8-bit mantissas): close, not equal.
      const d = maxAbsDiff(got, ref);
      const top1 = got.filter((row, t) => argmax(row) === argmax(ref[t] as Float64Array)).length / ids.length;
      console.log(`llama bf16: max |Δ log p| = ${d.toExponential(2)}, top-1 ${top1.toFixed(3)}`);
      // These random weights give logits of magnitude ~20, so BF16's 2^-8 relative rounding shows as ~0.1.
      expect(d).toBeLessThanOrEqual(0.25);
      expect(top1).toBeGreaterThanOrEqual(0.9);
    } finally {
      await run.dispose();
    }
  });
});

describe("Qwen2 directory (trained BPE, F32, qkv bias, tied embeddings, GQA 4:1)", () => {
  const o = (): FixtureOptions => ({
    architecture: "Qwen2ForCausalLM",
    vocabSize: 320,
    hidden: 16,
    layers: 2,
    heads: 4,
    kvHeads: 1,
    ffn: 24,
    ropeTheta: 1_000_000,
    rmsNormEps: 1e-6,
    tied: true,
    dtype: "F32",
    shards: 1,
    seed: 5,
    tokenizerJson: smallTokenizer,
  });

  it("converts to a qwen2 GGUF (no permutation) whose logits match the HF reference", async () => {
    const dir = newDir("qwen2");
    const opts = o();
    const sd = writeHfModelDir(dir, opts);
    const template =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: template }));
    const r = await convertAndCompare(dir, opts, sd, "f32", 1e-3);
    expect(r.top1).toBe(1);
    console.log(`qwen2 f32: max |Δ log p| = ${r.maxDiff.toExponential(2)} over ${r.tokens} positions`);
    const gguf = await readGguf(join(dir, "model-f32.gguf"));
    expect(gguf.metadata.get("general.architecture")?.value).toBe("qwen2");
    const names = gguf.tensors.map((t) => t.name);
    expect(names).toContain("blk.1.attn_k.bias");
    expect(names).not.toContain("output.weight");
    expect(gguf.metadata.get("tokenizer.chat_template")?.value).toBe(template);
  });
});

describe("RoPE scaling", () => {
  const base = (): FixtureOptions => ({
    architecture: "LlamaForCausalLM",
    vocabSize: 320,
    hidden: 16,
    layers: 1,
    heads: 2,
    kvHeads: 2,
    ffn: 24,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    tied: true,
    dtype: "F32",
    shards: 1,
    seed: 9,
    tokenizerJson: smallTokenizer,
  });

  it("linear scaling matches HF's position interpolation", async () => {
    const dir = newDir("rope-linear");
    const opts = { ...base(), ropeScaling: { rope_type: "linear" as const, factor: 4 } };
    const sd = writeHfModelDir(dir, opts);
    await convertAndCompare(dir, opts, sd, "f32", 1e-3);
    const gguf = await readGguf(join(dir, "model-f32.gguf"));
    expect(gguf.metadata.get("llama.rope.scaling.type")?.value).toBe("linear");
  });

  it("llama3 scaling becomes rope_freqs and matches HF's smoothed frequencies", async () => {
    const dir = newDir("rope-llama3");
    // A small original context puts this head size's frequencies in all three llama3 bands.
    const opts = {
      ...base(),
      ropeScaling: {
        rope_type: "llama3" as const,
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 64,
      },
    };
    const sd = writeHfModelDir(dir, opts);
    await convertAndCompare(dir, opts, sd, "f32", 1e-3);
    const gguf = await readGguf(join(dir, "model-f32.gguf"));
    expect(gguf.tensors.find((t) => t.name === "rope_freqs.weight")?.shape).toEqual([4]);
  });
});

describe("Mistral directory (sliding window, head_dim × heads ≠ hidden)", () => {
  it("caps the context at the window and converts a custom head size with the permutation per head", async () => {
    const dir = newDir("mistral");
    const opts: FixtureOptions = {
      architecture: "MistralForCausalLM",
      vocabSize: 320,
      hidden: 16,
      headDim: 6,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      ffn: 24,
      ropeTheta: 1_000_000,
      rmsNormEps: 1e-5,
      tied: false,
      dtype: "BF16",
      shards: 1,
      seed: 13,
      tokenizerJson: smallTokenizer,
      extraConfig: { sliding_window: 128 },
    };
    const sd = writeHfModelDir(dir, opts);
    const r = await convertAndCompare(dir, opts, sd, "f32", 1e-3);
    expect(r.top1).toBe(1);
    const gguf = await readGguf(join(dir, "model-f32.gguf"));
    expect(gguf.metadata.get("llama.context_length")?.value).toBe(128);
    expect(gguf.metadata.get("llama.attention.key_length")?.value).toBe(6);
    expect(gguf.tensors.find((t) => t.name === "blk.0.attn_q.weight")?.shape).toEqual([16, 24]);
  });
});
