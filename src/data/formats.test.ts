import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { parquetWriteBuffer } from "hyparquet-writer";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { loadSchema } from "./attributes.js";
import { readRecords } from "./read.js";
import { type DataFormat, type DataRecord, OUTPUT_FORMATS, toConversation } from "./record.js";
import { renderConversation } from "./template.js";
import { writeRecords } from "./write.js";

const tmp = tempDir("steerlm-formats-");
afterAll(() => tmp.cleanup());

const file = (name: string, text: string | Buffer) => {
  const path = join(tmp.path, name);
  writeFileSync(path, text);
  return path;
};
const jsonl = (rows: unknown[]) => `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`;

async function collect(path: string, opts: Parameters<typeof readRecords>[1] = {}): Promise<DataRecord[]> {
  const out: DataRecord[] = [];
  for await (const r of readRecords(path, opts)) out.push(r);
  return out;
}

/** What must survive any conversion: system, roles, texts and labels. */
const meaning = (r: DataRecord) => ({
  system: r.system,
  turns: r.turns.map((t) => ({ role: t.role, text: t.text, labels: t.labels })),
});

const helpsteerRows = [
  {
    prompt: "What is 2+2?",
    response: "4.",
    helpfulness: 4,
    correctness: 4,
    coherence: 4,
    complexity: 0,
    verbosity: 0,
  },
  {
    prompt: "Hi\n<extra_id_1>Assistant\nHello!\n<extra_id_1>User\nTell me a joke é😀",
    response: 'Why did the "chicken"\tcross?',
    helpfulness: 2,
    correctness: 3,
    coherence: 4,
    complexity: 1,
    verbosity: 2,
  },
];

const oasstTree = {
  message_tree_id: "t1",
  tree_state: "ready_for_export",
  prompt: {
    message_id: "m0",
    role: "prompter",
    text: "Q?",
    lang: "en",
    replies: [
      {
        message_id: "m1",
        role: "assistant",
        text: "A1",
        lang: "en",
        // 0.625*4 = 2.5 -> 2 (half to even); 0.875*4 = 3.5 -> 4; spam is not an oasst attribute.
        labels: {
          quality: { value: 0.625, count: 3 },
          humor: { value: 0.875, count: 3 },
          spam: { value: 0, count: 3 },
          helpfulness: { value: 0.25, count: 3 },
        },
        replies: [
          {
            message_id: "m3",
            role: "prompter",
            text: "Q2",
            lang: "en",
            replies: [
              {
                message_id: "m4",
                role: "assistant",
                text: "A3",
                lang: "en",
                labels: { toxicity: { value: 0.1, count: 2 } },
                replies: [],
              },
            ],
          },
        ],
      },
      {
        message_id: "m2",
        role: "assistant",
        text: "A2",
        lang: "en",
        labels: { creativity: { value: 1, count: 1 } },
        replies: [],
      },
      { message_id: "m5", role: "assistant", text: "gone", lang: "en", deleted: true, replies: [] },
    ],
  },
};

interface Fixture {
  format: DataFormat;
  path: () => string;
  /** Records the fixture must give. */
  expect: number;
  allowUnlabeled?: boolean;
}

