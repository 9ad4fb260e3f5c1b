/**
 * A LoRA adapter trained by `steerlm sft --lora`, exported as a llama.cpp adapter GGUF, loads in
 * node-llama-cpp next to its base and reproduces steerlm's adapted forward pass (next-token
 * log-probabilities and greedy continuation); the merged export (`steerlm export gguf`) gives the same model.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ControlledEvaluateInputItem, LlamaModel as NodeLlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Backend } from "../src/ggml/backend.js";
import { loadLlamaModel } from "../src/gguf/llama-cpp.js";
import { readGguf } from "../src/gguf/reader.js";
import { forwardLogits, logSoftmaxRows } from "../src/model/infer.js";
import { ggufWeightSource } from "../src/model/load.js";
import { LlamaModel } from "../src/model/model.js";
import { readCheckpoint } from "../src/run/checkpoint.js";
import { exportLoraAdapter } from "../src/run/export.js";
import { runCli, tempDir } from "./helpers.js";
import { tinyLoraFlags, tinyRunFlags, tinySftArgs, tinySftInputs } from "./sft-helpers.js";

const FLT_MIN = 2 ** -126;
const GREEDY = 8;

async function llamaCppRun(model: NodeLlamaModel, prompt: number[], adapter?: string) {
  const ctx = await model.createContext({
    contextSize: 256,
    threads: 2,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    ...(adapter ? { lora: { adapters: [{ filePath: adapter }] } } : {}),
  });
  try {
    const seq = ctx.getSequence();
    const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
    const input: ControlledEvaluateInputItem[] = prompt.map((t) => [
      t as Token,
      { generateNext: { probabilities: true, options: sampling } },
    ]);
    const res = await seq.controlledEvaluate(input);
    const probs = res.map((r) => r?.next.probabilities ?? new Map<number, number>());
    await seq.clearHistory();
    const greedy: number[] = [];
    for await (const tok of seq.evaluate(prompt as Token[], { temperature: 0 })) {
      greedy.push(tok);
      if (greedy.length === GREEDY) break;
    }
    return { probs, greedy };
  } finally {
    await ctx.dispose();
  }
}

function maxLogProbDiff(probs: Array<Map<number, number>>, ours: Float64Array, V: number): number {
  let m = 0;
  probs.forEach((row, t) => {
    for (const [tok, p] of row)
      if (p >= FLT_MIN) m = Math.max(m, Math.abs(Math.log(p) - (ours[t * V + tok] as number)));
  });
  return m;
}

describe("steerlm sft --lora -> adapter GGUF -> node-llama-cpp", () => {
  const tmp = tempDir("steerlm-interop-lora-sft-");
  const base = join(tmp.path, "base.gguf");
  const adRun = join(tmp.path, "adapted");
  afterAll(() => tmp.cleanup());

  beforeAll(async () => {
    const inputs = tinySftInputs(tmp.path);
    const r = await runCli(tinySftArgs(inputs, join(tmp.path, "base"), ["--steps", "4"]));
    expect(r.code, r.stderr).toBe(0);
    expect((await runCli(["export", "gguf", join(tmp.path, "base"), "-o", base])).code).toBe(0);
    const ad = await runCli([
      "sft",
      ...tinyRunFlags(inputs),
      "--model",
      base,
      ...tinyLoraFlags("q,k,v,o,gate,up,down"),
      "--lr",
      "0.02",
      "--warmup-steps",
      "1",
      "--steps",
      "6",
      "-o",
      adRun,
    ]);
    expect(ad.code, ad.stderr).toBe(0);
  }, 180_000);

  it("the adapter on the base equals steerlm's adapted forward and the merged export", async () => {
    const adapter = join(tmp.path, "adapter.gguf");
    // As a user would: the CLI writes the adapter; the library call names the checkpoint it used.
    const cli = await runCli(["export", "gguf", adRun, "--lora", "-o", adapter]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stderr).toContain(`base: ${base}`);
    const r = await exportLoraAdapter(adRun, join(tmp.path, "adapter-lib.gguf"));
    expect(r.baseModel).toBe(base);
    expect(readFileSync(join(tmp.path, "adapter-lib.gguf")).equals(readFileSync(adapter))).toBe(true);
    const file = await readGguf(adapter);
    expect(file.metadata.get("adapter.type")?.value).toBe("lora");
    expect(file.metadata.get("adapter.lora.alpha")?.value).toBe(8);
    expect(file.metadata.has("steerlm.schema")).toBe(true);
    const merged = join(tmp.path, "merged.gguf");
    expect((await runCli(["export", "gguf", adRun, "--merge", "-o", merged])).code).toBe(0);
    const both = await runCli(["export", "gguf", adRun, "--lora", "--merge", "-o", merged]);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/--lora: .*choose one/);

    const baseModel = (await loadLlamaModel(base)).model;
    const mergedModel = (await loadLlamaModel(merged)).model;
    try {
      const prompt = Array.from(
        baseModel.tokenize("System\nBe brief.\nUser\nWhat is steering?\nAssistant\n"),
      ) as number[];
      const adapted = await llamaCppRun(baseModel, prompt, adapter);
      const plain = await llamaCppRun(baseModel, prompt);
      const fromMerged = await llamaCppRun(mergedModel, prompt);

      // steerlm: the base GGUF's weights plus the checkpoint's adapters.
      const ck = readCheckpoint(r.checkpoint);
      const lora = ck.header.lora;
      if (!lora) throw new Error("not a LoRA checkpoint");
      const baseFile = await readGguf(base);
      const fromBase = ggufWeightSource(baseFile);
      const backend = new Backend(2);
      const model = await LlamaModel.create(
        backend,
        ck.header.model,
        { get: (name) => ck.weights.get(name) ?? fromBase.get(name) },
        { lora, trainBase: false, frozenType: "f32" },
      );
      const V = ck.header.model.vocabSize;
      const ours = logSoftmaxRows(forwardLogits(backend, model, prompt), V);
      const ourGreedy: number[] = [];
      for (let i = 0; i < GREEDY; i++) {
        const ids = [...prompt, ...ourGreedy];
        const last = logSoftmaxRows(forwardLogits(backend, model, ids), V).subarray((ids.length - 1) * V);
        let best = 0;
        for (let v = 1; v < V; v++) if ((last[v] as number) > (last[best] as number)) best = v;
        ourGreedy.push(best);
      }
      model.free();
      backend.free();

      const dAdapted = maxLogProbDiff(adapted.probs, ours, V);
      const dMerged = maxLogProbDiff(fromMerged.probs, ours, V);
      const dPlain = maxLogProbDiff(plain.probs, ours, V);
      console.log(
        `sft LoRA adapter: |Δ log p| adapter ${dAdapted.toExponential(2)}, merged ${dMerged.toExponential(2)}, base alone ${dPlain.toExponential(2)}; greedy ${JSON.stringify(adapted.greedy)}`,
      );
      expect(dAdapted).toBeLessThanOrEqual(1e-3);
      expect(dMerged).toBeLessThanOrEqual(1e-3);
      expect(dPlain).toBeGreaterThan(1e-3);
      expect(adapted.greedy).toEqual(ourGreedy);
      expect(fromMerged.greedy).toEqual(ourGreedy);
    } finally {
      await baseModel.dispose();
      await mergedModel.dispose();
    }
  }, 120_000);
});
