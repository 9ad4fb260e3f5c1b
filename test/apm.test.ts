import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labelAgreement } from "../src/apm/agreement.js";
import { annotateFile } from "../src/apm/annotate.js";
import { apmTargets, encodeApmRecords, packApmBatch } from "../src/apm/data.js";
import { loadApm } from "../src/apm/model.js";
import { runApmTrain } from "../src/apm/train.js";
import { BUILTIN_SCHEMAS } from "../src/data/attributes.js";
import { writeRecords } from "../src/data/write.js";
import { HEAD_BIAS, HEAD_WEIGHT } from "../src/model/head.js";
import { LlamaModel } from "../src/model/model.js";
import { listCheckpoints, readCheckpoint, writeCheckpoint } from "../src/run/checkpoint.js";
import { resolveSftConfig } from "../src/run/config.js";
import { readSteerlmRecords } from "../src/run/data.js";
import { writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";
import { Trainer } from "../src/train/trainer.js";
import { InputError } from "../src/util/errors.js";
import { haveSharedData, plainAdam, runCli, sharedData, tempDir } from "./helpers.js";

const steerlm = BUILTIN_SCHEMAS.steerlm;
const dir = tempDir("steerlm-apm-");
let train: string;
let test: string;
let init: string;

function tinyConfig(out: string, extra: Record<string, unknown> = {}) {
  return resolveSftConfig({
    data: train,
    val: test,
    init,
    output: out,
    tokenizerVocabSize: 300,
    seqLen: 96,
    batchSize: 4,
    steps: 4,
    warmupSteps: 1,
    threads: 1,
    evalEvery: 2,
    checkpointEvery: 2,
    keepCheckpoints: 5,
    ...extra,
  });
}

beforeAll(async () => {
  writeBench(dir.path, synthesize({ n: 50, seed: 11, multiTurnFraction: 0.2 }));
  train = join(dir.path, "train.jsonl");
  test = join(dir.path, "test.jsonl");
  init = join(dir.path, "model.json");
  writeFileSync(init, JSON.stringify({ hiddenSize: 32, numLayers: 1, numHeads: 2, ffnSize: 64 }));
  await runApmTrain(tinyConfig(join(dir.path, "run")), { progress: false });
});
afterAll(() => dir.cleanup());

describe("APM data", () => {
  it("one example per labelled assistant turn, -100 for attributes the label lacks", async () => {
    const records = await readSteerlmRecords(train, steerlm, undefined);
    const turns = records.flatMap((r) => r.turns.filter((t) => t.role === "assistant" && t.labels));
    const apm = await loadApm(join(dir.path, "run"));
    try {
      const enc = encodeApmRecords(records, {
        tokenizer: apm.tokenizer,
        bos: apm.info.bos,
        schema: steerlm,
        seqLen: 96,
      });
      expect(enc.examples.length).toBe(turns.length);
      // every example ends in <extra_id_2>, the token whose hidden state the head reads
      const label = apm.tokenizer.encodeControl("<extra_id_2>");
      for (const ex of enc.examples) expect(ex.ids[ex.ids.length - 1]).toBe(label);
    } finally {
      await apm.free();
    }
    const t = apmTargets({ humor: 3, verbosity: 1 }, steerlm) as Float32Array;
    expect(Array.from(t)).toEqual([-100, -100, 3, -100, -100, -100, -100, -100, 1]);
    expect(apmTargets({ unknown: 2 }, steerlm)).toBeNull();
  });

  it("regression JSONL trains the same examples as the SteerLM file it came from", async () => {
    const records = await readSteerlmRecords(train, steerlm, undefined);
    const reg = join(dir.path, "train.regression.jsonl");
    await writeRecords(reg, records, "regression");
    const back = await readSteerlmRecords(reg, steerlm, undefined);
    const apm = await loadApm(join(dir.path, "run"));
    try {
      const a = encodeApmRecords(records, {
        tokenizer: apm.tokenizer,
        bos: apm.info.bos,
        schema: steerlm,
        seqLen: 96,
      }).examples;
      const b = encodeApmRecords(back, {
        tokenizer: apm.tokenizer,
        bos: apm.info.bos,
        schema: steerlm,
        seqLen: 96,
      }).examples;
      expect(b.map((e) => [Array.from(e.ids), Array.from(e.targets)])).toEqual(
        a.map((e) => [Array.from(e.ids), Array.from(e.targets)]),
      );
    } finally {
      await apm.free();
    }
  });

  it("names file, line and field of a bad label", async () => {
    const bad = join(dir.path, "bad.jsonl");
    const lines = readFileSync(train, "utf8").split("\n").slice(0, 3);
    lines[1] = lines[1].replace(/humor:\d/, "humor:7");
    writeFileSync(bad, `${lines.join("\n")}\n`);
    await expect(readSteerlmRecords(bad, steerlm, undefined)).rejects.toThrow(
      new RegExp(`${bad}:2: .*humor`),
    );
  });
});

describe("APM training", () => {
  it("the masked MSE counts only present labels (-100 and filler rows are ignored)", async () => {
    const apm = await loadApm(join(dir.path, "run"));
    const model = await LlamaModel.create(
      apm.backend,
      apm.model.config,
      { get: (n) => (apm.model.has(n) ? apm.model.getWeight(n) : undefined) },
      { regressionOutputs: 9 },
    );
    const trainer = new Trainer(apm.backend, model, {
      batchSize: 4,
      seqLen: 96,
      task: "regression",
      optimizer: plainAdam({ lr: 0, totalSteps: 1 }),
    });
    try {
      const records = await readSteerlmRecords(train, steerlm, undefined);
      const ex = encodeApmRecords(records, {
        tokenizer: apm.tokenizer,
        bos: apm.info.bos,
        schema: steerlm,
        seqLen: 96,
      }).examples.slice(0, 3);
      ex[0] = { ...ex[0], targets: Float32Array.from(ex[0].targets, (v, k) => (k % 2 ? -100 : v)) };
      const { batch } = packApmBatch(ex, 4, 96, 9, 0); // row 3 is a filler
      const r = trainer.evaluate(batch);
      let sum = 0;
      let n = 0;
      ex.forEach((e, s) => {
        e.targets.forEach((t, k) => {
          if (t === -100) return;
          sum += ((r.output[s * 9 + k] as number) - t) ** 2;
          n++;
        });
      });
      expect(n).toBe(9 * 3 - 4);
      expect(r.loss).toBeCloseTo(sum / n, 4);
      // changing a masked target changes nothing
      const changed = { ...batch, targets: Float32Array.from(batch.targets as Float32Array) };
      (changed.targets as Float32Array)[1] = -100;
      expect(trainer.evaluate(changed).loss).toBeCloseTo(r.loss, 6);
    } finally {
      trainer.free();
      model.free();
      await apm.free();
    }
  });

  it("resume from a mid-run checkpoint ends in the same APM bytes", async () => {
    const out = join(dir.path, "resumed");
    await runApmTrain(tinyConfig(out), { progress: false });
    const all = listCheckpoints(out);
    const final = readFileSync(all.at(-1) as string);
    rmSync(all.at(-1) as string);
    const r = await runApmTrain(tinyConfig(out), { resume: true, progress: false });
    expect(r.step).toBe(4);
    expect(readFileSync(r.checkpoint).equals(final)).toBe(true);
  });

  it("export gguf refuses a regression APM instead of dropping its head", async () => {
    const r = await runCli(["export", "gguf", join(dir.path, "run"), "-o", join(dir.path, "apm.gguf")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/reg_head\.weight: this checkpoint is a regression attribute model/);
    expect(existsSync(join(dir.path, "apm.gguf"))).toBe(false);
  });

  it("refuses LoRA and names the setting", async () => {
    const resolved = tinyConfig(join(dir.path, "lora"));
    resolved.config.lora = true;
    await expect(runApmTrain(resolved)).rejects.toThrow(/lora: .*LoRA/);
  });

  it("loads a bf16-trained APM with the bf16 GEMMs it was trained and validated with", async () => {
    const out = join(dir.path, "bf16");
    await runApmTrain(tinyConfig(out, { computeType: "bf16", steps: 1, val: null }), { progress: false });
    const apm = await loadApm(out);
    try {
      expect(apm.model.options.computeType).toBe("bf16");
    } finally {
      await apm.free();
    }
  });
});

describe("annotate", () => {
  it("clamps each prediction to the scale and rounds half to even", async () => {
    // A checkpoint whose head ignores the text: weight 0, bias = the raw prediction for every turn.
    const raw = [-3, 2.5, 3.5, 0.5, 1.5, 9, 4.49, 2.500001, -0.5];
    const want =
      "quality:0,toxicity:2,humor:4,creativity:0,helpfulness:2,correctness:4,coherence:4,complexity:3,verbosity:0";
    const ck = readCheckpoint(listCheckpoints(join(dir.path, "run")).at(-1) as string);
    ck.weights.set(HEAD_WEIGHT, new Float32Array((ck.weights.get(HEAD_WEIGHT) as Float32Array).length));
    ck.weights.set(HEAD_BIAS, Float32Array.from(raw));
    const fixed = join(dir.path, "fixed.ckpt");
    writeCheckpoint(fixed, ck, new Map(ck.header.tensors.map((t) => [t.name, t.shape])));
    const out = join(dir.path, "fixed.jsonl");
    const r = await annotateFile({ apm: fixed, input: test, output: out, batchSize: 3 });
    const rows = readFileSync(out, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.length).toBe(r.rows);
    const labels = rows.flatMap((row) =>
      row.conversations
        .filter((c: { from: string }) => c.from === "Assistant")
        .map((c: { label: string }) => c.label),
    );
    expect(labels.length).toBe(r.turns);
    expect(new Set(labels)).toEqual(new Set([want]));
    // agreement of those constant labels with the generator's, against a count made here
    const ref = readFileSync(test, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    const refLabels: string[] = ref.flatMap((row) =>
      row.conversations
        .filter((c: { from: string }) => c.from === "Assistant")
        .map((c: { label: string }) => c.label),
    );
    const humor = refLabels.map((l) => Number(/humor:(\d)/.exec(l)?.[1]));
    const agree = await labelAgreement(out, test, steerlm);
    const h = agree.attributes.find((a) => a.name === "humor");
    expect(h?.n).toBe(refLabels.length);
    expect(h?.exact).toBeCloseTo(humor.filter((v) => v === 4).length / humor.length, 10);
    expect(h?.within1).toBeCloseTo(humor.filter((v) => v >= 3).length / humor.length, 10);
    await expect(labelAgreement(out, train, steerlm)).rejects.toThrow(/has \d+ conversations, the reference/);
    // a subset schema writes only its attributes
    const sub = join(dir.path, "fixed-helpsteer.jsonl");
    await annotateFile({ apm: fixed, input: test, output: sub, schema: "helpsteer" });
    expect(readFileSync(sub, "utf8")).toContain(
      '"label": "helpfulness:2,correctness:4,coherence:4,complexity:3,verbosity:0"',
    );
  });

  it("--only-unlabeled keeps existing labels and fills the missing ones", async () => {
    const lines = readFileSync(test, "utf8").trimEnd().split("\n");
    const first = JSON.parse(lines[0] as string);
    first.conversations[1].label = null;
    lines[0] = JSON.stringify(first);
    const input = join(dir.path, "half.jsonl");
    writeFileSync(input, `${lines.join("\n")}\n`);
    const out = join(dir.path, "half.out.jsonl");
    const r = await annotateFile({ apm: join(dir.path, "run"), input, output: out, onlyUnlabeled: true });
    expect(r.turns).toBe(1);
    const got = readFileSync(out, "utf8").trimEnd().split("\n");
    expect(JSON.parse(got[0] as string).conversations[1].label).toMatch(
      /^quality:\d,toxicity:\d,.*verbosity:\d$/,
    );
    for (let i = 1; i < lines.length; i++)
      expect(JSON.parse(got[i] as string)).toEqual(JSON.parse(lines[i] as string));
  });

  it("says which file is not an APM", async () => {
    const ck = readCheckpoint(listCheckpoints(join(dir.path, "run")).at(-1) as string);
    ck.header.settings = { ...ck.header.settings, task: undefined };
    const sft = join(dir.path, "sft.ckpt");
    writeCheckpoint(sft, ck, new Map(ck.header.tensors.map((t) => [t.name, t.shape])));
    const err = await annotateFile({ apm: sft, input: test, output: join(dir.path, "no.jsonl") }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect(String(err.message)).toContain(`${sft}: not an attribute prediction model`);
  });
});

describe("generative APM (the paper's variant)", () => {
  it("learns a constant value string and annotate decodes exactly it", async () => {
    // Every turn labelled the same: the value-line tokens are then predictable from the template alone.
    const label =
      "quality:3,toxicity:0,humor:1,creativity:2,helpfulness:3,correctness:4,coherence:4,complexity:1,verbosity:2";
    const constant = join(dir.path, "constant.jsonl");
    const rows = readFileSync(train, "utf8")
      .trimEnd()
      .split("\n")
      .slice(0, 24)
      .map((l) => {
        const o = JSON.parse(l);
        for (const c of o.conversations) if (c.from === "Assistant") c.label = label;
        return JSON.stringify(o);
      });
    writeFileSync(constant, `${rows.join("\n")}\n`);
    const out = join(dir.path, "gen");
    const cfg = tinyConfig(out, {
      data: constant,
      val: null,
      tokenizerVocabSize: 400,
      seqLen: 256,
      steps: 30,
      lr: 0.01,
      warmupSteps: 2,
    });
    const r = await runApmTrain(cfg, { variant: "generative", progress: false });
    expect(r.step).toBe(30);
    const ann = join(dir.path, "gen.jsonl");
    const res = await annotateFile({ apm: out, input: test, output: ann });
    const labels = readFileSync(ann, "utf8")
      .trimEnd()
      .split("\n")
      .flatMap((l) =>
        JSON.parse(l)
          .conversations.filter((c: { from: string }) => c.from === "Assistant")
          .map((c: { label: string }) => c.label),
      );
    expect(labels.length).toBe(res.turns);
    expect(new Set(labels)).toEqual(new Set([label]));
    // resuming the run must keep the variant
    await expect(runApmTrain(cfg, { resume: true, variant: "regression" })).rejects.toThrow(/generative APM/);
  });
});

describe.skipIf(!haveSharedData)("APM from a llama.cpp GGUF", () => {
  it("trains every weight plus the head, and annotate reads the vocabulary from the run's base", async () => {
    const out = join(dir.path, "from-gguf");
    const cfg = tinyConfig(out, {
      init: null,
      model: sharedData("gguf", "llama-2-tiny-random.gguf"),
      steps: 2,
      val: null,
    });
    const r = await runApmTrain(cfg, { progress: false });
    const ck = readCheckpoint(r.checkpoint);
    expect(ck.weights.get(HEAD_WEIGHT)?.length).toBe(ck.header.model.hiddenSize * 9);
    expect(ck.weights.has("blk.0.attn_q.weight")).toBe(true);
    const ann = join(dir.path, "from-gguf.jsonl");
    const res = await annotateFile({ apm: out, input: test, output: ann, threads: 1 });
    expect(
      readFileSync(ann, "utf8").match(
        /"label": "quality:\d,toxicity:\d,humor:\d,creativity:\d,helpfulness:\d,correctness:\d,coherence:\d,complexity:\d,verbosity:\d"/g,
      )?.length,
    ).toBe(res.turns);
    // the generative variant needs a vocabulary of its own: refused before training, naming the setting
    const gen = tinyConfig(join(dir.path, "gen-from-gguf"), {
      init: null,
      model: cfg.config.model,
      steps: 2,
    });
    await expect(runApmTrain(gen, { variant: "generative", progress: false })).rejects.toThrow(
      /model: a generative APM needs a vocabulary with one token per attribute setting/,
    );
  });
});
