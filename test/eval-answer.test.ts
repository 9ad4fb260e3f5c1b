import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { annotateFile } from "../src/apm/annotate.js";
import type { AttributeValues } from "../src/data/attributes.js";
import {
  type AdherenceSample,
  answerSet,
  loadBench,
  openAiJudge,
  parseRating,
  readAnswers,
  readJudgePrompts,
  runJudgments,
  summarizeAdherence,
} from "../src/eval/index.js";
import { SteerableModel } from "../src/inference/index.js";
import { startServer } from "../src/serve/index.js";
import { writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";
import { haveSharedData, runCli, sharedData, tempDir } from "./helpers.js";
import { writeSteerModel } from "./serve-fixture.js";

/**
 * `steerlm eval answer` and `eval adherence` with the tiny random-weight test model (gibberish text: these
 * check the mechanics and formats, not quality).
 */
const lines = (path: string) =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));

describe.skipIf(!haveSharedData)("steerlm eval answer / adherence with a tiny model", () => {
  const tmp = tempDir("steerlm-eval-answer-");
  let model: string;
  const qFile = join(tmp.path, "question.jsonl");
  const mt = () =>
    readFileSync(sharedData("fastchat", "mt_bench", "question.jsonl"), "utf8")
      .split("\n")
      .filter((l) => l !== "");

  beforeAll(async () => {
    model = await writeSteerModel(tmp.path, "tiny.gguf");
    writeFileSync(qFile, `${mt().slice(1, 3).join("\n")}\n`); // questions 82 and 83, two turns each
  });
  afterAll(() => tmp.cleanup());
  /** `eval answer` of `bench` into `out`: 4 tokens a turn, at humor 3. */
  const answerArgs = (bench: string, out: string) => [
    "eval",
    "answer",
    "-m",
    model,
    "--bench",
    bench,
    "-o",
    out,
    "--max-tokens",
    "4",
    "--attr",
    "humor=3",
  ];

  it("writes FastChat model answers (both turns, at the asked attributes) and resumes by question_id", async () => {
    const out = join(tmp.path, "answers.jsonl");
    const args = answerArgs(qFile, out);
    const r = await runCli(args);
    expect(r.stderr).toContain("answers: 2 written, 0 already there, 0 turn errors");
    expect(r.code).toBe(0);
    const a = lines(out);
    expect(a.map((x) => x.question_id)).toEqual([82, 83]);
    for (const x of a) {
      expect(Object.keys(x)).toEqual(
        expect.arrayContaining(["question_id", "answer_id", "model_id", "choices", "tstamp"]),
      );
      expect(x.model_id).toBe("tiny");
      expect(x.answer_id).toMatch(/^[23456789A-HJ-NP-Za-km-z]{22}$/);
      expect(x.choices).toHaveLength(1);
      expect(x.choices[0].index).toBe(0);
      expect(x.choices[0].turns).toHaveLength(2);
      expect(x.steerlm_values).toBe("quality:4,humor:3,verbosity:3");
    }
    // resume: with one more question (81, listed first) only it is answered; the file ends sorted
    writeFileSync(qFile, `${mt().slice(0, 3).join("\n")}\n`);
    const more = await runCli(args);
    expect(more.stderr).toContain("answers: 1 written, 2 already there");
    const b = lines(out);
    expect(b.map((x) => x.question_id)).toEqual([81, 82, 83]);
    expect(b[1].answer_id).toBe(a[0].answer_id); // kept, not regenerated
    // the same file at other attributes, or under another model id, is not this run's to resume
    const other = await runCli(args.map((x) => (x === "humor=3" ? "humor=4" : x)));
    expect(other.code).toBe(1);
    expect(other.stderr).toContain(
      `${out}: --output: holds answers of another run (question 81: values quality:4,humor:3,verbosity:3, this run quality:4,humor:4,verbosity:3)`,
    );
    const renamed = await runCli([...args, "--model-id", "tiny-2"]);
    expect(renamed.stderr).toContain(
      'holds answers of another run (question 81: model "tiny", this run "tiny-2")',
    );
    expect(lines(out)).toEqual(b);

    const bad = await runCli([
      "eval",
      "answer",
      "-m",
      model,
      "--bench",
      qFile,
      "-o",
      out,
      "--attr",
      "humour=3",
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--attr.*unknown attribute "humour"/);
  });

  it("a question too long for the context is written as ERROR, and the same command resumes over it", async () => {
    const long = join(tmp.path, "long-question.jsonl");
    const q = { question_id: 1, category: "writing", turns: ["word ".repeat(3000), "and?"] };
    writeFileSync(long, `${JSON.stringify(q)}\n`);
    const out = join(tmp.path, "long-answers.jsonl");
    const args = answerArgs(long, out);
    const first = await runCli(args);
    expect(first.stderr).toContain("answers: 1 written, 0 already there, 2 turn errors");
    const [a] = lines(out);
    expect(a.choices[0].turns).toEqual(["ERROR", "ERROR"]);
    expect(a.steerlm_values).toBe("quality:4,humor:3,verbosity:3");
    const again = await runCli(args);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain("answers: 0 written, 1 already there");
  });

  it("judges through our own steerlm serve (the tiny model as an OpenAI-compatible judge)", async () => {
    const judgeModel = await SteerableModel.load({ modelPath: model, parallel: 1 });
    const server = await startServer({ model: judgeModel, port: 0, maxTokensCap: 8 });
    try {
      const answersFile = join(tmp.path, "answers.jsonl"); // written by the test above
      const out = join(tmp.path, "served-judge.jsonl");
      const r = await runJudgments({
        bench: loadBench(qFile),
        mode: "single",
        answers: [answerSet(answersFile, readAnswers(answersFile))],
        judge: openAiJudge({ url: `${server.url}/v1`, model: "tiny" }),
        judgeModel: "tiny",
        judgePrompts: readJudgePrompts(sharedData("fastchat", "judge_prompts.jsonl")),
        output: out,
      });
      expect(r.written).toBe(6); // 3 two-turn questions
      for (const j of lines(out)) {
        // whatever the random model said, the score is what FastChat's rule reads from it
        const p = parseRating(j.judgment);
        expect(j.score).toBe(p.ok ? p.value : -1);
        expect(j.error !== undefined).toBe(!p.ok);
      }
    } finally {
      await server.close();
      await judgeModel.dispose();
    }
  });

  it("adherence: asked vs oracle-measured per attribute at the chosen levels, table and JSON", async () => {
    const json = join(tmp.path, "adherence.json");
    const r = await runCli([
      "eval",
      "adherence",
      "-m",
      model,
      "--n-prompts",
      "2",
      "--levels",
      "0..2",
      "--attributes",
      "humor,verbosity",
      "--max-tokens",
      "4",
      "--parallel",
      "2",
      "--json",
      json,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^attribute\s+req 0\s+req 1\s+req 2\s+spearman\s+per-sample\s+exact\s+mae/m);
    expect(r.stdout).toMatch(/^humor\s/m);
    const rep = JSON.parse(readFileSync(json, "utf8"));
    expect(Object.keys(rep.attributes)).toEqual(["humor", "verbosity"]);
    expect(rep.generations).toBe(2 * 3 * 2);
    expect(rep.samples).toHaveLength(12);
    expect(rep.attributes.humor.requested).toEqual([0, 1, 2]);
    for (const s of rep.samples) expect(s.values).toContain(`${s.attribute}:${s.level}`);

    // quality is derived on SteerBench: each level is asked with the others at the combination seen with it
    const derivedJson = join(tmp.path, "adherence-quality.json");
    const q = await runCli([
      "eval",
      "adherence",
      "-m",
      model,
      "--n-prompts",
      "1",
      "--attributes",
      "quality",
      "--max-tokens",
      "2",
      "--json",
      derivedJson,
    ]);
    expect(q.code).toBe(0);
    // (this model's schema is quality, humor, verbosity: the companions are SteerBench's for those)
    const samples = JSON.parse(readFileSync(derivedJson, "utf8")).samples as Array<{
      level: number;
      values: string;
    }>;
    for (const x of samples)
      expect(x.values).toMatch(new RegExp(`^quality:${x.level},humor:\\d,verbosity:\\d$`));
    // at the defaults the others would be the same at every level
    expect(new Set(samples.map((x) => x.values.replace(/^quality:\d,/, ""))).size).toBeGreaterThan(1);

    // Fractional levels (mixed) and guidance, through the same sweep.
    const mixedJson = join(tmp.path, "adherence-mixed.json");
    const mixed = await runCli([
      "eval",
      "adherence",
      "-m",
      model,
      "--n-prompts",
      "1",
      "--levels",
      "0..1:0.5",
      "--attributes",
      "humor",
      "--guidance",
      "1",
      "--max-tokens",
      "4",
      "--json",
      mixedJson,
    ]);
    expect(mixed.code).toBe(0);
    const m = JSON.parse(readFileSync(mixedJson, "utf8"));
    expect(m.attributes.humor.requested).toEqual([0, 0.5, 1]);
    expect(m.samples.map((s: { values: string }) => s.values.match(/humor:[\d.]+/)?.[0])).toEqual([
      "humor:0",
      "humor:0.5",
      "humor:1",
    ]);

    const out = await runCli(["eval", "adherence", "-m", model, "--levels", "0..7", "--attributes", "humor"]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/--levels: level 5 is out of humor's range 0\.\.4/);
  });
});

describe.skipIf(!haveSharedData)("steerlm eval adherence --apm", () => {
  const tmp = tempDir("steerlm-eval-apm-");
  afterAll(() => tmp.cleanup());

  it("measures with a trained APM: the values are what steerlm annotate predicts for the same responses", async () => {
    const model = await writeSteerModel(tmp.path, "tiny.gguf");
    writeBench(tmp.path, synthesize({ n: 40, seed: 5 }));
    writeFileSync(join(tmp.path, "init.yaml"), "hiddenSize: 32\nnumLayers: 1\nnumHeads: 2\nffnSize: 64\n");
    const run = join(tmp.path, "apm");
    const t = await runCli([
      "apm",
      "train",
      "--data",
      join(tmp.path, "train.jsonl"),
      "--init",
      join(tmp.path, "init.yaml"),
      "--tokenizer-vocab-size",
      "300",
      "--seq-len",
      "96",
      "--batch-size",
      "4",
      "--steps",
      "2",
      "--threads",
      "1",
      "-o",
      run,
    ]);
    expect(t.code).toBe(0);
    const json = join(tmp.path, "adh.json");
    const r = await runCli([
      "eval",
      "adherence",
      "-m",
      model,
      "--apm",
      run,
      "--n-prompts",
      "2",
      "--levels",
      "0,4",
      "--attributes",
      "humor",
      "--max-tokens",
      "4",
      "--json",
      json,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^humor\s/m);
    const rep = JSON.parse(readFileSync(json, "utf8"));
    expect(rep.samples).toHaveLength(4);
    // Independently: annotate the same (system, prompt, response) rows and compare the labels.
    const input = join(tmp.path, "again.jsonl");
    writeFileSync(
      input,
      rep.samples
        .map(
          (x: { prompt: string; response: string }) =>
            `${JSON.stringify({
              system: "Answer the user's question.",
              conversations: [
                { from: "User", value: x.prompt, label: null },
                { from: "Assistant", value: x.response, label: null },
              ],
              mask: "User",
            })}\n`,
        )
        .join(""),
    );
    const out = join(tmp.path, "again.out.jsonl");
    await annotateFile({ apm: run, input, output: out, progress: false });
    const labels = lines(out).map((l) => l.conversations[1].label as string);
    rep.samples.forEach((x: { measured: Record<string, number> }, i: number) => {
      const expected = Object.fromEntries(
        (labels[i] as string).split(",").map((p) => [p.split(":")[0], Number(p.split(":")[1])]),
      );
      expect(x.measured).toEqual(expected);
    });
    expect(rep.attributes.humor.requested).toEqual([0, 4]);
  });
});

describe("summarizeAdherence", () => {
  it("means per level, Spearman over means and samples, exact share, mean absolute error", () => {
    const s = (level: number, measured: number): AdherenceSample => ({
      attribute: "humor",
      level,
      request: { humor: level },
      prompt: "p",
      values: "",
      response: "",
      measured: { humor: measured },
    });
    const samples = [s(0, 0), s(0, 1), s(1, 1), s(1, 1), s(2, 4), s(2, 2)];
    const r = summarizeAdherence(samples, [{ attribute: "humor", levels: [0, 1, 2], default: 0 }]).humor;
    expect(r?.measured).toEqual([0.5, 1, 3]);
    expect(r?.spearman).toBe(1);
    expect(r?.exact).toBeCloseTo(4 / 6, 12);
    expect(r?.mae).toBeCloseTo(3 / 6, 12);
    // per-sample Spearman: ranks by hand. levels 0,0,1,1,2,2 -> 1.5,1.5,3.5,3.5,5.5,5.5;
    // measured 0,1,1,1,4,2 -> 1,3,3,3,6,5; Pearson of those ranks:
    const rx = [1.5, 1.5, 3.5, 3.5, 5.5, 5.5];
    const ry = [1, 3, 3, 3, 6, 5];
    const m = (v: number[]) => v.reduce((a, b) => a + b) / v.length;
    const [mx, my] = [m(rx), m(ry)];
    const cov = rx.reduce((a, x, i) => a + (x - mx) * ((ry[i] as number) - my), 0);
    const sx = Math.sqrt(rx.reduce((a, x) => a + (x - mx) ** 2, 0));
    const sy = Math.sqrt(ry.reduce((a, y) => a + (y - my) ** 2, 0));
    expect(r?.spearmanSamples).toBeCloseTo(cov / (sx * sy), 12);
  });

  it("off-target: the attribute over the other sweeps that left it at its default, not where a companion set it", () => {
    const sample = (
      attribute: string,
      level: number,
      request: AttributeValues,
      coherence: number,
    ): AdherenceSample => ({
      attribute,
      level,
      request,
      prompt: "p",
      values: "",
      response: "",
      measured: { humor: 0, quality: 0, coherence },
    });
    const samples = [
      sample("humor", 4, { humor: 4 }, 3),
      sample("humor", 0, { humor: 0 }, 4),
      // quality's sweep asks coherence 1 with quality 0: coherence is steered there, not a side effect
      sample("quality", 0, { quality: 0, coherence: 1 }, 1),
      // ...and at its default (4) with quality 4: counted
      sample("quality", 4, { quality: 4, coherence: 4 }, 2),
    ];
    const plan = [
      { attribute: "humor", levels: [0, 4], default: 0 },
      { attribute: "quality", levels: [0, 4], default: 4 },
      { attribute: "coherence", levels: [], default: 4 },
    ];
    expect(summarizeAdherence(samples, plan).coherence?.offTarget).toBeCloseTo((3 + 4 + 2) / 3, 12);
  });
});
