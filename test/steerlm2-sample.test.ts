import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apmTokens } from "../src/apm/data.js";
import { ApmPredictor, loadApm } from "../src/apm/model.js";
import { BUILTIN_SCHEMAS, withDefaults } from "../src/data/attributes.js";
import { type DataRecord, toConversation } from "../src/data/record.js";
import { Backend } from "../src/ggml/backend.js";
import { SteerableModel } from "../src/inference/model.js";
import { loadLlamaGguf } from "../src/model/load.js";
import { encodeRecords, packBatch } from "../src/run/data.js";
import { setupFromGguf } from "../src/run/setup.js";
import { writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";
import { logPAttributes } from "../src/steerlm2/beta.js";
import { readSamples, type Steerlm2Group } from "../src/steerlm2/format.js";
import { sampleSeed } from "../src/steerlm2/sample.js";
import { Trainer } from "../src/train/trainer.js";
import { trainTinyApm, trainTinySft, writeTinyInit } from "./fixtures.js";
import {
  haveSharedData,
  plainAdam,
  runCli,
  runCliAndKill,
  sharedData,
  startServe,
  tempDir,
} from "./helpers.js";
import { openWithLlamaCpp } from "./interop-llama-cpp.js";

// SteerLM 2.0's data half through the real CLI: a tiny SFT model (GGUF) and a tiny regression APM trained
// here on SteerBench data, then `steerlm steerlm2 sample`, each logged term recomputed independently.
const dir = tempDir("steerlm-steerlm2-");
const train = join(dir.path, "train.jsonl");
const data = join(dir.path, "prompts.jsonl");
const gguf = join(dir.path, "sft.gguf");
const priorGguf = join(dir.path, "prior.gguf");
const apm = join(dir.path, "apm");
const PROMPTS = 10;
const N = 4;
const schema = BUILTIN_SCHEMAS.steerlm;
/** llama.cpp's kernels are another float32 implementation: measured ≤ 4e-6 on sums of 100–300 tokens. */
const LLAMA_CPP_TOLERANCE = 1e-4;

beforeAll(async () => {
  writeBench(dir.path, synthesize({ n: 400, seed: 9, multiTurnFraction: 0.1 }));
  const init = writeTinyInit(dir.path);
  // The prompts: the training data with three multi-turn conversations first, so that a run of 10 has some
  const lines = readFileSync(train, "utf8").split("\n").filter(Boolean);
  const multi = (l: string) => JSON.parse(l).conversations.length > 2;
  // (the shortest ones: long conversations do not fit the tiny model's context of 512 tokens)
  const multiTurn = lines.filter(multi).sort((a, b) => a.length - b.length);
  writeFileSync(data, `${[...multiTurn.slice(0, 3), ...lines.filter((l) => !multi(l))].join("\n")}\n`);
  await trainTinySft({ data: train, init, run: join(dir.path, "run"), gguf, steps: 8 });
  await trainTinySft({ data: train, init, run: join(dir.path, "prior-run"), gguf: priorGguf, steps: 3 });
  await trainTinyApm({ data: train, init, out: apm });
}, 120_000);
afterAll(() => dir.cleanup());

const sampleArgs = (out: string, extra: string[] = []) => [
  "steerlm2",
  "sample",
  "-m",
  gguf,
  "--apm",
  apm,
  "--data",
  data,
  "-o",
  out,
  "--limit",
  String(PROMPTS),
  "--max-tokens",
  "24",
  "--threads",
  "1",
  ...extra,
];

async function groupsOf(path: string): Promise<Steerlm2Group[]> {
  const out: Steerlm2Group[] = [];
  for await (const g of readSamples(path)) out.push(g);
  return out;
}

/** Oracle: log p of the SFT-trained tokens through `steerlm sft`'s own setup and a Trainer's batched logProbs. */
async function trainerLogProbs(model: string, records: DataRecord[], runDir: string): Promise<number[]> {
  const setup = await setupFromGguf(model, runDir);
  const backend = new Backend(1);
  const { model: m } = await loadLlamaGguf(backend, model);
  try {
    const enc = encodeRecords(records, { tokenizer: setup.tokenizer, bos: setup.bos, schema, seqLen: 512 });
    expect(enc.examples.length).toBe(records.length);
    const T = Math.max(...enc.examples.map((e) => e.ids.length)) + 3; // padded: another batch shape
    const tr = new Trainer(backend, m, {
      batchSize: records.length,
      seqLen: T,
      optimizer: plainAdam({ lr: 0 }),
    });
    try {
      return Array.from(tr.logProbs(packBatch(enc.examples, T, 0).batch).sequences);
    } finally {
      tr.free();
    }
  } finally {
    m.free();
    backend.free();
    await setup.tokenizer.dispose();
  }
}

const withValues = (r: DataRecord, values: Record<string, number>): DataRecord => ({
  ...r,
  turns: r.turns.map((t, i) => (i === r.turns.length - 1 ? { ...t, labels: values } : t)),
});

describe("steerlm steerlm2 sample", () => {
  const whole = join(dir.path, "whole.jsonl");
  let groups: Steerlm2Group[];
  let summary: { prompts: number; groups: number; rows: number; skipped: number };

  beforeAll(async () => {
    const r = await runCli(sampleArgs(whole));
    expect(r.stderr).not.toContain("internal error");
    expect(r.code).toBe(0);
    summary = JSON.parse(r.stdout);
    groups = await groupsOf(whole);
  }, 60_000);

  it("writes groups of n samples of one prompt at the record's own values, in the steerlm2 format", () => {
    expect(summary.prompts).toBe(PROMPTS);
    expect(summary.skipped).toBe(0);
    expect(summary.groups).toBe(PROMPTS);
    expect(summary.rows).toBe(summary.groups * N);
    expect(groups.length).toBe(summary.groups);
    // Oracle for the values: each training line's last label, straight from the JSON.
    const labels = readFileSync(data, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l).conversations.at(-1).label as string);
    const lines = readFileSync(whole, "utf8").trimEnd().split("\n");
    expect(lines.length).toBe(summary.rows);
    for (const [i, line] of lines.entries()) {
      const o = JSON.parse(line);
      expect(Object.keys(o)).toEqual(["system", "conversations", "mask", "type", "steerlm2"]);
      expect(Object.keys(o.steerlm2)).toEqual([
        "group",
        "sample",
        "n",
        "log_q",
        "log_prior",
        "log_p_attrs",
        "target_weight",
      ]);
      expect([o.steerlm2.group, o.steerlm2.sample, o.steerlm2.n]).toEqual([Math.floor(i / N), i % N, N]);
      // no prompt of this data is too long, so group g is line g of the prompts
      expect(o.conversations.at(-1).label).toBe(labels[o.steerlm2.group]);
    }
    // multi-turn prompts are among them: earlier turns kept with their labels, the response last
    const multi = groups.filter((g) => (g.samples[0]?.record.turns.length ?? 0) > 2);
    expect(multi.length).toBeGreaterThanOrEqual(2);
    for (const g of multi) expect(g.samples[0]?.record.turns[1]?.labels).not.toBeNull();
    // the responses of a group differ (sampled, top-k 50, temperature 1)
    for (const g of groups)
      expect(new Set(g.samples.map((s) => s.record.turns.at(-1)?.text)).size).toBeGreaterThan(1);
  });

  it("weights each group by the softmax of log P(a|x,y) + log P(y|x) − log Q'(y|a,x)", () => {
    for (const g of groups) {
      const z = g.samples.map((s) => s.info.logPAttrs + s.info.logPrior - s.info.logQ);
      const e = z.map((v) => Math.exp(v - Math.max(...z)));
      const total = e.reduce((a, b) => a + b, 0);
      const w = g.samples.map((s) => s.info.targetWeight);
      for (const [i, x] of w.entries()) {
        expect(x).toBeGreaterThan(0);
        expect(Math.abs(x - (e[i] as number) / total)).toBeLessThan(1e-12);
      }
      expect(Math.abs(w.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-12);
    }
    // not all uniform: the terms tell the samples apart
    expect(groups.some((g) => g.samples.some((s) => Math.abs(s.info.targetWeight - 1 / N) > 0.01))).toBe(
      true,
    );
  });

  it("logs log Q' and the default prior as a Trainer's log-probs of the tokens `steerlm sft` trains", async () => {
    const records = groups.slice(0, 3).flatMap((g) => g.samples.map((s) => s.record));
    const infos = groups.slice(0, 3).flatMap((g) => g.samples.map((s) => s.info));
    const q = await trainerLogProbs(gguf, records, join(dir.path, "oracle-q"));
    // The default prior: the same model, the response at the schema's default values.
    const defaults = withDefaults(schema, {});
    const prior = await trainerLogProbs(
      gguf,
      records.map((r) => withValues(r, defaults)),
      join(dir.path, "oracle-prior"),
    );
    // float32 logits, float64 sums: the two paths agree to about 1e-8 on sums near −1000
    for (const [i, info] of infos.entries()) {
      expect(Math.abs(info.logQ - (q[i] as number))).toBeLessThan(1e-5);
      expect(Math.abs(info.logPrior - (prior[i] as number))).toBeLessThan(1e-5);
    }
    expect(infos.some((x) => x.logQ !== x.logPrior)).toBe(true);
  });

  it("logs log Q' as llama.cpp's log-probs of the same tokens (another engine on the same GGUF)", async () => {
    const setup = await setupFromGguf(gguf, join(dir.path, "oracle-llama-cpp"));
    const cpp = await openWithLlamaCpp(gguf, setup.config.vocabSize);
    try {
      // a multi-turn group and a single-turn one
      for (const g of [groups[0], groups[3]] as Steerlm2Group[]) {
        const records = g.samples.map((s) => s.record);
        const enc = encodeRecords(records, {
          tokenizer: setup.tokenizer,
          bos: setup.bos,
          schema,
          seqLen: 512,
        });
        for (const [i, ex] of enc.examples.entries()) {
          const rows = await cpp.logProbs(Array.from(ex.ids));
          let sum = 0;
          for (let t = 0; t + 1 < ex.ids.length; t++) {
            const y = ex.labels[t + 1] as number;
            if (y !== -100) sum += (rows[t] as Float64Array)[y] as number;
          }
          const logQ = g.samples[i]?.info.logQ as number;
          expect(Math.abs(logQ - sum)).toBeLessThan(LLAMA_CPP_TOLERANCE);
        }
      }
    } finally {
      await cpp.dispose();
      await setup.tokenizer.dispose();
    }
  });

  it("logs log P(a|x,y) as the Beta bins of the APM's raw predictions", async () => {
    const loaded = await loadApm(apm, 1);
    const T = loaded.info.seqLen;
    const one = new ApmPredictor(loaded.backend, loaded.model, 1, T); // one sequence at a time
    try {
      for (const g of groups.slice(0, 3))
        for (const { record, info } of g.samples) {
          const ids = apmTokens(record, record.turns.length - 1, loaded.tokenizer, loaded.info.bos, T).ids;
          const pred = one.predict([ids]);
          const labels = record.turns.at(-1)?.labels ?? {};
          const want = logPAttributes(
            loaded.info.schema.attributes.map((a, k) => ({
              value: labels[a.name] as number,
              prediction: pred[k] as number,
              min: a.min,
              max: a.max,
            })),
          );
          expect(Math.abs(info.logPAttrs - want)).toBeLessThan(1e-6);
        }
    } finally {
      one.free();
      await loaded.free();
    }
  });

  it("samples each response with its own seed at the group's values (top-k 50, temperature 1)", async () => {
    const model = await SteerableModel.load({ modelPath: gguf, threads: 1 });
    try {
      const g = groups[1] as Steerlm2Group;
      for (const { record, info } of g.samples) {
        const out = await model.generate({
          conversation: toConversation({ ...record, turns: record.turns.slice(0, -1) }, model.schema),
          attributes: record.turns.at(-1)?.labels ?? {},
          temperature: 1,
          topK: 50,
          maxTokens: 24,
          seed: sampleSeed(1, 1, info.sample),
        });
        expect(out.text).toBe(record.turns.at(-1)?.text);
      }
    } finally {
      await model.dispose();
    }
  });

  it("uses --prior for log P(y|x): another GGUF at the default values", async () => {
    const out = join(dir.path, "prior.jsonl");
    const r = await runCli(sampleArgs(out, ["--prior", priorGguf, "--limit", "2"]));
    expect(r.code).toBe(0);
    const gs = await groupsOf(out);
    const records = gs.flatMap((g) => g.samples.map((s) => s.record));
    const defaults = withDefaults(schema, {});
    const want = await trainerLogProbs(
      priorGguf,
      records.map((x) => withValues(x, defaults)),
      join(dir.path, "oracle-prior2"),
    );
    const infos = gs.flatMap((g) => g.samples.map((s) => s.info));
    for (const [i, info] of infos.entries())
      expect(Math.abs(info.logPrior - (want[i] as number))).toBeLessThan(1e-5);
    // the same samples as without --prior (same seeds), only the prior and the weights change
    for (const [i, s] of gs.flatMap((g) => g.samples).entries()) {
      const base = groups.flatMap((g) => g.samples)[i];
      expect(s.record.turns.at(-1)?.text).toBe(base?.record.turns.at(-1)?.text);
      expect(s.info.logQ).toBe(base?.info.logQ);
      expect(s.info.logPrior).not.toBe(base?.info.logPrior);
    }
    // --prior-values none: the prior read with no value line anywhere, as a model trained without attributes
    const plain = join(dir.path, "prior-none.jsonl");
    const p = await runCli(
      sampleArgs(plain, ["--prior", priorGguf, "--prior-values", "none", "--limit", "2"]),
    );
    expect(p.code, p.stderr).toBe(0);
    const unlabelled = (x: DataRecord): DataRecord => ({
      ...x,
      turns: x.turns.map((t) => ({ ...t, labels: null })),
    });
    const wantPlain = await trainerLogProbs(
      priorGguf,
      records.map(unlabelled),
      join(dir.path, "oracle-prior3"),
    );
    const plainInfos = (await groupsOf(plain)).flatMap((g) => g.samples.map((s) => s.info));
    expect(plainInfos.length).toBe(records.length);
    for (const [i, info] of plainInfos.entries())
      expect(Math.abs(info.logPrior - (wantPlain[i] as number))).toBeLessThan(1e-5);
    expect(plainInfos[0]?.logPrior).not.toBe(infos[0]?.logPrior);
    const bad = await runCli(sampleArgs(join(dir.path, "x.jsonl"), ["--prior-values", "off"]));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--prior-values: expected default or none, got "off"');
    // the SFT model itself was trained with value lines: "none" needs a --prior
    const alone = await runCli(sampleArgs(join(dir.path, "y.jsonl"), ["--prior-values", "none"]));
    expect(alone.code).toBe(1);
    expect(alone.stderr).toContain(
      "--prior-values: reads a prior trained without attributes, and none was given",
    );
  });

  it("draws values from the top-quality set with --values top", async () => {
    const out = join(dir.path, "top.jsonl");
    const r = await runCli(sampleArgs(out, ["--values", "top", "--limit", "4", "--samples", "2"]));
    expect(r.code).toBe(0);
    const top = new Set<string>();
    for (const line of readFileSync(data, "utf8").split("\n").filter(Boolean))
      for (const t of JSON.parse(line).conversations as Array<{ from: string; label: string | null }>)
        if (t.from === "Assistant" && t.label?.split(",").includes("quality:4")) top.add(t.label);
    const lines = readFileSync(out, "utf8").trimEnd().split("\n");
    expect(lines.length).toBe(8);
    for (const l of lines) expect(top.has(JSON.parse(l).conversations.at(-1).label)).toBe(true);
    expect((await groupsOf(out)).every((g) => g.samples.length === 2)).toBe(true);
  });

  it("resumes after SIGKILL and ends byte for byte like an uninterrupted run", async () => {
    const out = join(dir.path, "killed.jsonl");
    const done = await sampleAndKill(out, 4);
    expect(existsSync(out)).toBe(false); // never a half file under the real name
    appendFileSync(`${out}.partial`, '{"system": "Answer the us'); // a torn line, as a kill mid-write leaves
    const again = await runCli(sampleArgs(out));
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).resumedPrompts).toBe(done);
    expect(readFileSync(out).equals(readFileSync(whole))).toBe(true);
    expect(existsSync(`${out}.partial`) || existsSync(`${out}.partial.json`)).toBe(false);
    const third = await runCli(sampleArgs(out));
    expect(third.code).toBe(1);
    expect(third.stderr).toContain(`${out}: the output already exists`);
  }, 60_000);

  it("with --backend writes the same bytes: samples drawn by an engine, several groups in flight", async () => {
    const engine = await startServe(["-m", gguf, "--port", "0", "--parallel", "1", "--threads", "1"]);
    try {
      const out = join(dir.path, "remote.jsonl");
      const r = await runCli(sampleArgs(out, ["--backend", engine.url, "--concurrency", "8"]));
      expect(r.stderr).not.toContain("internal error");
      expect(r.code).toBe(0);
      expect(readFileSync(out).equals(readFileSync(whole))).toBe(true);
    } finally {
      await engine.stop();
    }
  }, 60_000);

  it("refuses to resume with another --samples, naming the setting", async () => {
    const out = join(dir.path, "resampled.jsonl");
    await sampleAndKill(out, 2);
    const r = await runCli(sampleArgs(out, ["--samples", "3"]));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${out}.partial.json: samples: 3 differs from the partial run's 4`);
    // a setting recorded only when given, and left out on resume, differs too
    const none = join(dir.path, "prior-none-killed.jsonl");
    const prior = ["--prior", priorGguf];
    await runCliAndKill(sampleArgs(none, [...prior, "--prior-values", "none"]), none, 2, {
      STEERLM_STEERLM2_THROTTLE_MS: "300",
    });
    const dropped = await runCli(sampleArgs(none, prior));
    expect(dropped.code).toBe(1);
    expect(dropped.stderr).toContain(
      `${none}.partial.json: priorValues: unset differs from the partial run's "none"`,
    );
  }, 90_000);

  it("refuses a generative APM and an unlabelled response with clear messages", async () => {
    const gapm = join(dir.path, "gapm");
    const t = await runCli(
      ["apm", "train", "--generative", "--data", train, "--init", join(dir.path, "model.yaml")].concat(
        ["--tokenizer-vocab-size", "400", "--seq-len", "256", "--batch-size", "2", "--threads", "1"],
        ["--steps", "1", "-o", gapm],
      ),
    );
    expect(t.code).toBe(0);
    const g = await runCli(sampleArgs(join(dir.path, "g.jsonl")).map((a) => (a === apm ? gapm : a)));
    expect(g.code).toBe(1);
    expect(g.stderr).toMatch(/--apm: a generative APM gives labels, not the real-valued predictions/);
    const key = await runCli(sampleArgs(join(dir.path, "key.jsonl"), ["--quality-key", "humor"]));
    expect(key.code).toBe(1);
    expect(key.stderr).toContain("--quality-key: applies to --values top only");
    expect(g.stderr).toContain("hint: P(a|x,y) comes from a regression APM");

    const bad = join(dir.path, "unlabelled.jsonl");
    const rows = readFileSync(data, "utf8").split("\n").slice(0, 3);
    const o = JSON.parse(rows[1] as string);
    o.conversations.at(-1).label = null;
    rows[1] = JSON.stringify(o);
    writeFileSync(bad, `${rows.join("\n")}\n`);
    const u = await runCli(sampleArgs(join(dir.path, "u.jsonl")).map((a) => (a === data ? bad : a)));
    expect(u.code).toBe(1);
    const at = o.conversations.length - 1;
    expect(u.stderr).toContain(
      `steerlm: ${bad}:2: conversations[${at}].label: the response has no attribute label to sample at`,
    );
  });

  it.skipIf(!haveSharedData)(
    "refuses a --prior without SteerLM control tokens before sampling anything",
    async () => {
      const plain = sharedData("gguf", "llama-2-tiny-random.gguf");
      const out = join(dir.path, "plain-prior.jsonl");
      const r = await runCli(sampleArgs(out, ["--prior", plain, "--limit", "2"]));
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `steerlm: ${plain}: --prior: the vocabulary has no SteerLM control tokens (<extra_id_0>, <extra_id_1>, <extra_id_2>)`,
      );
      expect(existsSync(out) || existsSync(`${out}.partial`)).toBe(false);
    },
  );

  it("explains the method in --help", async () => {
    const h = await runCli(["steerlm2", "sample", "--help"]);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("softmax_i( log P(a|x,y_i) + log P(y_i|x) - log Q'(y_i|a,x) )");
    expect(h.stdout).toContain("--prior <gguf>");
  });
});

/** Starts the job slowed down, and SIGKILLs it once its sidecar records at least `rows` rows. */
const sampleAndKill = (out: string, rows: number) =>
  runCliAndKill(sampleArgs(out), out, rows, { STEERLM_STEERLM2_THROTTLE_MS: "300" });
