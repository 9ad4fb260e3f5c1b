import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILTIN_SCHEMAS, parseValues } from "../src/data/attributes.js";
import { readRecords } from "../src/data/read.js";
import { type DataRecord, toConversation } from "../src/data/record.js";
import { SteerableModel } from "../src/inference/model.js";
import { writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";
import { trainTinyApm, trainTinySft, writeTinyInit } from "./fixtures.js";
import {
  haveSharedData,
  runCli,
  runCliAndKill,
  sharedData,
  sidecarRows,
  startServe,
  tempDir,
} from "./helpers.js";

// SteerLM step 4 through the real CLI: a tiny SFT model (GGUF) and a tiny regression APM trained here on
// SteerBench data, then `steerlm bootstrap`, checked against independent oracles, and killed mid-run.
const dir = tempDir("steerlm-bootstrap-");
const data = join(dir.path, "train.jsonl");
const gguf = join(dir.path, "sft.gguf");
const apm = join(dir.path, "apm");
const PROMPTS = 20;

beforeAll(async () => {
  // quality:4 is rare in SteerBench (about 1 response in 200): this seed gives the top-quality set 5 entries.
  writeBench(dir.path, synthesize({ n: 400, seed: 9, multiTurnFraction: 0.1 }));
  const init = writeTinyInit(dir.path);
  await trainTinySft({ data, init, run: join(dir.path, "run"), gguf, steps: 8 });
  await trainTinyApm({ data, init, out: apm });
}, 120_000);
afterAll(() => dir.cleanup());

const bootArgs = (out: string, extra: string[] = []) => [
  "bootstrap",
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
  "--batch-size",
  "4",
  "--threads",
  "1",
  ...extra,
];

async function records(path: string): Promise<DataRecord[]> {
  const out: DataRecord[] = [];
  for await (const r of readRecords(path, { format: "steerlm" })) out.push(r);
  return out;
}

const lastLabel = (r: DataRecord) => r.turns.at(-1)?.labels;

/** Oracle for the top-quality set: straight from the JSON, no src/ code. */
function topQualityStrings(path: string): Set<string> {
  const out = new Set<string>();
  for (const line of readFileSync(path, "utf8").split("\n").filter(Boolean)) {
    for (const t of JSON.parse(line).conversations as Array<{ from: string; label: string | null }>) {
      if (t.from === "Assistant" && t.label?.split(",").includes("quality:4")) out.add(t.label);
    }
  }
  return out;
}

describe("steerlm bootstrap", () => {
  const whole = join(dir.path, "whole.jsonl");
  let summary: {
    prompts: number;
    rows: number;
    skipped: number;
    combos: { qualityKey: string; top: number; entries: number; distinct: number };
  };

  beforeAll(async () => {
    const r = await runCli(bootArgs(whole));
    expect(r.stderr).not.toContain("internal error");
    expect(r.code).toBe(0);
    summary = JSON.parse(r.stdout);
  }, 60_000);

  it("writes SteerLM JSONL: the prompt, a generated response, and the APM's values for it", async () => {
    expect(summary.prompts).toBe(PROMPTS);
    expect(summary.rows + summary.skipped).toBe(PROMPTS);
    expect(summary.rows).toBeGreaterThanOrEqual(10);
    const lines = readFileSync(whole, "utf8").trimEnd().split("\n");
    expect(lines.length).toBe(summary.rows);
    for (const line of lines) {
      expect(Object.keys(JSON.parse(line))).toEqual(["system", "conversations", "mask", "type", "bootstrap"]);
    }
    // Every line reads back as SteerLM JSONL (strict: labelled, in range), ending in a labelled response.
    const out = await records(whole);
    expect(out.length).toBe(summary.rows);
    const train = await records(data);
    // The prompt is a training row minus its last response; earlier turns keep their labels as they were.
    const promptOf = (r: DataRecord) => JSON.stringify(r.turns.slice(0, -1).map((t) => [t.text, t.labels]));
    const trainPrompts = new Set(train.map(promptOf));
    // the summary counts the empty responses the file holds
    expect(summary.empty).toBe(out.filter((r) => r.turns.at(-1)?.text.trim() === "").length);
    for (const r of out) {
      expect(r.turns.at(-1)?.role).toBe("assistant");
      expect(Object.keys(lastLabel(r) ?? {}).length).toBe(9);
      expect(trainPrompts.has(promptOf(r))).toBe(true);
    }
    expect(out.some((r) => r.turns.length > 2)).toBe(true); // multi-turn prompts are among them

    // The labels are the APM's annotation of those exact responses: annotate the output independently.
    const check = join(dir.path, "check.jsonl");
    const a = await runCli([
      "annotate",
      whole,
      "--apm",
      apm,
      "-o",
      check,
      "--batch-size",
      "4",
      "--threads",
      "1",
    ]);
    expect(a.code).toBe(0);
    const annotated = await records(check);
    expect(annotated.map(lastLabel)).toEqual(out.map(lastLabel));
    expect(annotated.map((r) => r.turns.at(-1)?.text)).toEqual(out.map((r) => r.turns.at(-1)?.text));
    // ...and not a constant: the APM tells the responses apart.
    expect(new Set(out.map((r) => JSON.stringify(lastLabel(r)))).size).toBeGreaterThan(1);
  });

  it("conditions every response on a combination drawn from the training data's top-quality set", async () => {
    const top = topQualityStrings(data);
    expect(summary.combos).toEqual({
      qualityKey: "quality",
      top: 4,
      entries: expect.any(Number),
      distinct: top.size,
    });
    expect(top.size).toBeGreaterThanOrEqual(3);
    const out = readFileSync(whole, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    const drawn = out.map((o) => o.bootstrap.requested as string);
    for (const v of drawn) expect(top.has(v)).toBe(true);
    expect(new Set(drawn).size).toBeGreaterThan(1);

    // The response is what the SFT model samples at those values with the row's seed (top-k 50, T=1).
    const model = await SteerableModel.load({ modelPath: gguf, threads: 1 });
    try {
      const recs = await records(whole);
      for (const [i, r] of recs.slice(0, 3).entries()) {
        const g = await model.generate({
          conversation: toConversation({ ...r, turns: r.turns.slice(0, -1) }, model.schema),
          attributes: parseValues(BUILTIN_SCHEMAS.steerlm, drawn[i] as string),
          temperature: 1,
          topK: 50,
          maxTokens: 24,
          seed: out[i].bootstrap.seed,
        });
        expect(g.text).toBe(r.turns.at(-1)?.text);
      }
    } finally {
      await model.dispose();
    }
  });

  it("resumes after SIGKILL and ends byte for byte like an uninterrupted run", async () => {
    const out = join(dir.path, "killed.jsonl");
    const done = await bootstrapAndKill(out, 8);
    expect(existsSync(out)).toBe(false); // never a half file under the real name
    appendFileSync(`${out}.partial`, '{"system": "Answer the us'); // a torn line, as a kill mid-write leaves
    const again = await runCli(bootArgs(out));
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).resumedPrompts).toBe(done);
    expect(readFileSync(out).equals(readFileSync(whole))).toBe(true);
    expect(existsSync(`${out}.partial`) || existsSync(`${out}.partial.json`)).toBe(false);

    const third = await runCli(bootArgs(out));
    expect(third.code).toBe(1);
    expect(third.stderr).toContain(`${out}: the output already exists`);
  }, 60_000);

  it("with --backend writes the same bytes, though the engine is killed mid-run and started again", async () => {
    // The engine: `steerlm serve` on the same GGUF, one sequence (seeded samples do not depend on batching).
    const serveArgs = ["-m", gguf, "--parallel", "1", "--threads", "1"];
    const first = await startServe([...serveArgs, "--port", "0"]);
    const out = join(dir.path, "remote.jsonl");
    const args = bootArgs(out, ["--backend", first.url, "--concurrency", "3", "--retries", "12"]);
    const run = runCli(args, { env: { STEERLM_BOOTSTRAP_THROTTLE_MS: "400" } });
    await sidecarRows(out, 4);
    await first.stop("SIGKILL");
    const again = await startServe([...serveArgs, "--port", String(first.port)]);
    try {
      const r = await run;
      expect(r.stderr).not.toContain("internal error");
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/cannot reach the engine \(ECONNREFUSED\); retry 1 of 12/);
      expect(readFileSync(out).equals(readFileSync(whole))).toBe(true);
      // Killed itself and run again, it resumes from its own record against the engine as well.
      const killed = join(dir.path, "remote-killed.jsonl");
      const done = await bootstrapAndKill(killed, 4, ["--backend", again.url, "--concurrency", "3"]);
      const resumed = await runCli(bootArgs(killed, ["--backend", again.url, "--concurrency", "3"]));
      expect(resumed.code).toBe(0);
      expect(JSON.parse(resumed.stdout).resumedPrompts).toBe(done);
      expect(readFileSync(killed).equals(readFileSync(whole))).toBe(true);
    } finally {
      await again.stop();
    }
  }, 120_000);

  it("refuses to resume with another seed, naming the setting", async () => {
    const out = join(dir.path, "reseeded.jsonl");
    await bootstrapAndKill(out, 4);
    const r = await runCli(bootArgs(out, ["--seed", "2"]));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${out}.partial.json: seed: 2 differs from the partial run's 1`);
    const format = await runCli(bootArgs(join(dir.path, "format.jsonl"), ["--prompts-from", "oasst"]));
    expect(format.code).toBe(1);
    expect(format.stderr).toContain("--prompts-from: names the format of --prompts, and none was given");
  }, 60_000);

  it("appends the training data with --mix-original, ready for `steerlm sft`", async () => {
    const mixed = join(dir.path, "mixed.jsonl");
    const r = await runCli(bootArgs(mixed, ["--mix-original"]));
    expect(r.code).toBe(0);
    const train = await records(data);
    expect(JSON.parse(r.stdout).mixed).toBe(train.length);
    const bytes = readFileSync(mixed);
    expect(bytes.subarray(0, readFileSync(whole).length).equals(readFileSync(whole))).toBe(true);
    const tail = (await records(mixed)).slice(summary.rows);
    const key = (x: DataRecord) => JSON.stringify([x.system, x.turns.map((t) => [t.text, t.labels])]);
    expect(tail.map(key)).toEqual(train.map(key));

    const sft = await runCli(
      ["sft", "--data", mixed, "--model", gguf, "--seq-len", "128", "--batch-size", "4"].concat([
        "--threads",
        "1",
        "--steps",
        "2",
        "-o",
        join(dir.path, "run2"),
      ]),
    );
    expect(sft.stderr).not.toContain("internal error");
    expect(sft.code).toBe(0);
  }, 60_000);

  it("works with the paper's generative APM: its labels are what annotate decodes for the same turns", async () => {
    const gapm = join(dir.path, "gapm");
    const t = await runCli(
      ["apm", "train", "--generative", "--data", data, "--init", join(dir.path, "model.yaml")].concat(
        ["--tokenizer-vocab-size", "400", "--seq-len", "256", "--batch-size", "4", "--threads", "1"],
        ["--steps", "20", "--lr", "0.01", "-o", gapm],
      ),
    );
    expect(t.code).toBe(0);
    const out = join(dir.path, "generative.jsonl");
    const r = await runCli(bootArgs(out, ["--limit", "8"]).map((a) => (a === apm ? gapm : a)));
    expect(r.stderr).not.toContain("internal error");
    expect(r.code).toBe(0);
    // Independently: drop the generated turns' labels and let annotate fill exactly those in.
    const stripped = join(dir.path, "generative.stripped.jsonl");
    const rows = readFileSync(out, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    for (const row of rows) row.conversations.at(-1).label = null;
    writeFileSync(stripped, `${rows.map((o) => JSON.stringify(o)).join("\n")}\n`);
    const check = join(dir.path, "generative.check.jsonl");
    const a = await runCli([
      "annotate",
      stripped,
      "--apm",
      gapm,
      "-o",
      check,
      "--only-unlabeled",
      "--threads",
      "1",
    ]);
    expect(a.code).toBe(0);
    const labels = (p: string) =>
      readFileSync(p, "utf8")
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l).conversations);
    expect(labels(check)).toEqual(labels(out));

    // The same APM exported as a GGUF and served by an engine: annotate --backend decodes the same labels.
    const gguf = join(dir.path, "gapm.gguf");
    expect((await runCli(["export", "gguf", gapm, "-o", gguf])).code).toBe(0);
    const engine = await startServe(["-m", gguf, "--port", "0", "--parallel", "1", "--threads", "1"]);
    try {
      const remote = join(dir.path, "generative.remote.jsonl");
      const args = ["annotate", stripped, "--apm", gapm, "-o", remote, "--only-unlabeled", "--threads", "1"];
      const viaEngine = await runCli([...args, "--backend", engine.url, "--concurrency", "3"]);
      expect(viaEngine.stderr).not.toContain("internal error");
      expect(viaEngine.code).toBe(0);
      expect(readFileSync(remote, "utf8")).toBe(readFileSync(check, "utf8"));
    } finally {
      await engine.stop();
    }
  }, 90_000);

  it.skipIf(!haveSharedData)(
    "writes only the model's attributes: NeMo's HelpSteer sample, helpfulness as the quality key",
    async () => {
      const nemo = sharedData("nemo-aligner", "sft_512_sample_extra_id_format.jsonl");
      const out = join(dir.path, "helpsteer.jsonl");
      const args = bootArgs(out, ["--schema", "helpsteer", "--limit", "8", "--max-tokens", "8"]);
      const r = await runCli(args.map((a) => (a === data ? nemo : a)));
      expect(r.stderr).not.toContain("internal error");
      expect(r.code).toBe(0);
      const summary = JSON.parse(r.stdout);
      expect(summary.combos.qualityKey).toBe("helpfulness");
      expect(summary.rows).toBeGreaterThan(0);
      // Oracle: helpfulness:4 labels straight from the file, pairs sorted (its key order varies).
      const norm = (label: string) => label.split(",").sort().join(",");
      const top = new Set<string>();
      for (const line of readFileSync(nemo, "utf8").split("\n").filter(Boolean)) {
        for (const t of JSON.parse(line).conversations as Array<{ from: string; label?: string | null }>) {
          if (t.from === "Assistant" && t.label?.split(",").includes("helpfulness:4")) top.add(norm(t.label));
        }
      }
      const names = BUILTIN_SCHEMAS.helpsteer.attributes.map((a) => a.name);
      for (const line of readFileSync(out, "utf8").trimEnd().split("\n")) {
        const row = JSON.parse(line);
        expect(top.has(norm(row.bootstrap.requested))).toBe(true);
        const label: string = row.conversations.at(-1).label;
        expect(label.split(",").map((p) => p.split(":")[0])).toEqual(names);
      }
    },
    60_000,
  );

  it("says which file and attribute when the training data has no top-quality response", async () => {
    const low = join(dir.path, "low.jsonl");
    const lines = readFileSync(data, "utf8")
      .split("\n")
      .filter((l) => l && !l.includes("quality:4"));
    writeFileSync(low, `${lines.join("\n")}\n`);
    const r = await runCli(bootArgs(join(dir.path, "low.out.jsonl")).map((a) => (a === data ? low : a)));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `steerlm: ${low}: quality: no assistant turn has quality:4, the top of its scale`,
    );
    expect(r.stderr).toContain("hint: bootstrapping samples the value combinations of top-quality");

    const bad = join(dir.path, "bad.jsonl");
    const rows = readFileSync(data, "utf8").split("\n").slice(0, 3);
    rows[2] = rows[2]?.replace('"from":"User"', '"from":"Robot"') ?? "";
    writeFileSync(bad, `${rows.join("\n")}\n`);
    const b = await runCli(bootArgs(join(dir.path, "bad.out.jsonl"), ["--prompts", bad]));
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(new RegExp(`${bad}:3: conversations\\[0\\]\\.from`));
  });

  it("names the flag the user typed for a bad setting the library reports (qualityKey -> --quality-key)", async () => {
    const r = await runCli(bootArgs(join(dir.path, "charm.out.jsonl"), ["--quality-key", "charm"]));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('steerlm: --quality-key: unknown attribute "charm" for schema steerlm\n');
    expect(r.stderr).toContain("hint: known: quality, toxicity,");
  });
});

/** Starts the job slowed down, and SIGKILLs it once its sidecar records at least `rows` rows. */
const bootstrapAndKill = (out: string, rows: number, extra: string[] = []) =>
  runCliAndKill(bootArgs(out, extra), out, rows, { STEERLM_BOOTSTRAP_THROTTLE_MS: "300" });
