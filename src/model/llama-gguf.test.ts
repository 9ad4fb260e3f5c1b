import { join } from "node:path";
import type { Token } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import { haveSharedData, sharedData, tempDir } from "../../test/helpers.js";
import { loadLlamaModel } from "../gguf/llama-cpp.js";
import { metaString, readGguf, readTensorBytes, readTensorF32 } from "../gguf/reader.js";
import { STEERLM_SCHEMA_KEY, STEERLM_TEMPLATE_KEY, str } from "../gguf/types.js";
import { GGUF_TOKEN_TYPE, type GgufVocab, readGgufVocab } from "../gguf/vocab.js";
import { InputError } from "../util/errors.js";
import { type LlamaConfig, type LlamaConfigInput, resolveLlamaConfig } from "./config.js";
import { llamaTensorName, llamaTensorShapes, readLlamaConfig, writeLlamaGguf } from "./llama-gguf.js";
import { countParameters } from "./weights.js";

const dir = tempDir();
afterAll(() => dir.cleanup());

const WORDS = ["hello", "world", "the", "quick", "brown", "fox", "steer", "model"];

/** SentencePiece-style vocab: specials, 256 byte-fallback tokens, letters, and every prefix of "▁word". */
function spmVocab(): GgufVocab {
  const tokens = ["<unk>", "<s>", "</s>"];
  const tokenTypes: number[] = [GGUF_TOKEN_TYPE.unknown, GGUF_TOKEN_TYPE.control, GGUF_TOKEN_TYPE.control];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    tokenTypes.push(GGUF_TOKEN_TYPE.byte);
  }
  const pieces = new Set<string>(["▁"]);
  for (const c of "abcdefghijklmnopqrstuvwxyz") pieces.add(c).add(`▁${c}`);
  for (const w of WORDS) for (let i = 2; i <= w.length + 1; i++) pieces.add(`▁${w}`.slice(0, i));
  for (const p of pieces) {
    tokens.push(p);
    tokenTypes.push(GGUF_TOKEN_TYPE.normal);
  }
  // Longer pieces score higher, so the greedy SPM merge always reaches whole words.
  const scores = tokens.map((t, i) => (tokenTypes[i] === GGUF_TOKEN_TYPE.normal ? t.length - i * 1e-4 : 0));
  return {
    model: "llama",
    tokens,
    scores,
    tokenTypes,
    bosId: 1,
    eosId: 2,
    unkId: 0,
    padId: null,
    addBos: true,
  };
}

/** GPT-2's byte -> printable character map (bytes_to_unicode). */
function byteChars(): string[] {
  const keep = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + extra++));
}

/** Byte-level BPE vocab: the 256 byte characters, one merge chain per "Ġword", and an end-of-text token. */
function bpeVocab(pre: string): GgufVocab {
  const tokens = byteChars();
  const merges: string[] = [];
  const have = new Set(tokens);
  for (const w of WORDS) {
    for (const word of [`Ġ${w}`, w]) {
      let left = word[0]!;
      for (const ch of word.slice(1)) {
        const merged = left + ch;
        if (!have.has(merged)) {
          merges.push(`${left} ${ch}`);
          tokens.push(merged);
          have.add(merged);
        }
        left = merged;
      }
    }
  }
  const eot = tokens.length;
  tokens.push("<|endoftext|>");
  const tokenTypes = tokens.map((_, i) => (i === eot ? GGUF_TOKEN_TYPE.control : GGUF_TOKEN_TYPE.normal));
  return {
    model: "gpt2",
    pre,
    tokens,
    tokenTypes,
    merges,
    bosId: eot,
    eosId: eot,
    unkId: null,
    padId: null,
    addBos: false,
  };
}

function randomWeights(config: LlamaConfig, seed: number): Map<string, Float32Array> {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const out = new Map<string, Float32Array>();
  for (const { name, shape } of llamaTensorShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = name.endsWith("norm.weight");
    out.set(
      name,
      Float32Array.from({ length: n }, () => (isNorm ? 1 + 0.1 * rnd() : 0.2 * rnd())),
    );
  }
  return out;
}