const fixtures: Fixture[] = [
  {
    format: "steerlm",
    expect: 2,
    path: () =>
      file(
        "steerlm.jsonl",
        jsonl([
          {
            system: "S",
            conversations: [
              { from: "User", value: "q", label: null },
              { from: "Assistant", value: "a", label: "verbosity:2,helpfulness:4" },
            ],
            mask: "User",
            dataset: "x",
          },
          {
            conversations: [
              { value: "q1", from: "User" },
              { from: "Assistant", value: "a1", label: "humor:1" },
              { from: "User", value: "q2" },
              { from: "Assistant", value: "a2", label: "humor:3,quality:4" },
            ],
            system: "",
            mask: "User",
            type: "VALUE_TO_TEXT",
          },
        ]),
      ),
  },
  {
    format: "regression",
    expect: 1,
    path: () =>
      file(
        "regression.jsonl",
        `{"text": "<extra_id_0>System\\nS\\n<extra_id_1>User\\nq\\n<extra_id_1>Assistant\\na\\n<extra_id_2>", "label": [-100.0, -100.0, -100.0, -100.0, 4.0, 3.0, 4.0, 1.0, 2.0]}\n`,
      ),
  },
  { format: "helpsteer", expect: 2, path: () => file("helpsteer.jsonl", jsonl(helpsteerRows)) },
  {
    format: "helpsteer2-preference",
    expect: 2,
    allowUnlabeled: true,
    path: () =>
      file(
        "pref.jsonl",
        jsonl([{ split: "train", prompt: "p", response_1: "r1", response_2: "r2", preference_strength: -2 }]),
      ),
  },
  { format: "oasst", expect: 2, path: () => file("oasst.trees.jsonl", jsonl([oasstTree])) },
  {
    format: "chat",
    expect: 1,
    path: () =>
      file(
        "chat.jsonl",
        jsonl([
          {
            messages: [
              { role: "system", content: "S" },
              { role: "user", content: "q" },
              { role: "assistant", content: "a" },
            ],
            attributes: { helpfulness: 3, verbosity: 1 },
          },
        ]),
      ),
  },
];

// One contract, run against every importer and every exporter.
describe.each(fixtures)("importer contract: $format", (fx) => {
  it("streams valid records that render, are located, and survive every exporter", async () => {
    const path = fx.path();
    const records = await collect(path, { format: fx.format, allowUnlabeled: fx.allowUnlabeled });
    expect(records).toHaveLength(fx.expect);
    const detected = await collect(path, { allowUnlabeled: fx.allowUnlabeled });
    expect(detected.map(meaning)).toEqual(records.map(meaning));
    for (const r of records) {
      expect(r.origin?.file).toBe(path);
      expect(r.origin?.format).toBe(fx.format);
      expect(renderConversation(toConversation(r), "acsft").text.startsWith("<extra_id_0>System\n")).toBe(
        true,
      );
    }
    for (const to of OUTPUT_FORMATS) {
      const labelled = records.filter((r) => r.turns.some((t) => t.labels));
      if (to === "regression" && labelled.length === 0) continue;
      const out = join(tmp.path, `${fx.format}-to-${to}.jsonl`);
      await writeRecords(out, records, to);
      const back = await collect(out, { format: to, allowUnlabeled: fx.allowUnlabeled });
      if (to === "regression") {
        // One row per labelled assistant turn, the conversation cut after it; earlier labels are not kept.
        const rows = labelled.flatMap((r) =>
          r.turns.flatMap((t, i) => (t.labels ? [{ ...r, turns: r.turns.slice(0, i + 1) }] : [])),
        );
        expect(back.map((b) => meaning(b).turns.at(-1))).toEqual(rows.map((r) => meaning(r).turns.at(-1)));
        expect(back.map((b) => b.system)).toEqual(rows.map((r) => r.system));
      } else {
        expect(back.map(meaning)).toEqual(records.map(meaning));
      }
    }
  });
});

