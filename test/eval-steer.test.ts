import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApmScorer } from "../src/apm/index.js";
import { DEFAULT_SYSTEM_PROMPT } from "../src/data/template.js";
import { hypervolume2d, paretoFront } from "../src/eval/pareto.js";
import { NVIDIA_REWARD_WEIGHTS } from "../src/eval/reward.js";
import { writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";
import { trainTinyApm, writeTinyInit } from "./fixtures.js";
import { haveSharedData, runCli, tempDir } from "./helpers.js";
import { writeSteerModel } from "./serve-fixture.js";

/**
 * `steerlm eval reward` (a real tiny APM as the reward model, RewardBench rows and HelpSteer2 preference
 * rows) and `steerlm eval pareto` (the tiny steerable model, the SteerBench oracle), through the real CLI.
 */
const dir = tempDir("steerlm-eval-steer-");
const apm = join(dir.path, "apm");
let rows: Array<{ prompt: string; chosen: string; rejected: string; subset: string }>;

beforeAll(async () => {
  if (!haveSharedData) return;
  const bench = synthesize({ n: 80, seed: 21 });
  writeBench(dir.path, bench);
  await trainTinyApm({ data: join(dir.path, "train.jsonl"), init: writeTinyInit(dir.path), out: apm });
  // Each prompt's own reply against another prompt's: two subsets, as RewardBench's rows carry them.
  const convs = bench.splits.train.filter((c) => c.turns.length === 2).slice(0, 12);
  expect(convs).toHaveLength(12);
  rows = convs.map((c, i) => ({
    id: i,
    prompt: (c.turns[0] as { text: string }).text,
    chosen: (c.turns[1] as { text: string }).text,
    rejected: ((convs[(i + 1) % convs.length] as typeof c).turns[1] as { text: string }).text,
    subset: i % 2 ? "odd" : "even",
  }));
});
afterAll(() => dir.cleanup());

describe.skipIf(!haveSharedData)("steerlm eval reward", () => {
  it("scores RewardBench rows per subset with bootstrap CIs, the rewards being the weighted APM predictions", async () => {
    const file = join(dir.path, "rb.jsonl");
    writeFileSync(file, rows.map((r) => `${JSON.stringify(r)}\n`).join(""));
    const json = join(dir.path, "reward.json");
    const r = await runCli(["eval", "reward", file, "--apm", apm, "--threads", "1", "--json", json]);
    expect(r.stderr).not.toContain("internal error");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^even\s+6\s+\d+\.\d%\s+\[/m);
    expect(r.stdout).toMatch(/^overall\s+12\s/m);
    const rep = JSON.parse(readFileSync(json, "utf8"));
    expect(rep.weights).toEqual(NVIDIA_REWARD_WEIGHTS);
    expect(Object.keys(rep.subsets)).toEqual(["even", "odd"]);
    expect(rep.overall.pairs).toBe(12);
    for (const a of [rep.overall, rep.subsets.even, rep.subsets.odd]) {
      expect(a.accuracy).toBe(a.correct / a.pairs);
      expect(a.ci[0]).toBeLessThanOrEqual(a.accuracy);
      expect(a.ci[1]).toBeGreaterThanOrEqual(a.accuracy);
    }
    expect(rep.overall.correct).toBe(
      rep.details.filter((d: { chosen: number; rejected: number }) => d.chosen > d.rejected).length,
    );

    // The same rewards from the library's scorer: Σ weight × raw prediction of the reply.
    const scorer = await ApmScorer.load(apm, { threads: 1 });
    try {
      const records = rows.flatMap((row) =>
        [row.chosen, row.rejected].map((reply) => ({
          system: DEFAULT_SYSTEM_PROMPT,
          turns: [
            { role: "user" as const, text: row.prompt, labels: null },
            { role: "assistant" as const, text: reply, labels: null },
          ],
          extra: new Map(),
        })),
      );
      const scores = await scorer.score(records);
      const reward = (i: number) =>
        Object.entries(NVIDIA_REWARD_WEIGHTS).reduce(
          (s, [k, w]) => s + w * (scores[i]?.attributes[k] as number),
          0,
        );
      rep.details.forEach((d: { chosen: number; rejected: number }, i: number) => {
        expect(d.chosen).toBeCloseTo(reward(2 * i), 5);
        expect(d.rejected).toBeCloseTo(reward(2 * i + 1), 5);
      });
    } finally {
      await scorer.free();
    }

    // Own weights: one attribute alone.
    const h = await runCli([
      "eval",
      "reward",
      file,
      "--apm",
      apm,
      "--weights",
      "humor=1",
      "--resamples",
      "50",
    ]);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("reward = humor=1; 95% bootstrap CI, 50 resamples");
    const bad = await runCli(["eval", "reward", file, "--apm", apm, "--weights", "humour=1"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--weights.humour: unknown attribute "humour"');
  });

  it("reads HelpSteer2's preference rows: the preferred response is chosen, rows without a preference are left out", async () => {
    const file = join(dir.path, "preference.jsonl");
    const pref = rows.slice(0, 6).map((r, i) => ({
      split: i < 3 ? "train" : "validation",
      prompt: r.prompt,
      response_1: i % 2 ? r.rejected : r.chosen,
      response_2: i % 2 ? r.chosen : r.rejected,
      preference_strength: i === 5 ? 0 : i % 2 ? 2 : -1,
    }));
    writeFileSync(file, pref.map((r) => `${JSON.stringify(r)}\n`).join(""));
    const rb = join(dir.path, "rb-same.jsonl");
    writeFileSync(
      rb,
      rows
        .slice(0, 5)
        .map((r) => `${JSON.stringify(r)}\n`)
        .join(""),
    );
    const json = join(dir.path, "pref.json");
    const [a, b] = await Promise.all([
      runCli(["eval", "reward", file, "--apm", apm, "--json", json]),
      runCli(["eval", "reward", rb, "--apm", apm, "--json", `${json}.rb`]),
    ]);
    expect(a.code).toBe(0);
    expect(a.stdout).toContain("1 rows without a preference left out");
    const rep = JSON.parse(readFileSync(json, "utf8"));
    expect(rep.format).toBe("helpsteer2-preference");
    expect(Object.keys(rep.subsets)).toEqual(["train", "validation"]);
    expect(rep.overall.pairs).toBe(5);
    // Chosen/rejected come out as the RewardBench rows they were built from: the same rewards.
    expect(b.code).toBe(0);
    const same = JSON.parse(readFileSync(`${json}.rb`, "utf8"));
    rep.details.forEach((d: { chosen: number; rejected: number }, i: number) => {
      expect(d.chosen).toBeCloseTo(same.details[i].chosen, 5);
      expect(d.rejected).toBeCloseTo(same.details[i].rejected, 5);
    });

    const neither = join(dir.path, "neither.jsonl");
    writeFileSync(neither, '{"question": "q"}\n');
    const n = await runCli(["eval", "reward", neither, "--apm", apm]);
    expect(n.code).toBe(1);
    expect(n.stderr).toContain("neither RewardBench rows nor HelpSteer2 preference rows (columns: question)");
  });
});

describe.skipIf(!haveSharedData)("steerlm eval pareto", () => {
  it("sweeps a grid of two attributes: points, the non-dominated front, its hypervolume, a PNG", async () => {
    const model = await writeSteerModel(dir.path, "steer.gguf");
    const out = join(dir.path, "pareto");
    const args = ["eval", "pareto", "-m", model, "--attrs", "humor,verbosity", "--levels", "0..1:0.5"];
    const r = await runCli([...args, "--n-prompts", "2", "--max-tokens", "6", "--guidance", "1", "-o", out]);
    expect(r.stderr).not.toContain("internal error");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Pareto sweep of humor × verbosity (guidance 1)");
    const rep = JSON.parse(readFileSync(join(out, "pareto.json"), "utf8"));
    expect(rep.points.map((p: { requested: number[] }) => p.requested)).toEqual([
      [0, 0],
      [0, 0.5],
      [0, 1],
      [0.5, 0],
      [0.5, 0.5],
      [0.5, 1],
      [1, 0],
      [1, 0.5],
      [1, 1],
    ]);
    expect(rep.generations).toBe(18);
    expect(rep.front).toEqual(paretoFront(rep.points));
    expect(rep.reference).toEqual([0, 0]);
    expect(rep.hypervolume).toBeCloseTo(hypervolume2d(rep.front, [0, 0]), 12);
    // TEST_SCHEMA: humor 0..4, verbosity 0..9.
    expect(rep.hypervolumeShare).toBeCloseTo(rep.hypervolume / 36, 12);
    const png = readFileSync(join(out, "pareto.png"));
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    const svg = readFileSync(join(out, "pareto.svg"), "utf8");
    expect(svg).toContain("Pareto front: humor vs verbosity");
    expect(svg).toContain("humor (measured)");

    const same = await runCli(["eval", "pareto", "-m", model, "--attrs", "humor,humor", "-o", out]);
    expect(same.code).toBe(1);
    expect(same.stderr).toContain("the two attributes must differ");
  });
});
