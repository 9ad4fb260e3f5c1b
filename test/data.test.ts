import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { parquetWriteBuffer } from "hyparquet-writer";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_LINE_BYTES } from "../src/data/input.js";
import { haveSharedData, repoRoot, runCli, sharedData, tempDir } from "./helpers.js";

// End-to-end: the built CLI (`npm run build` first), as a user runs it.
const tmp = tempDir("steerlm-data-cli-");
afterAll(() => tmp.cleanup());
const at = (name: string) => join(tmp.path, name);

const SFT = sharedData("nemo-aligner", "sft_512_sample_extra_id_format.jsonl");
const RM = sharedData("nemo-aligner", "test-rm.jsonl");
const DUMMY = sharedData("nemo-aligner", "dummy-sft.jsonl");

describe.skipIf(!haveSharedData)("steerlm data on the real NeMo files", () => {
  it("convert --from steerlm --to steerlm is byte-identical", async () => {
    const r = await runCli([
      "data",
      "convert",
      "--from",
      "steerlm",
      "--to",
      "steerlm",
      SFT,
      "-o",
      at("sft.jsonl"),
    ]);
    expect(r.stderr).toContain("wrote 512 steerlm lines");
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(at("sft.jsonl")).equals(readFileSync(SFT))).toBe(true);
  });

  it("convert --from regression --to regression is byte-identical", async () => {
    const r = await runCli([
      "data",
      "convert",
      "--from",
      "regression",
      "--to",
      "regression",
      RM,
      "-o",
      at("rm.jsonl"),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(at("rm.jsonl")).equals(readFileSync(RM))).toBe(true);
  });

  it("gives plain SFT data a clear message with a hint, exit 1, no stack trace", async () => {
    const r = await runCli(["data", "validate", DUMMY]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`steerlm: ${DUMMY}:1: conversations: no attribute labels`);
    expect(r.stderr).toContain("this looks like plain SFT data");
    expect(r.stderr).toContain("hint:");
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    const skip = await runCli([
      "data",
      "convert",
      "--to",
      "chat",
      "--skip-invalid",
      DUMMY,
      "-o",
      at("dummy.jsonl"),
    ]);
    expect(skip.code, skip.stderr).toBe(1);
    expect(skip.stderr).toContain(`no records in ${DUMMY}: all 30 rows were invalid`);
    expect(skip.stderr).toContain("--allow-unlabeled");
    expect(existsSync(at("dummy.jsonl"))).toBe(false);
    expect(readFileSync(at("dummy.jsonl.rejects.jsonl"), "utf8").trim().split("\n")).toHaveLength(30);
    const ok = await runCli(["data", "validate", DUMMY, "--allow-unlabeled"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("30 valid records");
  });

  it("validate detects the format; inspect prints counts and per-attribute histograms", async () => {
    const v = await runCli(["data", "validate", RM]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe(`${RM}: regression, schema steerlm: 8 valid records from 8 rows\n`);
    const i = await runCli(["data", "inspect", SFT]);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toContain("records: 512");
    expect(i.stdout).toContain("turns per record: 2: 512");
    expect(i.stdout).toMatch(/helpfulness +0: \d+/);
    const j = await runCli(["data", "inspect", RM, "--json"]);
    const figures = JSON.parse(j.stdout);
    expect(figures.records).toBe(8);
    // test-rm.jsonl's helpfulness labels (label[4]) are 4, 2, 4, 1, 2, 0, 4, 4.
    expect(figures.attributes.helpfulness.values).toEqual({ 0: 1, 1: 1, 2: 2, 4: 4 });
    expect(figures.attributes.quality).toBeUndefined();
  });

  it("split is deterministic for a seed and keeps NeMo lines byte for byte", async () => {
    const args = (n: string) => [
      "data",
      "split",
      SFT,
      "--train",
      at(`tr${n}.jsonl`),
      "--validation",
      at(`va${n}.jsonl`),
      "--fraction",
      "0.1",
      "--seed",
      "11",
    ];
    const a = await runCli(args("a"));
    const b = await runCli(args("b"));
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(a.stderr).toContain("461 to");
    expect(readFileSync(at("vaa.jsonl"), "utf8")).toBe(readFileSync(at("vab.jsonl"), "utf8"));
    const source = new Set(readFileSync(SFT, "utf8").split("\n"));
    const val = readFileSync(at("vaa.jsonl"), "utf8").trim().split("\n");
    const train = readFileSync(at("tra.jsonl"), "utf8").trim().split("\n");
    expect([val.length, train.length]).toEqual([51, 461]);
    expect([...val, ...train].every((l) => source.has(l))).toBe(true);
    const c = await runCli([...args("c").slice(0, -1), "12"]);
    expect(c.code, c.stderr).toBe(0);
    expect(readFileSync(at("vac.jsonl"), "utf8")).not.toBe(readFileSync(at("vaa.jsonl"), "utf8"));
  });
});

describe("steerlm data with bad input", () => {
  const good = (i: number) =>
    JSON.stringify({
      system: "",
      conversations: [
        { from: "User", value: `q${i}`, label: null },
        {
          from: "Assistant",
          value: `a${i}`,
          label: "helpfulness:4,correctness:3,coherence:4,complexity:2,verbosity:1",
        },
      ],
      mask: "User",
    });
  // 3 corrupt lines among valid ones: truncated JSON, helpfulness:7 under helpsteer, no Assistant turn.
  const lines = [
    good(1),
    good(2),
    good(3).slice(0, 60),
    good(4),
    good(5).replace("helpfulness:4", "helpfulness:7"),
    good(6),
    JSON.stringify({ system: "", conversations: [{ from: "User", value: "q?", label: null }], mask: "User" }),
    good(8),
  ];
  const input = () => {
    const p = at("mixed.jsonl");
    writeFileSync(p, `${lines.join("\n")}\n`);
    return p;
  };

  it("strict mode exits 1 naming the first bad line and writes nothing", async () => {
    const p = input();
    const out = at("strict-out.jsonl");
    const r = await runCli([
      "data",
      "convert",
      "--from",
      "steerlm",
      "--to",
      "steerlm",
      "--schema",
      "helpsteer",
      p,
      "-o",
      out,
    ]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^steerlm: ${p}:3: invalid JSON: .*truncated`));
    expect(existsSync(out)).toBe(false);
  });

  it("--skip-invalid keeps every valid record and reports all 3 bad lines", async () => {
    const p = input();
    const out = at("skip-out.jsonl");
    const r = await runCli([
      "data",
      "convert",
      "--from",
      "steerlm",
      "--to",
      "steerlm",
      "--schema",
      "helpsteer",
      "--skip-invalid",
      p,
      "-o",
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`3 invalid rows skipped (written to ${out}.rejects.jsonl)`);
    expect(r.stderr).toContain(`${p}:3: invalid JSON`);
    expect(r.stderr).toContain(`${p}:5: conversations[1].label.helpfulness: 7 is out of range 0..4`);
    expect(r.stderr).toContain(`${p}:7: conversations: conversation has no Assistant turn`);
    // Valid lines were written by json.dumps-compatible code from JSON.stringify input, so compare meaning.
    const kept = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(kept.map((o) => o.conversations[0].value)).toEqual(["q1", "q2", "q4", "q6", "q8"]);
    const rejects = readFileSync(`${out}.rejects.jsonl`, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rejects.map((x) => x.line)).toEqual([3, 5, 7]);
    expect(rejects[1].raw).toBe(lines[4]);
    // a rerun that fails before any row (a misspelt input) leaves these rejects, and the output, as they were
    const before = readFileSync(`${out}.rejects.jsonl`, "utf8");
    const typo = await runCli([
      "data",
      "convert",
      "--to",
      "steerlm",
      "--skip-invalid",
      `${p}.typo`,
      "-o",
      out,
    ]);
    expect(typo.code).toBe(1);
    expect(readFileSync(`${out}.rejects.jsonl`, "utf8")).toBe(before);
    const v = await runCli(["data", "validate", "--schema", "helpsteer", "--skip-invalid", p]);
    expect(v.code, v.stderr).toBe(1);
    expect(v.stdout).toContain("5 valid records from 8 rows, 3 invalid");
  });

  it("--skip-invalid also skips a record the output format cannot express, keeping the rest", async () => {
    const p = at("chat-violence.jsonl");
    const chat = (attributes: object) =>
      JSON.stringify({
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: "yo" },
        ],
        attributes,
      });
    writeFileSync(p, `${chat({ violence: 3 })}\n${chat({ quality: 3 })}\n`);
    const out = at("chat-violence.regression.jsonl");
    const args = [
      "data",
      "convert",
      "--from",
      "chat",
      "--schema",
      "oasst-paper",
      "--to",
      "regression",
      p,
      "-o",
      out,
    ];
    const strict = await runCli(args);
    expect(strict.code).toBe(1);
    expect(existsSync(out)).toBe(false);
    const r = await runCli([...args, "--skip-invalid"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `${p}:1: turns[1].labels: attribute "violence" has no place in the regression label`,
    );
    expect(readFileSync(out, "utf8").trim().split("\n")).toHaveLength(1);
    const rejects = readFileSync(`${out}.rejects.jsonl`, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rejects.map((x) => x.line)).toEqual([1]);
    // split as convert: the record is one reject, the other goes to one of the two files
    const [train, val] = [at("cv-train.jsonl"), at("cv-val.jsonl")];
    const split = await runCli([
      "data",
      "split",
      "--from",
      "chat",
      "--schema",
      "oasst-paper",
      "--to",
      "regression",
      p,
      "--train",
      train,
      "--validation",
      val,
      "--fraction",
      "0.5",
      "--skip-invalid",
    ]);
    expect(split.code, split.stderr).toBe(0);
    expect(split.stderr).toContain(`${p}:1: turns[1].labels: attribute "violence" has no place`);
    const count = (f: string) => readFileSync(f, "utf8").split("\n").filter(Boolean).length;
    expect(count(train) + count(val)).toBe(1);
  });

  it("a line longer than a line may be is one reject at its number, the lines around it kept", async () => {
    const p = at("huge-line.jsonl");
    const good = lines[0] as string;
    const fd = openSync(p, "w");
    writeSync(fd, `${good}\n`);
    const block = Buffer.alloc(16 * 2 ** 20, "a");
    for (let n = 0; n <= MAX_LINE_BYTES; n += block.length) writeSync(fd, block);
    writeSync(fd, `\n${good}\n`);
    closeSync(fd);
    try {
      const r = await runCli(["data", "validate", "--skip-invalid", p]);
      expect(r.stderr).toContain(`${p}:2: the line is 272 MiB, more than the 256 MiB a line may have`);
      expect(r.stdout).toContain("2 valid records from 3 rows, 1 invalid");
    } finally {
      rmSync(p);
    }
  }, 60_000);

  it("rejects unknown formats and bad options as user errors", async () => {
    const p = input();
    const a = await runCli(["data", "convert", "--from", "csv", "--to", "steerlm", p, "-o", at("x.jsonl")]);
    expect(a.code, a.stderr).toBe(1);
    expect(a.stderr).toContain('unknown format "csv"');
    const b = await runCli(["data", "convert", "--to", "parquet", p, "-o", at("x.jsonl")]);
    expect(b.code, b.stderr).toBe(1);
    expect(b.stderr).toContain('cannot write format "parquet"');
    const c = await runCli([
      "data",
      "split",
      p,
      "--train",
      at("t.jsonl"),
      "--validation",
      at("v.jsonl"),
      "--fraction",
      "2",
    ]);
    expect(c.code, c.stderr).toBe(1);
    expect(c.stderr).toContain("--fraction: expected a number in 0..1");
  });
});

describe("steerlm data convert from HelpSteer Parquet", () => {
  it("converts Parquet rows to NeMo SteerLM JSONL and chat JSONL", async () => {
    const pq = at("helpsteer.parquet");
    writeFileSync(
      pq,
      Buffer.from(
        parquetWriteBuffer({
          columnData: [
            { name: "prompt", data: ["Why is the sky blue?", "Name a prime."], type: "STRING" },
            { name: "response", data: ["Rayleigh scattering.", "7"], type: "STRING" },
            { name: "helpfulness", data: [4n, 3n], type: "INT64" },
            { name: "correctness", data: [4n, 4n], type: "INT64" },
            { name: "coherence", data: [4n, 4n], type: "INT64" },
            { name: "complexity", data: [1n, 0n], type: "INT64" },
            { name: "verbosity", data: [1n, 0n], type: "INT64" },
          ],
        }),
      ),
    );
    const r = await runCli(["data", "convert", "--to", "steerlm", pq, "-o", at("hs.jsonl"), "--system", ""]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(at("hs.jsonl"), "utf8").split("\n")[1]).toBe(
      '{"system": "", "conversations": [{"from": "User", "value": "Name a prime.", "label": null}, {"from": "Assistant", "value": "7", "label": "helpfulness:3,correctness:4,coherence:4,complexity:0,verbosity:0"}], "mask": "User", "type": "VALUE_TO_TEXT"}',
    );
    const c = await runCli(["data", "convert", "--to", "chat", at("hs.jsonl"), "-o", at("hs-chat.jsonl")]);
    expect(c.code, c.stderr).toBe(0);
    expect(JSON.parse(readFileSync(at("hs-chat.jsonl"), "utf8").split("\n")[0]).attributes).toEqual({
      helpfulness: 4,
      correctness: 4,
      coherence: 4,
      complexity: 1,
      verbosity: 1,
    });
  });
});

describe("steerlm data convert interrupted", () => {
  it("leaves neither the output nor a temporary file behind when killed", async () => {
    // ~40 MB of conversations, gzip-compressed to a small file: conversion takes a few seconds.
    const input = at("big.jsonl.gz");
    const line = `${JSON.stringify({
      system: "",
      conversations: [
        { from: "User", value: "q".repeat(100), label: null },
        { from: "Assistant", value: "a".repeat(100), label: "humor:1" },
      ],
    })}\n`;
    writeFileSync(input, gzipSync(line.repeat(200_000)));
    const outDir = at("killed");
    mkdirSync(outDir);
    const child = spawn(
      process.execPath,
      [
        join(repoRoot, "bin", "steerlm.js"),
        "data",
        "convert",
        "--to",
        "chat",
        input,
        "-o",
        join(outDir, "out.jsonl"),
      ],
      { stdio: "ignore" },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on("exit", (_code, signal) => resolve(signal)),
    );
    // Kill as soon as the temporary file exists, i.e. in the middle of writing.
    const deadline = Date.now() + 60_000;
    while (readdirSync(outDir).length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    expect(readdirSync(outDir)[0]).toMatch(/^\.out\.jsonl\.tmp-/);
    child.kill("SIGTERM");
    expect(await exited).toBe("SIGTERM");
    expect(readdirSync(outDir)).toEqual([]);
  });
});

describe("steerlm data with a custom schema file", () => {
  it("validates and orders labels by a YAML schema", async () => {
    const schema = at("polite.yaml");
    writeFileSync(
      schema,
      "name: polite\nattributes:\n  - {name: politeness, max: 2, default: 2}\n  - {name: humor, max: 4, default: 0}\n",
    );
    const chat = at("polite.jsonl");
    const row = (attributes: Record<string, number>) =>
      JSON.stringify({
        messages: [
          { role: "user", content: "q" },
          { role: "assistant", content: "a" },
        ],
        attributes,
      });
    writeFileSync(chat, `${row({ humor: 3, politeness: 2 })}\n${row({ politeness: 3 })}\n`);
    const r = await runCli([
      "data",
      "convert",
      "--schema",
      schema,
      "--to",
      "steerlm",
      chat,
      "-o",
      at("polite-out.jsonl"),
    ]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`${chat}:2: attributes.politeness: 3 is out of range 0..2`);
    writeFileSync(chat, `${row({ humor: 3, politeness: 2 })}\n`);
    const ok = await runCli([
      "data",
      "convert",
      "--schema",
      schema,
      "--to",
      "steerlm",
      chat,
      "-o",
      at("polite-out.jsonl"),
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(at("polite-out.jsonl"), "utf8")).toContain('"label": "politeness:2,humor:3"');
  });
});