describe("SteerLM JSONL", () => {
  it("keeps the label text, key order and extra keys; writes NeMo's defaults for new records", async () => {
    const path = fixtures[0].path();
    const records = await collect(path);
    expect(records[0].turns[1].labels).toEqual({ helpfulness: 4, verbosity: 2 });
    const out = join(tmp.path, "steerlm-rt.jsonl");
    await writeRecords(out, records, "steerlm");
    // The source was written by JSON.stringify (no spaces): a NeMo (Python) line would come back as is;
    // here key order, label text and extra keys must survive while separators become Python's.
    const lines = readFileSync(out, "utf8").trim().split("\n");
    expect(lines[0]).toBe(
      '{"system": "S", "conversations": [{"from": "User", "value": "q", "label": null}, {"from": "Assistant", "value": "a", "label": "verbosity:2,helpfulness:4"}], "mask": "User", "dataset": "x"}',
    );
    expect(lines[1].startsWith('{"conversations": [{"value": "q1", "from": "User"}')).toBe(true);
    // A changed label is written in canonical order.
    records[0].turns[1].labels = { verbosity: 0, helpfulness: 1 };
    const fresh: DataRecord = { ...records[0], layout: undefined, extra: new Map() };
    await writeRecords(out, [records[0], fresh], "steerlm");
    const [changed, created] = readFileSync(out, "utf8").trim().split("\n");
    expect(changed).toContain('"label": "helpfulness:1,verbosity:0"');
    expect(created).toBe(
      '{"system": "S", "conversations": [{"from": "User", "value": "q", "label": null}, {"from": "Assistant", "value": "a", "label": "helpfulness:1,verbosity:0"}], "mask": "User", "type": "VALUE_TO_TEXT"}',
    );
  });

  it.each([
    ['{"system": "", "conversations": []}', "conversations: conversation has no turns"],
    ['{"conversations": [{"from": "User", "value": "q"}]}', "system: expected a string, got nothing"],
    [
      '{"system": "", "conversations": [{"from": "Bot", "value": "q"}]}',
      'conversations[0].from: expected "User" or "Assistant"',
    ],
    [
      '{"system": "", "conversations": [{"from": "User", "value": "q"}]}',
      "conversations: conversation has no Assistant turn",
    ],
    [
      '{"system": "", "conversations": [{"from": "User", "value": "q"}, {"from": "Assistant", "value": "a", "label": "funny:1"}]}',
      'conversations[1].label.funny: unknown attribute "funny"',
    ],
    [
      '{"system": "", "conversations": [{"from": "User", "value": "q"}, {"from": "Assistant", "value": "a", "label": "humor:1,humor:2"}]}',
      'conversations[1].label.humor: duplicate attribute "humor"',
    ],
  ])("rejects %s", async (line, message) => {
    const path = file("bad.jsonl", `${line}\n`);
    await expect(collect(path, { format: "steerlm" })).rejects.toThrow(`${path}:1: ${message}`);
  });
});

describe("regression JSONL", () => {
  it("parses the text back into turns (HelpSteer2 multi-turn prompts included) and keeps -100 as missing", async () => {
    const text =
      "<extra_id_0>System\nS\n<extra_id_1>User\nq1\n<extra_id_1>Assistant\na1\n<extra_id_1>User\nq2\n<extra_id_1>Assistant\na2\n<extra_id_2>";
    const path = file(
      "rm.jsonl",
      `${JSON.stringify({ text, label: [-100, -100, -100, -100, 1, 2, 3, 4, -100] })}\n`,
    );
    const [r] = await collect(path, { format: "regression" });
    expect(r.turns.map((t) => [t.role, t.text])).toEqual([
      ["user", "q1"],
      ["assistant", "a1"],
      ["user", "q2"],
      ["assistant", "a2"],
    ]);
    expect(r.turns[3].labels).toEqual({ helpfulness: 1, correctness: 2, coherence: 3, complexity: 4 });
    expect(renderConversation(toConversation(r), "regression").text).toBe(text);
    // Written by a new exporter call, labels are Python floats as NeMo writes them.
    const out = join(tmp.path, "rm-out.jsonl");
    await writeRecords(out, [{ ...r, layout: undefined }], "regression");
    expect(readFileSync(out, "utf8")).toContain(
      '"label": [-100.0, -100.0, -100.0, -100.0, 1.0, 2.0, 3.0, 4.0, -100.0]',
    );
  });

  it.each([
    [
      '{"text": "x", "label": [0,0,0,0,0,0,0,0,0]}',
      'text: expected the text to start with "<extra_id_0>System\\n"',
    ],
    [
      '{"text": "<extra_id_0>System\\nS\\n<extra_id_1>User\\nq\\n<extra_id_2>", "label": [0,0,0,0,0,0,0,0,0]}',
      "text: the text must end with the Assistant response",
    ],
    [
      '{"text": "<extra_id_0>System\\nS\\n<extra_id_1>User\\nq\\n<extra_id_1>Assistant\\na\\n<extra_id_2>", "label": [0,0,0]}',
      "label: expected 9 numbers, got 3",
    ],
    [
      '{"text": "<extra_id_0>System\\nS\\n<extra_id_1>User\\nq\\n<extra_id_1>Assistant\\na\\n<extra_id_2>", "label": [0,0,0,0,2.5,0,0,0,0]}',
      "label[4] (helpfulness): expected an integer value or -100, got 2.5",
    ],
    [
      '{"text": "<extra_id_0>System\\nS\\n<extra_id_1>User\\nq\\n<extra_id_1>Assistant\\na\\n<extra_id_2>", "label": [0,0,0,0,5,0,0,0,0]}',
      "label[4] (helpfulness): 5 is out of range 0..4",
    ],
  ])("rejects %s", async (line, message) => {
    const path = file("bad-rm.jsonl", `${line}\n`);
    await expect(collect(path, { format: "regression" })).rejects.toThrow(`${path}:1: ${message}`);
  });
});

