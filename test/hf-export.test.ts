/**
 * `steerlm export hf`: a PyTorch implementation of Hugging Face's Llama / Qwen2 (test/hf_llama_reference.py),
 * reading only config.json and the safetensors, must compute from the export what llama.cpp computes from
 * `steerlm export gguf` of the same model (same top-1 at every position, log-probabilities within 1e-4; we
 * measure about 1e-6: float32 in llama.cpp against float64 here); a PEFT adapter applied by the reference
 * onto the exported base must equal the merged export; and `steerlm model convert` of the export must give
 * back `steerlm export gguf` byte for byte.
 */
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSchema } from "../src/data/attributes.js";
import { jinjaChatTemplate } from "../src/data/chat-template.js";
import { readGguf } from "../src/gguf/reader.js";
import { ggufToHf } from "../src/interop/gguf-to-hf.js";
import { writeLoraAdapterGguf } from "../src/interop/lora-gguf.js";
import { writePeftAdapter } from "../src/interop/peft.js";
import { readSafetensorsHeader } from "../src/interop/safetensors.js";
import { resolveLlamaConfig } from "../src/model/config.js";
import { writeLlamaGguf } from "../src/model/llama-gguf.js";
import { type LoraOptions, loraNames } from "../src/model/lora.js";
import { initLlamaWeights, llamaTensorSpecs } from "../src/model/weights.js";
import { getLlamaRuntime } from "../src/runtime/llama.js";
import { trainByteLevelBpe } from "../src/tokenizer/bpe-train.js";
import { HfTokenizer } from "../src/tokenizer/hf.js";
import { toGgufVocab } from "../src/tokenizer/to-gguf.js";
import { Rng } from "../src/util/rng.js";
import { haveSharedData, runCli, sharedData, tempDir } from "./helpers.js";
import { haveTorch, hfReferenceLogProbs } from "./hf-reference.js";
import { argmax, maxAbsDiff, openWithLlamaCpp } from "./interop-llama-cpp.js";
import { tinyLoraFlags, tinyRunFlags, tinySftArgs, tinySftInputs } from "./sft-helpers.js";

const TOLERANCE = 1e-4;
const PROMPT =
  "<extra_id_0>System\nBe brief.\n<extra_id_1>User\nWhat is steering?\n<extra_id_1>Assistant\n<extra_id_2>quality:4,humor:2\nSteering";

const tmp = tempDir("steerlm-hf-export-");
afterAll(() => tmp.cleanup());

/** The prompt's ids in a GGUF's vocabulary, control tokens included. */
async function promptIds(gguf: string): Promise<number[]> {
  const model = await (await getLlamaRuntime()).loadModel({ modelPath: gguf, vocabOnly: true });
  try {
    return Array.from(model.tokenize(PROMPT, true)) as number[];
  } finally {
    await model.dispose();
  }
}

async function llamaCppLogProbs(gguf: string, ids: number[], vocab: number, adapter?: string) {
  if (adapter === undefined) {
    const run = await openWithLlamaCpp(gguf, vocab);
    try {
      return await run.logProbs(ids);
    } finally {
      await run.dispose();
    }
  }
  return llamaCppWithAdapter(gguf, adapter, ids, vocab);
}

/** The same as openWithLlamaCpp's logProbs, with a llama.cpp LoRA adapter on the context. */
async function llamaCppWithAdapter(gguf: string, adapter: string, ids: number[], vocab: number) {
  const model = await (await getLlamaRuntime()).loadModel({ modelPath: gguf });
  const ctx = await model.createContext({
    contextSize: Math.max(32, ids.length + 8),
    threads: 2,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    lora: { adapters: [{ filePath: adapter }] },
  });
  try {
    const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
    const res = await ctx
      .getSequence()
      .controlledEvaluate(
        ids.map((t) => [t as never, { generateNext: { probabilities: true, options: sampling } }]),
      );
    return ids.map((_, i) => {
      const row = new Float64Array(vocab).fill(Number.NEGATIVE_INFINITY);
      for (const [tok, p] of res[i]?.next.probabilities ?? []) row[tok] = Math.log(p);
      return row;
    });
  } finally {
    await ctx.dispose();
    await model.dispose();
  }
}

/** Same top-1 everywhere and close log-probabilities (where llama.cpp's float32 probability is normal). */
function expectAgreement(label: string, ours: Float64Array[], ref: Float64Array[], tolerance = TOLERANCE) {
  const floor = Math.log(2 ** -126);
  const clipped = (rows: Float64Array[]) =>
    rows.map((r, t) => r.map((v, i) => ((ref[t]?.[i] as number) < floor ? 0 : v)));
  const d = maxAbsDiff(clipped(ours), clipped(ref));
  process.stderr.write(`${label}: ${ours.length} positions, max |Δ log p| ${d.toExponential(2)}\n`);
  expect(ours.map(argmax)).toEqual(ref.map(argmax));
  expect(d).toBeLessThanOrEqual(tolerance);
}

