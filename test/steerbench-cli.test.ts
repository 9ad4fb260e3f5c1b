import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, tempDir } from "./helpers.js";

const FILES = [
  "train.jsonl",
  "validation.jsonl",
  "test.jsonl",
  "heldout.jsonl",
  "steerbench.json",
  "README.md",
];

describe("steerlm bench (CLI end to end)", () => {
  const tmp = tempDir("steerbench-cli-");
  afterAll(() => tmp.cleanup());
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");

  it("synth writes four splits plus metadata, byte-identical for the same seed", async () => {
    const r1 = await runCli(["bench", "synth", "--n", "2000", "--seed", "9", "-o", a]);
    expect(r1.stderr).toMatch(/SteerBench: 2000 conversations in [\d.]+ s/);
    expect(r1.code).toBe(0);
    expect(r1.stdout).toContain("train 1600, validation 100, test 200, heldout 100");
    const r2 = await runCli(["bench", "synth", "--n", "2000", "--seed", "9", "-o", b]);
    expect(r2.code).toBe(0);
    for (const f of FILES) expect(readFileSync(join(b, f), "utf8"), f).toBe(readFileSync(join(a, f), "utf8"));
    const meta = JSON.parse(readFileSync(join(a, "steerbench.json"), "utf8"));
    expect(meta).toMatchObject({
      seed: 9,
      n: 2000,
      sizes: { train: 1600, validation: 100, test: 200, heldout: 100 },
    });
    const first = JSON.parse(readFileSync(join(a, "test.jsonl"), "utf8").split("\n")[0]);
    expect(first).toMatchObject({ mask: "User", type: "VALUE_TO_TEXT" });
    expect(first.conversations[0]).toMatchObject({ from: "User", label: null });
    expect(first.conversations[1].label).toMatch(
      /^quality:\d,toxicity:\d,humor:\d,creativity:\d,helpfulness:\d,/,
    );
  });

  it("score --json prints an agreement map per attribute and writes per-row scores", async () => {
    const out = join(tmp.path, "scores.jsonl");
    const r = await runCli(["bench", "score", join(a, "test.jsonl"), "--json", "-o", out]);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ rows: 200, scored: 200, labelled: 200, output: out });
    for (const name of [
      "quality",
      "toxicity",
      "humor",
      "creativity",
      "helpfulness",
      "correctness",
      "coherence",
      "complexity",
      "verbosity",
    ]) {
      expect(summary.agreement[name].n).toBe(200);
      expect(summary.agreement[name].exact).toBeGreaterThanOrEqual(0.95);
      expect(summary.agreement[name].within1).toBeGreaterThanOrEqual(0.99);
    }
    const rows = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows).toHaveLength(200);
    expect(rows[0].values).toMatch(/^quality:\d,.*verbosity:\d$/);
  });

  it("score prints a table, and handles unlabelled rows (no agreement, default output path)", async () => {
    const r = await runCli(["bench", "score", join(a, "heldout.jsonl")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/100 of 100 conversations scored/);
    expect(r.stdout).toMatch(/correctness\s+\d\.\d\d\s+100\.0%\s+100\.0%/);
    expect(readFileSync(join(a, "heldout.scores.jsonl"), "utf8").trim().split("\n")).toHaveLength(100);

    const plain = join(tmp.path, "plain.jsonl");
    writeFileSync(
      plain,
      `${JSON.stringify({
        system: "",
        conversations: [
          { from: "User", value: "What is 2 plus 2?" },
          { from: "Assistant", value: "It is 4. Easy peasy." },
        ],
      })}\n`,
    );
    const p = await runCli(["bench", "score", plain, "--json"]);
    expect(p.code).toBe(0);
    const s = JSON.parse(p.stdout);
    expect(s).toMatchObject({ scored: 1, labelled: 0, agreement: {} });
    expect(s.mean).toMatchObject({ correctness: 4, humor: 1, complexity: 0 });
  });

  it("reports user mistakes with file, line and field, exit 1", async () => {
    const bad = join(tmp.path, "bad.jsonl");
    writeFileSync(bad, `${readFileSync(join(a, "test.jsonl"), "utf8").split("\n")[0]}\n{not json\n`);
    const r = await runCli(["bench", "score", bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`steerlm: ${bad}:2: invalid JSON`);

    const badLabel = join(tmp.path, "badlabel.jsonl");
    writeFileSync(
      badLabel,
      `${JSON.stringify({
        system: "",
        conversations: [
          { from: "User", value: "hi" },
          { from: "Assistant", value: "hello", label: "humor:9" },
        ],
      })}\n`,
    );
    const l = await runCli(["bench", "score", badLabel]);
    expect(l.code).toBe(1);
    expect(l.stderr).toContain(`${badLabel}:1: conversations[1].label.humor: 9 is out of range 0..4`);

    const n = await runCli(["bench", "synth", "--n", "lots", "-o", join(tmp.path, "x")]);
    expect(n.code).toBe(1);
    expect(n.stderr).toContain("--n: expected a positive integer");

    const fam = await runCli([
      "bench",
      "synth",
      "--n",
      "10",
      "--heldout-family",
      "poetry",
      "-o",
      join(tmp.path, "x"),
    ]);
    expect(fam.code).toBe(1);
    expect(fam.stderr).toContain('unknown task family "poetry"');

    const missing = await runCli(["bench", "score", join(tmp.path, "nope.jsonl")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope\.jsonl: cannot open/);
  });
});