describe("HelpSteer rows", () => {
  it("reads JSONL, gzip (by magic bytes, whatever the name) and Parquet alike", async () => {
    const plain = await collect(file("hs.jsonl", jsonl(helpsteerRows)), { format: "helpsteer" });
    const gz = await collect(file("hs-really-gzip.jsonl", gzipSync(jsonl(helpsteerRows))), {
      format: "helpsteer",
    });
    const gz2 = await collect(file("hs.jsonl.gz", gzipSync(jsonl(helpsteerRows))));
    const cols = [
      "prompt",
      "response",
      "helpfulness",
      "correctness",
      "coherence",
      "complexity",
      "verbosity",
    ] as const;
    const parquet = parquetWriteBuffer({
      columnData: cols.map((name) =>
        name === "prompt" || name === "response"
          ? { name, data: helpsteerRows.map((r) => r[name]), type: "STRING" as const }
          : // Hugging Face writes these as int64, which arrive as BigInt.
            { name, data: helpsteerRows.map((r) => BigInt(r[name])), type: "INT64" as const },
      ),
      rowGroupSize: 1,
    });
    const pq = await collect(file("hs.parquet", Buffer.from(parquet)));
    expect(plain).toHaveLength(2);
    expect(plain[1].turns[0].text).toBe(helpsteerRows[1].prompt);
    expect(plain[1].turns[1].labels).toEqual({
      helpfulness: 2,
      correctness: 3,
      coherence: 4,
      complexity: 1,
      verbosity: 2,
    });
    for (const other of [gz, gz2, pq]) expect(other.map(meaning)).toEqual(plain.map(meaning));
    expect(pq.map((r) => r.origin?.line)).toEqual([1, 2]);
  });

  it("refuses a label column spelt like an attribute (its label would be lost), keeps other columns", async () => {
    const { helpfulness, ...rest } = helpsteerRows[0] as Record<string, unknown>;
    const typo = file("hs-typo.jsonl", jsonl([{ ...rest, helpfullness: helpfulness }]));
    await expect(collect(typo, { format: "helpsteer" })).rejects.toThrow(
      `${typo}:1: helpfullness: not an attribute of schema helpsteer: did you mean helpfulness?`,
    );
    const extra = file("hs-extra.jsonl", jsonl([{ ...helpsteerRows[0], split: "train", rater: 7 }]));
    const [r] = await collect(extra, { format: "helpsteer" });
    expect([...(r?.extra.keys() ?? [])]).toEqual(["split", "rater"]);
  });

  it("names the row and column of a bad label, in Parquet too", async () => {
    const row = { ...helpsteerRows[0], helpfulness: 7 };
    const path = file("hs-bad.jsonl", jsonl([helpsteerRows[0], row]));
    await expect(collect(path)).rejects.toThrow(`${path}:2: helpfulness: 7 is out of range 0..4`);
    const pq = file(
      "hs-bad.parquet",
      Buffer.from(
        parquetWriteBuffer({
          columnData: [
            { name: "prompt", data: ["p"], type: "STRING" },
            { name: "response", data: ["r"], type: "STRING" },
            { name: "helpfulness", data: [2.5], type: "DOUBLE" },
          ],
        }),
      ),
    );
    await expect(collect(pq, { format: "helpsteer" })).rejects.toThrow(
      `${pq}:1: helpfulness: expected an integer, got 2.5`,
    );
  });
});