describe("export hf of a trained run", () => {
  const run = join(tmp.path, "run");
  const gguf = join(tmp.path, "run.gguf");
  const hf = join(tmp.path, "hf");
  const sharded = join(tmp.path, "hf-sharded");

  beforeAll(async () => {
    const r = await runCli(tinySftArgs(tinySftInputs(join(tmp.path)), run, ["--steps", "4"]));
    expect(r.code, r.stderr).toBe(0);
    for (const args of [
      ["export", "gguf", run, "-o", gguf],
      ["export", "hf", run, "-o", hf],
      ["export", "hf", run, "-o", sharded, "--max-shard-size", "20KB"],
    ]) {
      const e = await runCli(args);
      expect(e.code, e.stderr).toBe(0);
    }
  }, 180_000);

  it("writes config, tokenizer files with the steering chat template, and <extra_id_1> as an end of turn", async () => {
    const json = (dir: string, f: string) => JSON.parse(readFileSync(join(dir, f), "utf8"));
    const config = json(hf, "config.json");
    expect(config).toMatchObject({
      architectures: ["LlamaForCausalLM"],
      vocab_size: 320,
      torch_dtype: "float32",
    });
    expect(config.steerlm.schema).toEqual(loadSchema("steerlm"));
    const tc = json(hf, "tokenizer_config.json");
    const added = Object.entries(
      tc.added_tokens_decoder as Record<string, { content: string; special: boolean }>,
    );
    const byContent = new Map(added.map(([id, t]) => [t.content, { id: Number(id), special: t.special }]));
    for (const c of ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"])
      expect(byContent.get(c)?.special).toBe(true);
    expect(byContent.get("humor:4")?.special).toBe(false);
    expect(tc.additional_special_tokens).toEqual(["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]);
    const template = jinjaChatTemplate(loadSchema("steerlm"), { bosToken: false });
    expect(tc.chat_template).toBe(template);
    const eot = byContent.get("<extra_id_1>")?.id;
    expect(json(hf, "generation_config.json").eos_token_id).toContain(eot);

    const file = await readGguf(gguf);
    expect(file.metadata.get("tokenizer.chat_template")?.value).toBe(template);
    expect(file.metadata.get("tokenizer.ggml.eot_token_id")?.value).toBe(eot);
    const index = json(sharded, "model.safetensors.index.json");
    expect(Object.keys(index.weight_map)).toHaveLength(12);
    expect(new Set(Object.values(index.weight_map)).size).toBeGreaterThan(1);
  });

  it("`steerlm model convert` of the export gives back `steerlm export gguf`, byte for byte", async () => {
    for (const dir of [hf, sharded]) {
      const out = join(tmp.path, `roundtrip-${dir === hf ? "single" : "sharded"}.gguf`);
      const r = await runCli(["model", "convert", dir, "-o", out, "--type", "f32", "--name", "steerlm"]);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(out).equals(readFileSync(gguf))).toBe(true);
    }
  });

  it("an engine's output (no steerlm key, the template in chat_template.jinja) converts with a job's schema.json", async () => {
    // what TRL / NeMo RL hand back: transformers' save_pretrained keeps no steerlm key and moves the chat
    // template out of tokenizer_config.json into chat_template.jinja
    const engine = join(tmp.path, "engine-output");
    cpSync(hf, engine, { recursive: true });
    const config = JSON.parse(readFileSync(join(engine, "config.json"), "utf8"));
    delete config.steerlm;
    writeFileSync(join(engine, "config.json"), JSON.stringify(config));
    const tc = JSON.parse(readFileSync(join(engine, "tokenizer_config.json"), "utf8"));
    delete tc.chat_template;
    writeFileSync(join(engine, "tokenizer_config.json"), JSON.stringify(tc));
    const saved = "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}";
    writeFileSync(join(engine, "chat_template.jinja"), saved);

    const plain = join(tmp.path, "engine-plain.gguf");
    expect((await runCli(["model", "convert", engine, "-o", plain, "--type", "f32"])).code).toBe(0);
    const file = await readGguf(plain);
    expect(file.metadata.get("tokenizer.chat_template")?.value).toBe(saved);
    expect(file.metadata.has("steerlm.schema")).toBe(false);

    const schemaFile = join(tmp.path, "schema.json");
    writeFileSync(schemaFile, `${JSON.stringify(loadSchema("steerlm"), null, 2)}\n`);
    const out = join(tmp.path, "engine-steered.gguf");
    const r = await runCli([
      "model",
      "convert",
      engine,
      "--schema",
      schemaFile,
      "-o",
      out,
      "--type",
      "f32",
      "--name",
      "steerlm",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(out).equals(readFileSync(gguf))).toBe(true);
  });

  it.skipIf(!haveTorch)(
    "the PyTorch reference on the export agrees with llama.cpp on export gguf",
    async () => {
      const ids = await promptIds(gguf);
      const [single, shards] = hfReferenceLogProbs([
        { model: hf, tokens: ids },
        { model: sharded, tokens: ids },
      ]);
      expect(shards).toEqual(single);
      expectAgreement("trained run", single as Float64Array[], await llamaCppLogProbs(gguf, ids, 320));
    },
  );
});

describe("export hf of GGUF models, and PEFT adapters", () => {
  const TEXT = "Steer a frozen base: helpfulness 4, verbosity 2. Adapters are small; the base stays.";
  const tokenizer = new HfTokenizer(
    trainByteLevelBpe([TEXT, TEXT.toLowerCase(), TEXT.toUpperCase()], { vocabSize: 300 }),
  );
  const lora: LoraOptions = { rank: 4, alpha: 8, targets: ["q", "k", "v", "o", "gate", "up", "down"] };

  for (const [arch, qwen] of [
    ["llama", false],
    ["qwen2", true],
  ] as const) {
    it.skipIf(!haveTorch)(
      `${arch} (GQA${qwen ? ", q/k/v biases, tied" : ""}): the export and its PEFT adapter agree with llama.cpp`,
      async () => {
        const config = resolveLlamaConfig({
          vocabSize: 300,
          hiddenSize: 32,
          numLayers: 2,
          numHeads: 4,
          numKvHeads: 2,
          ffnSize: 48,
          ropeTheta: 500000,
          qkvBias: qwen,
          tiedEmbeddings: qwen,
        });
        const rng = new Rng(11);
        const weights = initLlamaWeights(config, rng, 0.3);
        const gguf = join(tmp.path, `${arch}.gguf`);
        await writeLlamaGguf(gguf, { config, vocab: toGgufVocab(tokenizer), weights, type: "F32" });
        const shapes = new Map(llamaTensorSpecs(config).map((s) => [s.name, s.shape]));
        const adapter = new Map<string, Float32Array>();
        for (let l = 0; l < config.numLayers; l++) {
          for (const t of lora.targets) {
            const n = loraNames(l, t);
            const [inDim, outDim] = shapes.get(n.a.replace(/\.lora_a$/, ".weight")) as [number, number];
            adapter.set(n.a, rng.normalArray(inDim * lora.rank, 0.3));
            adapter.set(n.b, rng.normalArray(lora.rank * outDim, 0.3));
          }
        }
        const adapterGguf = join(tmp.path, `${arch}-adapter.gguf`);
        await writeLoraAdapterGguf(adapterGguf, { config, arch, lora, tensors: adapter });

        const dir = join(tmp.path, `${arch}-hf`);
        const peft = join(tmp.path, `${arch}-peft`);
        const r = await ggufToHf(gguf, dir);
        expect(r.architecture).toBe(qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
        await writePeftAdapter(peft, {
          config,
          arch,
          lora,
          tensors: adapter,
          baseModel: dir,
          tokenizer: { tokenizer, schema: null, modelMaxLength: config.contextLength },
        });
        const adapterConfig = JSON.parse(readFileSync(join(peft, "adapter_config.json"), "utf8"));
        expect(adapterConfig).toMatchObject({
          peft_type: "LORA",
          task_type: "CAUSAL_LM",
          r: 4,
          lora_alpha: 8,
        });
        expect(adapterConfig.target_modules).toEqual([
          "q_proj",
          "k_proj",
          "v_proj",
          "o_proj",
          "gate_proj",
          "up_proj",
          "down_proj",
        ]);
        const tensors = (await readSafetensorsHeader(join(peft, "adapter_model.safetensors"))).tensors;
        expect(tensors.get("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")?.shape).toEqual([
          4, 48,
        ]);
        expect(tensors.get("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight")?.shape).toEqual([
          16, 4,
        ]);

        const ids = tokenizer.encode(TEXT).slice(0, 24);
        const [plain, adapted] = hfReferenceLogProbs([
          { model: dir, tokens: ids },
          { model: dir, adapter: peft, tokens: ids },
        ]);
        expectAgreement(
          `${arch} GGUF export`,
          plain as Float64Array[],
          await llamaCppLogProbs(gguf, ids, 300),
        );
        expectAgreement(
          `${arch} PEFT adapter`,
          adapted as Float64Array[],
          await llamaCppLogProbs(gguf, ids, 300, adapterGguf),
        );
      },
    );
  }

  it.skipIf(!haveSharedData)(
    "refuses a SentencePiece vocabulary, which no tokenizer.json can be written for",
    async () => {
      const r = await runCli([
        "export",
        "hf",
        sharedData("gguf", "llama-2-tiny-random.gguf"),
        "-o",
        join(tmp.path, "spm"),
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /tokenizer\.ggml\.model: a SentencePiece vocabulary .* cannot be written as a tokenizer\.json/,
      );
      expect(r.stderr).not.toMatch(/\n\s+at /);
    },
  );
});

describe("export hf of a LoRA run", () => {
  const base = join(tmp.path, "lora-base.gguf");
  const adRun = join(tmp.path, "lora-run");

  beforeAll(async () => {
    const inputs = tinySftInputs(join(tmp.path));
    const r = await runCli(tinySftArgs(inputs, join(tmp.path, "lora-base"), ["--steps", "4"]));
    expect(r.code, r.stderr).toBe(0);
    expect((await runCli(["export", "gguf", join(tmp.path, "lora-base"), "-o", base])).code).toBe(0);
    const ad = await runCli([
      "sft",
      ...tinyRunFlags(inputs),
      ...["--model", base, ...tinyLoraFlags("q,k,v,o,gate,up,down")],
      ...["--lr", "0.02", "--warmup-steps", "1", "--steps", "6", "-o", adRun],
    ]);
    expect(ad.code, ad.stderr).toBe(0);
  }, 180_000);

  it("--lora writes a PEFT adapter that, on the exported base, is the merged export", async () => {
    const adapter = join(tmp.path, "lora-peft");
    const baseHf = join(tmp.path, "lora-base-hf");
    const merged = join(tmp.path, "lora-merged");
    const mergedGguf = join(tmp.path, "lora-merged.gguf");
    for (const args of [
      ["export", "hf", adRun, "--lora", "--base-model", baseHf, "-o", adapter],
      ["export", "hf", base, "-o", baseHf],
      ["export", "hf", adRun, "-o", merged],
      ["export", "gguf", adRun, "-o", mergedGguf],
    ]) {
      const e = await runCli(args);
      expect(e.code, e.stderr).toBe(0);
      if (args.includes("--lora")) expect(e.stderr).toContain(`base: ${base}`);
    }
    const adapterConfig = JSON.parse(readFileSync(join(adapter, "adapter_config.json"), "utf8"));
    expect(adapterConfig).toMatchObject({
      base_model_name_or_path: baseHf,
      r: 4,
      lora_alpha: 8,
      bias: "none",
    });
    const tc = JSON.parse(readFileSync(join(adapter, "tokenizer_config.json"), "utf8"));
    expect(tc.chat_template).toBe(jinjaChatTemplate(loadSchema("steerlm"), { bosToken: false }));
    const notLora = await runCli([
      "export",
      "hf",
      join(tmp.path, "lora-base"),
      "--lora",
      "-o",
      join(tmp.path, "x"),
    ]);
    expect(notLora.code).toBe(1);
    expect(notLora.stderr).toMatch(/not a LoRA run/);
    const baseNeedsLora = await runCli([
      "export",
      "hf",
      adRun,
      "--base-model",
      baseHf,
      "-o",
      join(tmp.path, "x"),
    ]);
    expect(baseNeedsLora.code).toBe(1);
    expect(baseNeedsLora.stderr).toMatch(/--base-model: .*needs --lora/);
    if (!haveTorch) return;

    const ids = await promptIds(mergedGguf);
    const [onBase, fromMerged, baseAlone] = hfReferenceLogProbs([
      { model: baseHf, adapter, tokens: ids },
      { model: merged, tokens: ids },
      { model: baseHf, tokens: ids },
    ]);
    expectAgreement(
      "PEFT adapter on the base vs merged export",
      onBase as Float64Array[],
      fromMerged as Float64Array[],
      1e-5,
    );
    expect(maxAbsDiff(baseAlone as Float64Array[], fromMerged as Float64Array[])).toBeGreaterThan(1e-3);
    expectAgreement(
      "merged export vs llama.cpp",
      fromMerged as Float64Array[],
      await llamaCppLogProbs(mergedGguf, ids, 320),
    );
  });
});