interface Case {
  name: string;
  vocab: GgufVocab;
  config: Omit<LlamaConfigInput, "vocabSize">;
  type: "F32" | "F16" | "BF16" | "Q8_0";
  arch: "llama" | "qwen2";
}

// biome-ignore format: one line per case reads as a table
const cases: Case[] = [
  { name: "llama-spm-f32", vocab: spmVocab(), type: "F32", arch: "llama", config: { hiddenSize: 64, numLayers: 2, numHeads: 4, ffnSize: 96, contextLength: 256 } },
  { name: "llama-gqa-bpe-f16", vocab: bpeVocab("gpt-2"), type: "F16", arch: "llama", config: { hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, ffnSize: 96, ropeTheta: 500000, contextLength: 256 } },
  { name: "llama-tied-spm-q8_0", vocab: spmVocab(), type: "Q8_0", arch: "llama", config: { hiddenSize: 64, numLayers: 2, numHeads: 2, ffnSize: 128, tiedEmbeddings: true, contextLength: 256 } },
  { name: "llama-headdim-bpe-bf16", vocab: bpeVocab("llama-bpe"), type: "BF16", arch: "llama", config: { hiddenSize: 64, numLayers: 1, numHeads: 4, numKvHeads: 1, headDim: 32, ffnSize: 64, contextLength: 256 } },
  { name: "qwen2-bias-bpe-f16", vocab: bpeVocab("qwen2"), type: "F16", arch: "qwen2", config: { hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, ffnSize: 96, qkvBias: true, rmsNormEps: 1e-6, ropeTheta: 1e6, tiedEmbeddings: true, contextLength: 256 } },
];

describe("llama tensor conventions", () => {
  it("names tensors as llama.cpp does", () => {
    expect(llamaTensorName("token_embd")).toBe("token_embd.weight");
    expect(llamaTensorName("output")).toBe("output.weight");
    expect(llamaTensorName("attn_q", 3)).toBe("blk.3.attn_q.weight");
    expect(llamaTensorName("attn_k.bias", 0)).toBe("blk.0.attn_k.bias");
    expect(llamaTensorName("ffn_down", 12)).toBe("blk.12.ffn_down.weight");
    expect(() => llamaTensorName("attn_q" as "output")).toThrow(RangeError);
  });
});

describe.skipIf(!haveSharedData)("llama-2-tiny-random.gguf as a Llama model", () => {
  it("gives its config and vocabulary", async () => {
    const f = await readGguf(sharedData("gguf", "llama-2-tiny-random.gguf"));
    expect(readLlamaConfig(f)).toEqual({
      vocabSize: 32000,
      hiddenSize: 8,
      numLayers: 1,
      numHeads: 2,
      numKvHeads: 2,
      headDim: 4,
      ffnSize: 32,
      ropeTheta: 10000,
      rmsNormEps: Math.fround(1e-5),
      tiedEmbeddings: false,
      qkvBias: false,
      contextLength: 4096,
    });
    const v = readGgufVocab(f);
    expect(v.model).toBe("llama");
    expect(v.tokens.length).toBe(32000);
    expect([v.bosId, v.eosId, v.unkId, v.padId, v.addBos]).toEqual([1, 2, 0, null, true]);
    expect(v.tokens[29871]).toBe("▁");
    // Its tensor list is exactly what llamaTensorShapes derives from that config (order aside).
    const want = llamaTensorShapes(readLlamaConfig(f)).map((t) => `${t.name} ${t.shape}`);
    expect(f.tensors.map((t) => `${t.name} ${t.shape}`).sort()).toEqual(want.sort());
    expect(countParameters(readLlamaConfig(f))).toBe(
      f.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0),
    );
  });
});