describe("HelpSteer2 preference rows", () => {
  it("gives two unlabelled records per row sharing a pair id, with the preference and the other columns", async () => {
    const path = file(
      "pref2.jsonl",
      jsonl([{ split: "val", prompt: "p", response_1: "r1", response_2: "r2", preference_strength: 3 }]),
    );
    const [a, b] = await collect(path);
    expect(a.preference).toEqual({ pairId: `${path}:1`, response: 1, strength: 3 });
    expect(b.preference).toEqual({ pairId: `${path}:1`, response: 2, strength: 3 });
    expect([a.turns[1].text, b.turns[1].text]).toEqual(["r1", "r2"]);
    expect(a.extra.get("split")).toBe("val");
    const bad = file(
      "pref-bad.jsonl",
      jsonl([{ prompt: "p", response_1: "a", response_2: "b", preference_strength: 4 }]),
    );
    await expect(collect(bad)).rejects.toThrow(`${bad}:1: preference_strength: expected an integer in -3..3`);
  });
});

describe("OpenAssistant trees", () => {
  it("gives every root-to-leaf thread of 2+ turns, labels round(v*4) half to even, missing omitted", async () => {
    const path = file("oa.jsonl", jsonl([oasstTree]));
    const records = await collect(path);
    expect(records.map((r) => r.turns.map((t) => t.text))).toEqual([
      ["Q?", "A1", "Q2", "A3"],
      ["Q?", "A2"],
    ]);
    expect(records[0].turns[1].labels).toEqual({ quality: 2, humor: 4 });
    expect(records[0].turns[3].labels).toEqual({ toxicity: 0 });
    expect(records[1].turns[1].labels).toEqual({ creativity: 4 });
    // The paper's 0..9 scale.
    const paper = await collect(path, { schema: loadSchema("oasst-paper") });
    expect(paper[0].turns[1].labels).toEqual({ quality: 6, humor: 8, helpfulness: 2 });
    // SteerLM's nine: OASST's helpfulness vote is not HelpSteer's helpfulness (NeMo takes the four)
    const steerlm = await collect(path, { schema: loadSchema("steerlm") });
    expect(steerlm[0].turns[1].labels).toEqual({ quality: 2, humor: 4 });
  });

  it("filters by language and counts what it filtered", async () => {
    const de = { ...oasstTree, prompt: { ...oasstTree.prompt, lang: "de" } };
    const lonely = {
      message_tree_id: "t3",
      prompt: { role: "prompter", text: "alone", lang: "en", replies: [] },
    };
    const reader = readRecords(file("oa-lang.jsonl", jsonl([oasstTree, de, lonely])), { lang: "en" });
    const records: DataRecord[] = [];
    for await (const r of reader) records.push(r);
    expect(records).toHaveLength(2);
    expect(reader.stats.filtered).toEqual({ "language is not en": 1, "no thread of two or more turns": 1 });
  });
});

describe("chat JSONL", () => {
  it("reads per-message attributes, refuses both forms on one message, and writes the top-level form back", async () => {
    const row = {
      messages: [
        { role: "user", content: "q1" },
        { role: "assistant", content: "a1", attributes: { humor: 1 } },
        { role: "user", content: "q2" },
        { role: "assistant", content: "a2", attributes: { humor: 4 } },
      ],
      id: 7,
    };
    const [r] = await collect(file("chat2.jsonl", jsonl([row])), { system: "SYS" });
    expect(r.system).toBe("SYS");
    expect(r.turns.map((t) => t.labels)).toEqual([null, { humor: 1 }, null, { humor: 4 }]);
    expect(r.extra.get("id")).toMatchObject({ text: "7" });
    const both = { ...row, attributes: { humor: 0 } };
    const bad = file("chat-bad.jsonl", jsonl([both]));
    await expect(collect(bad)).rejects.toThrow(`${bad}:1: attributes: both the top-level attributes`);
    const out = join(tmp.path, "chat-out.jsonl");
    await writeRecords(out, [{ ...r, turns: r.turns.slice(0, 2) }], "chat");
    expect(readFileSync(out, "utf8")).toBe(
      '{"messages":[{"role":"system","content":"SYS"},{"role":"user","content":"q1"},{"role":"assistant","content":"a1"}],"attributes":{"humor":1},"id":7}\n',
    );
  });
});
