/**
 * `model check` on Hugging Face directories: steerlm's forward pass on the checkpoint as stored (HF row
 * order, NEOX RoPE) against llama.cpp on the converted GGUF (permuted rows for llama, normal RoPE).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkHfModelAgainstLlamaCpp } from "../src/interop/check.js";
import { saveTokenizerJson, trainByteLevelBpe } from "../src/tokenizer/bpe-train.js";
import { haveSharedData, runCli, sharedData, tempDir } from "./helpers.js";
import { type FixtureOptions, writeHfModelDir } from "./hf-fixture.js";

const tmp = tempDir("steerlm-interop-check-");
afterAll(() => tmp.cleanup());

const TEXT = "Attribute-conditioned fine-tuning steers a model: helpfulness 4, verbosity 1. The end.";

const llama = (tokenizerJson: string): FixtureOptions => ({
  architecture: "LlamaForCausalLM",
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
  seed: 21,
  tokenizerJson,
});

describe("steerlm forward on HF weights vs llama.cpp on the converted GGUF", () => {
  it.skipIf(!haveSharedData)("Llama directory (GQA, untied, sharded BF16) passes at 1e-3", async () => {
    const dir = join(tmp.path, "llama");
    mkdirSync(dir);
    writeHfModelDir(dir, llama(sharedData("tokenizers", "gpt2", "tokenizer.json")));
    const r = await checkHfModelAgainstLlamaCpp(dir, { text: TEXT, threads: 2 });
    console.log(`model check llama: ${JSON.stringify(r)}`);
    expect(r.tokens).toBeGreaterThan(10);
    expect(r.maxAbsLogProbDiff).toBeLessThanOrEqual(1e-3);
    expect(r.top1Agreement).toBe(1);
  });

  it("Qwen2 directory (qkv bias, tied, GQA 4:1) passes at 1e-3", async () => {
    const dir = join(tmp.path, "qwen2");
    mkdirSync(dir);
    const tok = join(tmp.path, "tok.json");
    saveTokenizerJson(
      tok,
      trainByteLevelBpe([TEXT, TEXT.toUpperCase(), TEXT.split("").reverse().join("")], { vocabSize: 300 }),
    );
    writeHfModelDir(dir, {
      ...llama(tok),
      architecture: "Qwen2ForCausalLM",
      vocabSize: 300,
      kvHeads: 1,
      tied: true,
      dtype: "F32",
      shards: 1,
      ropeTheta: 1_000_000,
      rmsNormEps: 1e-6,
    });
    const r = await checkHfModelAgainstLlamaCpp(dir, { text: TEXT, threads: 2 });
    console.log(`model check qwen2: ${JSON.stringify(r)}`);
    expect(r.maxAbsLogProbDiff).toBeLessThanOrEqual(1e-3);
    expect(r.top1Agreement).toBe(1);

    // The same through the CLI: convert, then check.
    const cli = await runCli([
      "model",
      "convert",
      dir,
      "-o",
      join(dir, "q.gguf"),
      "--type",
      "f32",
      "--check",
    ]);
    expect(cli.stderr).not.toContain("internal error");
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(
      /check: \d+ tokens, max \|Δ log p\| = \S+ \(tolerance 0\.001\), top-1 agreement = 100\.0%\nPASS\n/,
    );
  });

  it("Mistral directory (head_dim × heads ≠ hidden) passes at 1e-3", async () => {
    const dir = join(tmp.path, "mistral");
    mkdirSync(dir);
    const tok = join(tmp.path, "tok-mistral.json");
    saveTokenizerJson(tok, trainByteLevelBpe([TEXT, TEXT.toLowerCase()], { vocabSize: 290 }));
    writeHfModelDir(dir, {
      ...llama(tok),
      architecture: "MistralForCausalLM",
      vocabSize: 290,
      headDim: 6,
      dtype: "F32",
      shards: 1,
      extraConfig: { sliding_window: 128 },
    });
    const r = await checkHfModelAgainstLlamaCpp(dir, { text: TEXT, threads: 2 });
    console.log(`model check mistral: ${JSON.stringify(r)}`);
    expect(r.maxAbsLogProbDiff).toBeLessThanOrEqual(1e-3);
    expect(r.top1Agreement).toBe(1);
  });

  it("`steerlm model check <hf-dir>` checks a Hugging Face directory through the CLI", async () => {
    const dir = join(tmp.path, "cli-llama");
    mkdirSync(dir);
    const tok = join(tmp.path, "tok-cli.json");
    saveTokenizerJson(tok, trainByteLevelBpe([TEXT, TEXT.toUpperCase()], { vocabSize: 280 }));
    writeHfModelDir(dir, { ...llama(tok), vocabSize: 280, layers: 1, dtype: "F32", shards: 1, seed: 5 });
    const ok = await runCli(["model", "check", dir, "--text", TEXT, "--threads", "1", "--json"]);
    expect(ok.code, ok.stderr).toBe(0);
    const out = JSON.parse(ok.stdout) as {
      tokens: number;
      vocabSize: number;
      maxAbsLogProbDiff: number;
      top1Agreement: number;
      weightType: string;
      pass: boolean;
    };
    expect(out.vocabSize).toBe(280);
    expect(out.tokens).toBeGreaterThan(10);
    expect(out.weightType).toBe("f32");
    expect(out.maxAbsLogProbDiff).toBeLessThanOrEqual(1e-3);
    expect(out.top1Agreement).toBe(1);
    expect(out.pass).toBe(true);
  });
});
