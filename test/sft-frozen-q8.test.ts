import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadLlamaModel } from "../src/gguf/llama-cpp.js";
import { readGguf } from "../src/gguf/reader.js";
import { readCheckpoint } from "../src/run/checkpoint.js";
import { runCli, tempDir } from "./helpers.js";
import { tinyLoraFlags, tinyRunFlags, tinySftArgs, tinySftInputs } from "./sft-helpers.js";

// LoRA on a frozen base kept quantised in memory (issue 8 item 4) through the CLI: a Q8_0 base stays Q8_0
// by default, `--frozen q8_0` quantises an F32 base, and both exports of such a run load in llama.cpp.
// The oracle for the merged export is the adapted model itself: loaded as a plain model it must give the
// validation loss the adapted run reported (Q8_0 values dequantise and requantise to the same blocks).
describe("steerlm sft --lora on a Q8_0 base", () => {
  const tmp = tempDir("steerlm-frozen-q8-");
  let inputs: ReturnType<typeof tinySftInputs>;
  const baseF32 = join(tmp.path, "base-f32.gguf");
  const baseQ8 = join(tmp.path, "base-q8.gguf");
  afterAll(() => tmp.cleanup());
  const common = () => [
    ...tinyRunFlags(inputs),
    ...tinyLoraFlags("q,v,up,down"),
    "--lr",
    "0.02",
    "--warmup-steps",
    "2",
    "--steps",
    "40",
  ];
  // mean training loss of the first and the last four steps (one batch's loss is noisy)
  const losses = (run: string) => {
    const l = readFileSync(join(run, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line).loss as number);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    return { first: mean(l.slice(0, 4)), last: mean(l.slice(-4)) };
  };

  beforeAll(async () => {
    inputs = tinySftInputs(tmp.path);
    // hidden 32, vocab 320: every matrix has rows of a multiple of 32, so all of them can be Q8_0
    const r = await runCli(tinySftArgs(inputs, join(tmp.path, "base"), ["--steps", "40"]));
    expect(r.code, r.stderr).toBe(0);
    for (const [out, type] of [
      [baseF32, "F32"],
      [baseQ8, "Q8_0"],
    ] as const) {
      const e = await runCli(["export", "gguf", join(tmp.path, "base"), "--type", type, "-o", out]);
      expect(e.code, e.stderr).toBe(0);
    }
    const q8 = await readGguf(baseQ8);
    expect(q8.tensors.find((t) => t.name === "blk.0.attn_q.weight")?.type).toBe("Q8_0");
  }, 120_000);

  it("keeps a Q8_0 base at q8_0, trains, and both exports load in node-llama-cpp", async () => {
    const run = join(tmp.path, "q8run");
    const r = await runCli(["sft", ...common(), "--model", baseQ8, "-o", run]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/ frozen +q8_0 +\(decided from the base model\)/);
    // stored, so --resume keeps it
    expect(JSON.parse(readFileSync(join(run, "sft-config.json"), "utf8")).frozen).toBe("q8_0");
    const l = losses(run);
    expect(l.last).toBeLessThan(l.first - 0.03);
    const ck = readCheckpoint(join(run, "checkpoints", "step-000040.ckpt"));
    expect([...ck.weights.keys()].every((n) => /\.lora_[ab]$/.test(n))).toBe(true);

    const merged = join(tmp.path, "merged.gguf");
    const adapter = join(tmp.path, "adapter.gguf");
    expect((await runCli(["export", "gguf", run, "-o", merged])).code).toBe(0);
    expect((await runCli(["export", "gguf", run, "--lora", "-o", adapter])).code).toBe(0);

    // merged = dequantised base + B·A: as a plain model (lr 0) it has the adapted run's validation loss
    const check = await runCli([
      "sft",
      ...tinyRunFlags(inputs),
      "--lr",
      "0",
      "--steps",
      "1",
      "--model",
      merged,
      "-o",
      join(tmp.path, "check"),
    ]);
    expect(check.code, check.stderr).toBe(0);
    const adapted = JSON.parse(r.stdout).valLoss as number;
    expect(Math.abs((JSON.parse(check.stdout).valLoss as number) - adapted)).toBeLessThan(1e-4);

    // a resumed run reads the stored setting back (here it has nothing left to train)
    const resumed = await runCli(["sft", "--resume", "-o", run]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/ frozen +q8_0 +\(config file\)/);

    const greedy: number[][] = [];
    const text = "User: hello";
    for (const [modelPath, lora] of [
      [merged, undefined],
      [baseQ8, adapter],
    ] as const) {
      const model = (await loadLlamaModel(modelPath)).model;
      try {
        const ctx = await model.createContext({
          contextSize: 128,
          threads: 1,
          ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
        });
        const seq = ctx.getSequence();
        const tokens = model.tokenize(text);
        const out: number[] = [];
        for await (const t of seq.evaluate(tokens, { temperature: 0 })) {
          out.push(t);
          if (out.length >= 4) break;
        }
        expect(out.length).toBe(4);
        greedy.push(out);
        await ctx.dispose();
      } finally {
        await model.dispose();
      }
    }
    // the adapter on the untouched Q8_0 base continues like the merged model
    expect(greedy[1]).toEqual(greedy[0]);
  }, 180_000);

  it("--frozen q8_0 quantises an F32 base; without --lora it is refused", async () => {
    const run = join(tmp.path, "f32run");
    const r = await runCli(["sft", ...common(), "--model", baseF32, "--frozen", "q8_0", "-o", run]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/ frozen +q8_0 +\(flag\)/);
    const l = losses(run);
    expect(l.last).toBeLessThan(l.first - 0.03);

    const auto = await runCli([
      "sft",
      ...common(),
      "--model",
      baseF32,
      "--steps",
      "1",
      "-o",
      join(tmp.path, "a"),
    ]);
    expect(auto.code, auto.stderr).toBe(0);
    // an F32 base is kept as bf16 under LoRA unless --frozen f32 says otherwise (LORA_FROZEN_DEFAULT)
    expect(auto.stderr).toMatch(/ frozen +bf16 +\(decided from the base model\)/);

    const bad = await runCli([
      "sft",
      "--data",
      inputs.train,
      "--model",
      baseF32,
      "--frozen",
      "q8_0",
      "-o",
      join(tmp.path, "bad"),
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/frozen: frozen storage q8_0 needs LoRA/);
    const typo = await runCli([
      "sft",
      "--data",
      inputs.train,
      "--model",
      baseF32,
      "--lora",
      "--frozen",
      "q4",
      "-o",
      join(tmp.path, "typo"),
    ]);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/--frozen: expected one of f32, f16, bf16, q8_0/);
  }, 120_000);
});