async function greedy(path: string, prompt: string, n: number): Promise<number[]> {
  const model = (await loadLlamaModel(path, { gpuLayers: 0 })).model;
  try {
    const ctx = await model.createContext({ contextSize: 256, threads: 1 });
    try {
      const out: number[] = [];
      for await (const t of ctx
        .getSequence()
        .evaluate(model.tokenize(prompt, false, "trimLeadingSpace") as Token[], { temperature: 0 })) {
        out.push(t);
        if (out.length >= n) break;
      }
      return out;
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}

describe.skipIf(!haveSharedData)("llama-2-tiny-random.gguf rebuilt by writeLlamaGguf", () => {
  it("reads config, vocab and weights, writes them back (F16), and llama.cpp generates the same tokens", async () => {
    const src = sharedData("gguf", "llama-2-tiny-random.gguf");
    const f = await readGguf(src);
    const config = readLlamaConfig(f);
    const weights = new Map<string, Float32Array>();
    for (const t of f.tensors) weights.set(t.name, await readTensorF32(f, t.name));
    const out = join(dir.path, "tiny-rebuilt.gguf");
    await writeLlamaGguf(out, { config, vocab: readGgufVocab(f), weights, type: "F16", name: "LLaMA v2" });
    const g = await readGguf(out);
    // F16 -> F32 -> F16 is exact, so every weight tensor holds the same bytes as the original.
    for (const t of f.tensors) {
      const back = g.tensors.find((x) => x.name === t.name);
      expect([back?.type, back?.shape]).toEqual([t.type, t.shape]);
      expect(
        Buffer.from(await readTensorBytes(g, t.name)).equals(Buffer.from(await readTensorBytes(f, t.name))),
      ).toBe(true);
    }
    const prompt = "The quick brown fox";
    const want = await greedy(src, prompt, 8);
    expect(await greedy(out, prompt, 8)).toEqual(want);
  });
});

describe("writeLlamaGguf -> node-llama-cpp", () => {
  it.each(cases)("$name: reads back, loads, tokenizes and generates", async (c) => {
    const config = resolveLlamaConfig({ ...c.config, vocabSize: c.vocab.tokens.length });
    const weights = randomWeights(config, 42);
    const path = join(dir.path, `${c.name}.gguf`);
    const schema = JSON.stringify({ attributes: ["quality", "humor"] });
    await writeLlamaGguf(path, {
      config,
      vocab: c.vocab,
      weights,
      type: c.type,
      metadata: [
        [STEERLM_SCHEMA_KEY, str(schema)],
        [STEERLM_TEMPLATE_KEY, str("<extra_id_1>User\n")],
      ],
    });

    // Our reader sees exactly what we wrote.
    const f = await readGguf(path);
    expect(metaString(f, "general.architecture")).toBe(c.arch);
    expect(readLlamaConfig(f)).toEqual({ ...config, rmsNormEps: Math.fround(config.rmsNormEps) });
    expect(readGgufVocab(f)).toEqual({ ...c.vocab, scores: c.vocab.scores?.map(Math.fround) });
    expect(metaString(f, STEERLM_SCHEMA_KEY)).toBe(schema);
    const norm = await readTensorF32(f, llamaTensorName("attn_norm", 0));
    expect(Array.from(norm)).toEqual(Array.from(weights.get("blk.0.attn_norm.weight") as Float32Array));
    const wq = f.tensors.find((t) => t.name === "blk.0.attn_q.weight");
    expect(wq?.type).toBe(c.type);

    // llama.cpp loads it.
    const model = (await loadLlamaModel(path, { gpuLayers: 0 })).model;
    try {
      expect(model.trainContextSize).toBe(config.contextLength);
      expect(model.fileInfo.metadata.general.architecture).toBe(c.arch);
      const hp = (
        model.fileInfo.metadata as unknown as Record<string, { attention: { head_count_kv: number } }>
      )[c.arch];
      expect(hp?.attention.head_count_kv).toBe(config.numKvHeads);
      const tokens = model.tokenize("hello world");
      const ids = Array.from(tokens, Number);
      if (c.vocab.model === "llama") {
        expect(ids).toEqual([c.vocab.tokens.indexOf("▁hello"), c.vocab.tokens.indexOf("▁world")]);
      } else {
        expect(ids).toEqual([c.vocab.tokens.indexOf("hello"), c.vocab.tokens.indexOf("Ġworld")]);
      }
      expect(model.detokenize(tokens).trim()).toBe("hello world");
      expect(model.tokens.bos).toBe(c.vocab.bosId);
      expect(model.tokens.eos).toBe(c.vocab.eosId);

      const ctx = await model.createContext({ contextSize: 64, threads: 1 });
      try {
        const seq = ctx.getSequence();
        const generated: number[] = [];
        for await (const t of seq.evaluate(tokens as Token[], { temperature: 0 })) {
          generated.push(t);
          if (generated.length >= 4) break;
        }
        expect(generated.length).toBe(4);
        for (const t of generated) expect(t).toBeGreaterThanOrEqual(0);
        for (const t of generated) expect(t).toBeLessThan(config.vocabSize);
      } finally {
        await ctx.dispose();
      }
    } finally {
      await model.dispose();
    }
  });
});

describe("readLlamaConfig and the architecture", () => {
  it("refuses a file named as the other architecture: it would train with one RoPE and export with the other", async () => {
    for (const c of [cases[0], cases[4]] as Case[]) {
      const config = resolveLlamaConfig({ ...c.config, vocabSize: c.vocab.tokens.length });
      const path = join(dir.path, `renamed-${c.name}.gguf`);
      await writeLlamaGguf(path, { config, vocab: c.vocab, weights: randomWeights(config, 5), type: "F32" });
      const f = await readGguf(path);
      const other = c.arch === "llama" ? "qwen2" : "llama";
      const metadata = new Map(
        [...f.metadata].map(([k, v]) =>
          k === "general.architecture"
            ? [k, str(other)]
            : [k.startsWith(`${c.arch}.`) ? `${other}.${k.slice(c.arch.length + 1)}` : k, v],
        ),
      );
      expect(readLlamaConfig(f).qkvBias).toBe(c.arch === "qwen2");
      const bias = c.arch === "qwen2" ? "with" : "without";
      expect(() => readLlamaConfig({ ...f, metadata })).toThrow(
        `general.architecture: a ${other} model ${bias} q/k/v biases is not supported`,
      );
    }
  });
});

describe("writeLlamaGguf refuses what llama.cpp would choke on", () => {
  const config = resolveLlamaConfig({
    vocabSize: spmVocab().tokens.length,
    hiddenSize: 32,
    numLayers: 1,
    numHeads: 2,
    ffnSize: 32,
  });
  const path = join(dir.path, "bad.gguf");
  const write = (over: { vocab?: GgufVocab; weights?: Map<string, Float32Array>; config?: LlamaConfig }) =>
    writeLlamaGguf(path, {
      config: over.config ?? config,
      vocab: over.vocab ?? spmVocab(),
      weights: over.weights ?? randomWeights(config, 1),
    });

  it("duplicate tokens (llama.cpp would abort the process)", async () => {
    const v = spmVocab();
    v.tokens[300] = v.tokens[299]!;
    await expect(write({ vocab: v })).rejects.toThrow("vocabulary: tokens[300]: duplicate token");
  });
  it("a vocabulary that does not match vocabSize", async () => {
    await expect(write({ config: { ...config, vocabSize: config.vocabSize + 1 } })).rejects.toThrow(
      InputError,
    );
  });
  it("a misspelled pre-tokenizer", async () => {
    const v = bpeVocab("gpt2");
    const cfg = { ...config, vocabSize: v.tokens.length };
    await expect(write({ vocab: v, config: cfg, weights: randomWeights(cfg, 1) })).rejects.toThrow(
      'vocabulary: pre: llama.cpp does not know the pre-tokenizer "gpt2"',
    );
  });
  it("missing, extra and mis-sized weights", async () => {
    const w = randomWeights(config, 1);
    w.delete("blk.0.ffn_up.weight");
    await expect(write({ weights: w })).rejects.toThrow("bad.gguf: blk.0.ffn_up.weight: missing weight");
    const w2 = randomWeights(config, 1);
    w2.set("blk.0.attn_q.bias", new Float32Array(32));
    await expect(write({ weights: w2 })).rejects.toThrow(
      "unexpected tensors for this config: blk.0.attn_q.bias",
    );
    const w3 = randomWeights(config, 1);
    w3.set("blk.0.attn_k.weight", new Float32Array(7));
    await expect(write({ weights: w3 })).rejects.toThrow(
      "blk.0.attn_k.weight: has 7 values, shape [32, 32] needs 1024",
    );
  });
});
