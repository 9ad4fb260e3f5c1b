import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { haveSharedData, sharedData, tempDir } from "../../test/helpers.js";
import { InputError } from "../util/errors.js";
import { detectFormat, type Rejected, readRecords } from "./read.js";
import type { DataRecord } from "./record.js";
import { sampleIndices, splitRecords, validationCount } from "./split.js";
import { writeRecords, writeSteerlmJsonl } from "./write.js";

const tmp = tempDir("steerlm-read-");
afterAll(() => tmp.cleanup());

const SFT = () => sharedData("nemo-aligner", "sft_512_sample_extra_id_format.jsonl");
const RM = () => sharedData("nemo-aligner", "test-rm.jsonl");
const DUMMY = () => sharedData("nemo-aligner", "dummy-sft.jsonl");

async function collect(path: string, opts: Parameters<typeof readRecords>[1] = {}): Promise<DataRecord[]> {
  const out: DataRecord[] = [];
  for await (const r of readRecords(path, opts)) out.push(r);
  return out;
}

describe.skipIf(!haveSharedData)("real NeMo files", () => {
  it("re-exports the SteerLM sample byte for byte (mixed ensure_ascii lines, key orders, dataset keys)", async () => {
    const out = join(tmp.path, "sft.jsonl");
    const n = await writeSteerlmJsonl(out, readRecords(SFT(), { format: "steerlm" }));
    expect(n).toBe(512);
    expect(readFileSync(out).equals(readFileSync(SFT()))).toBe(true);
  });

  it("re-exports the regression sample byte for byte, labels as 4.0 / -100.0", async () => {
    const out = join(tmp.path, "rm.jsonl");
    await writeRecords(out, readRecords(RM(), { format: "regression" }), "regression");
    expect(readFileSync(out).equals(readFileSync(RM()))).toBe(true);
  });

  it("reads a gzip copy named .jsonl the same way (magic bytes, not the name)", async () => {
    const gz = join(tmp.path, "sft-gz.jsonl");
    writeFileSync(gz, gzipSync(readFileSync(SFT())));
    const out = join(tmp.path, "sft-from-gz.jsonl");
    await writeSteerlmJsonl(out, readRecords(gz));
    expect(readFileSync(out).equals(readFileSync(SFT()))).toBe(true);
  });

  it("renders regression rows from the SteerLM sample that match NeMo's template", async () => {
    const records = await collect(SFT());
    expect(records[0].turns[1].labels).toEqual({
      helpfulness: expect.any(Number),
      correctness: expect.any(Number),
      coherence: expect.any(Number),
      complexity: expect.any(Number),
      verbosity: expect.any(Number),
    });
    const out = join(tmp.path, "sft-rm.jsonl");
    await writeRecords(out, records.slice(0, 3), "regression");
    const rows = readFileSync(out, "utf8").trim().split("\n");
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatch(
      /^\{"text": "<extra_id_0>System\\n\\n<extra_id_1>User\\n.*\\n<extra_id_2>", "label": \[-100\.0, -100\.0, -100\.0, -100\.0, \d\.0, \d\.0, \d\.0, \d\.0, \d\.0\]\}$/,
    );
  });

  it("detects the format of each real file", async () => {
    expect(await detectFormat(SFT())).toBe("steerlm");
    expect(await detectFormat(RM())).toBe("regression");
    expect(await detectFormat(DUMMY())).toBe("steerlm");
  });

  it("refuses plain SFT data with a clear message and a hint, never a crash", async () => {
    let err: unknown;
    try {
      await collect(DUMMY());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toBe(
      `${DUMMY()}:1: conversations: no attribute labels: no Assistant turn has a label (this looks like plain SFT data)`,
    );
    expect((err as InputError).hint).toContain("--allow-unlabeled");
    const all = await collect(DUMMY(), { allowUnlabeled: true });
    expect(all).toHaveLength(30);
    expect(all.every((r) => r.turns.every((t) => t.labels === null))).toBe(true);
  });
});

const havePython = spawnSync("python3", ["-c", "pass"]).status === 0;

// Oracle: files written by CPython's json.dumps itself, both ensure_ascii modes mixed line by line (as in
// the real sample), with DEL, astral characters, escapes, extra keys holding floats, nested objects and
// integer-like keys, must come back byte for byte.
const PY_WRITER = `
import json, random
random.seed(7)
pool = ["a", " ", "\\n", "\\t", "\\"", "\\\\", "/", "\\x7f", "\\x00", "\\x1f", "\u00e9", "\u4e2d", "\\U0001F600", "\u2028", "<extra_id_1>"]
def text(): return "".join(random.choice(pool) for _ in range(random.randint(0, 20)))
keys = ["helpfulness", "correctness", "coherence", "complexity", "verbosity", "quality", "humor"]
out = open(__import__("sys").argv[1], "w", encoding="utf-8")
rm = open(__import__("sys").argv[2], "w", encoding="utf-8")
for i in range(300):
    ks = random.sample(keys, random.randint(1, len(keys)))
    turns = [{"from": "User", "value": text(), "label": None}, {"value": text(), "from": "Assistant", "label": ",".join(f"{k}:{random.randint(0, 4)}" for k in ks)}]
    if i % 3 == 0: del turns[0]["label"]
    row = {"system": text(), "conversations": turns, "mask": "User"}
    if i % 2: row = {"conversations": turns, "dataset": text(), "system": row["system"], "mask": "User", "score": random.random() * 10 ** random.randint(-6, 17), "meta": {"2": 1.0, "1": [True, None, -0.0, 10 ** 20]}}
    out.write(json.dumps(row, ensure_ascii=(i % 4 != 1)) + "\\n")
    label = [float(random.randint(0, 4)) if random.random() < 0.7 else -100.0 for _ in range(9)]
    t = "<extra_id_0>System\\n" + text() + "\\n<extra_id_1>User\\n" + text() + "\\n<extra_id_1>Assistant\\n" + text() + "\\n<extra_id_2>"
    rm.write(json.dumps({"text": t, "label": label}, ensure_ascii=(i % 4 != 1)) + "\\n")
`;

describe.skipIf(!havePython)("files written by CPython's json.dumps (oracle)", () => {
  it("come back byte for byte through the SteerLM and regression importers and exporters", async () => {
    const sft = join(tmp.path, "py-sft.jsonl");
    const rm = join(tmp.path, "py-rm.jsonl");
    const r = spawnSync("python3", ["-c", PY_WRITER, sft, rm], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const rows = readFileSync(sft, "utf8").trim().split("\n");
    expect(rows.some((l) => /[\u0080-\uffff]/.test(l))).toBe(true);
    expect(rows.some((l) => l.includes("\\u00e9"))).toBe(true);
    for (const [input, format] of [
      [sft, "steerlm"],
      [rm, "regression"],
    ] as const) {
      const out = join(tmp.path, `py-out-${format}.jsonl`);
      await writeRecords(out, readRecords(input, { format, allowUnlabeled: true }), format);
      expect(readFileSync(out, "utf8")).toBe(readFileSync(input, "utf8"));
    }
  });
});

describe("bad input", () => {
  const good = (i: number) =>
    JSON.stringify({
      system: "",
      conversations: [
        { from: "User", value: `q${i}` },
        { from: "Assistant", value: `a${i}`, label: "helpfulness:3" },
      ],
    });
  const lines = [
    good(1),
    good(2).slice(0, 40), // truncated JSON
    good(3),
    good(4).replace("helpfulness:3", "helpfulness:7"),
    "",
    JSON.stringify({ system: "", conversations: [{ from: "User", value: "only a question" }] }),
    good(5),
  ];
  const path = () => {
    const p = join(tmp.path, "mixed.jsonl");
    writeFileSync(p, `${lines.join("\n")}\n`);
    return p;
  };

  it("stops at the first invalid line in strict mode", async () => {
    const p = path();
    await expect(collect(p, { schema: "helpsteer" })).rejects.toThrow(
      new RegExp(`^${p}:2: invalid JSON: .*unexpected end of line \\(truncated\\?\\) at column 41$`),
    );
  });

  it("hands every invalid line to onReject and keeps every valid record", async () => {
    const p = path();
    const rejected: Rejected[] = [];
    const reader = readRecords(p, { schema: "helpsteer", onReject: (r) => void rejected.push(r) });
    const records: DataRecord[] = [];
    for await (const r of reader) records.push(r);
    expect(records.map((r) => r.turns[0].text)).toEqual(["q1", "q3", "q5"]);
    expect(rejected.map((r) => [r.line, r.error.slice(p.length + 1)])).toEqual([
      [2, expect.stringMatching(/^2: invalid JSON/)],
      [4, "4: conversations[1].label.helpfulness: 7 is out of range 0..4"],
      [6, "6: conversations: conversation has no Assistant turn"],
    ]);
    expect(rejected[1].raw).toBe(lines[3]);
    expect(reader.stats).toMatchObject({
      format: "steerlm",
      schema: "helpsteer",
      rows: 6,
      records: 3,
      rejected: 3,
    });
  });

  it("rejects a line that is not UTF-8 instead of keeping it with replacement characters", async () => {
    const p = join(tmp.path, "latin1.jsonl");
    const bad = Buffer.from(good(2).replace("q2", "caf\u00e9"), "latin1"); // é as the single byte 0xe9
    writeFileSync(p, Buffer.concat([Buffer.from(`${good(1)}\r\n`), bad, Buffer.from(`\n${good(3)}`)]));
    const rejected: Rejected[] = [];
    const records: DataRecord[] = [];
    for await (const r of readRecords(p, { schema: "helpsteer", onReject: (x) => void rejected.push(x) }))
      records.push(r);
    expect(records.map((r) => r.turns[0].text)).toEqual(["q1", "q3"]);
    expect(rejected.map((r) => r.error)).toEqual([`${p}:2: not UTF-8 text`]);
  });

  it("says which file is missing or unreadable", async () => {
    await expect(collect(join(tmp.path, "nope.jsonl"), { format: "steerlm" })).rejects.toThrow(
      /nope\.jsonl: cannot open: ENOENT/,
    );
    const corrupt = join(tmp.path, "corrupt.jsonl.gz");
    writeFileSync(corrupt, gzipSync(`${lines[0]}\n${lines[2]}\n`).subarray(0, 30));
    await expect(collect(corrupt, { format: "steerlm" })).rejects.toThrow(/corrupt\.jsonl\.gz: .*gzip/);
    await expect(collect(tmp.path, { format: "steerlm" })).rejects.toThrow(
      `${tmp.path}: cannot read: EISDIR`,
    );
    const pq = join(tmp.path, "bad.parquet");
    writeFileSync(pq, "PAR1 not really");
    await expect(collect(pq)).rejects.toThrow(`${pq}: not a readable Parquet file`);
  });
});

describe("atomic output", () => {
  it("leaves no file (and no temporary) when writing fails half way", async () => {
    const out = join(tmp.path, "atomic", "out.jsonl");
    const dir = join(tmp.path, "atomic");
    (await import("node:fs")).mkdirSync(dir, { recursive: true });
    async function* records() {
      yield {
        system: "",
        turns: [
          { role: "user" as const, text: "q", labels: null },
          { role: "assistant" as const, text: "a", labels: { humor: 1 } },
        ],
        extra: new Map(),
      };
      throw new InputError("boom", { file: "in.jsonl", line: 2 });
    }
    await expect(writeRecords(out, records(), "steerlm")).rejects.toThrow("in.jsonl:2: boom");
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("deterministic split", () => {
  it("picks exactly round(n * fraction) distinct indices, the same for the same seed", () => {
    const a = sampleIndices(1000, validationCount(1000, 0.1), 42);
    expect(a.size).toBe(100);
    expect([...a].every((i) => i >= 0 && i < 1000)).toBe(true);
    expect([...sampleIndices(1000, 100, 42)]).toEqual([...a]);
    expect([...sampleIndices(1000, 100, 43)]).not.toEqual([...a]);
    expect(validationCount(10, 0.01)).toBe(1);
    expect(validationCount(1, 0.5)).toBe(0);
    expect(validationCount(10, 1)).toBe(10);
  });

  it("splits a file into disjoint train/validation parts that cover it", async () => {
    const records: DataRecord[] = Array.from({ length: 50 }, (_, i) => ({
      system: "",
      turns: [
        { role: "user", text: `q${i}`, labels: null },
        { role: "assistant", text: `a${i}`, labels: { humor: i % 5 } },
      ],
      extra: new Map(),
    }));
    const paths = { train: join(tmp.path, "train.jsonl"), validation: join(tmp.path, "val.jsonl") };
    const res = await splitRecords(
      async function* () {
        yield* records;
      },
      paths,
      { fraction: 0.2, seed: 7, format: "chat" },
    );
    expect(res).toEqual({ train: 40, validation: 10 });
    const texts = (p: string) =>
      readFileSync(p, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).messages[2].content);
    const train = texts(paths.train);
    const val = texts(paths.validation);
    expect(new Set([...train, ...val]).size).toBe(50);
    // Order within each part follows the input.
    expect(train).toEqual([...train].sort((x, y) => Number(x.slice(1)) - Number(y.slice(1))));
    const again = { train: join(tmp.path, "train2.jsonl"), validation: join(tmp.path, "val2.jsonl") };
    await splitRecords(
      async function* () {
        yield* records;
      },
      again,
      { fraction: 0.2, seed: 7, format: "chat" },
    );
    expect(readFileSync(again.validation, "utf8")).toBe(readFileSync(paths.validation, "utf8"));
  });
});
