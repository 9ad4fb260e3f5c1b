import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { annotateFile } from "../src/apm/annotate.js";
import { apmTokens } from "../src/apm/data.js";
import { ApmPredictor, loadApm } from "../src/apm/model.js";
import { readRecords } from "../src/data/read.js";
import { haveSharedData, sharedData, tempDir } from "./helpers.js";

// Annotation batches turns by length (ApmPredictor). The output must stay what the fixed [B, seqLen]
// batches of main@aae5827 wrote for the same input, whatever the input's order: test/fixtures/apm/README.md.
const fixture = (name: string) => fileURLToPath(new URL(`fixtures/apm/${name}`, import.meta.url));
const apm = fixture("tiny-apm.ckpt");
const golden = JSON.parse(readFileSync(fixture("tiny-apm-annotate.json"), "utf8")) as {
  sha256: { first96: string; rotated: string };
  labels: string[];
};
const dir = tempDir("steerlm-apm-batching-");
afterAll(() => dir.cleanup());

const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
const assistantLabels = (file: string) =>
  readFileSync(file, "utf8")
    .trimEnd()
    .split("\n")
    .map((line) => {
      const turns = (JSON.parse(line) as { conversations: Array<{ from: string; label: string }> })
        .conversations;
      return turns.filter((t) => t.from === "Assistant").map((t) => t.label);
    });

describe.skipIf(!haveSharedData)("annotate batched by length (../shared/data/nemo-aligner)", () => {
  const lines = readFileSync(sharedData("nemo-aligner", "sft_512_sample_extra_id_format.jsonl"), "utf8")
    .split("\n")
    .slice(0, 96);
  const input = join(dir.path, "first96.jsonl");
  writeFileSync(input, `${lines.join("\n")}\n`);

  it("writes the bytes the fixed-shape batches wrote, for the input and for it reordered", async () => {
    const out = join(dir.path, "first96.out.jsonl");
    const r = await annotateFile({ apm, input, output: out, threads: 1 });
    expect(r.turns).toBe(96);
    // the labels first: a difference shows which line
    expect(assistantLabels(out).map((l) => l.join(" "))).toEqual(golden.labels);
    expect(sha256(out)).toBe(golden.sha256.first96);

    // rotated by three: every batch of 8 gets other neighbours and other positions
    const rotated = join(dir.path, "rotated.jsonl");
    writeFileSync(rotated, `${[...lines.slice(3), ...lines.slice(0, 3)].join("\n")}\n`);
    const rout = join(dir.path, "rotated.out.jsonl");
    await annotateFile({ apm, input: rotated, output: rout, threads: 2, batchSize: 5 });
    expect(sha256(rout)).toBe(golden.sha256.rotated);
  });

  it("predicts each turn the same bits alone or batched, whatever its padding and neighbours", async () => {
    const loaded = await loadApm(apm, 1);
    const T = loaded.info.seqLen;
    const K = loaded.info.schema.attributes.length;
    const seqs: Int32Array[] = [];
    for await (const r of readRecords(input, { schema: loaded.info.schema, allowUnlabeled: true }))
      r.turns.forEach((t, i) => {
        if (t.role === "assistant") seqs.push(apmTokens(r, i, loaded.tokenizer, loaded.info.bos, T).ids);
      });
    // the 11 shorter than T (94..731 tokens: most turns of this file are cut to T) and one cut one
    const some = [...seqs].sort((a, b) => a.length - b.length).slice(0, 12);
    const lengths = some.map((s) => s.length);
    expect(Math.min(...lengths)).toBeLessThan(T / 4);
    expect(Math.max(...lengths)).toBe(T);
    const batched = new ApmPredictor(loaded.backend, loaded.model, 4, T, 0);
    const alone = new ApmPredictor(loaded.backend, loaded.model, 1, T, 3);
    try {
      const all = batched.predict(some);
      // short, long (the allocator's buffer grows), short again: no graph may keep the freed buffer
      const short = alone.predict([some[0]!]);
      alone.predict([some[11]!]);
      expect(alone.predict([some[0]!])).toEqual(short);
      some.forEach((s, i) => {
        expect(alone.predict([s])).toEqual(all.subarray(i * K, (i + 1) * K));
      });
    } finally {
      batched.free();
      alone.free();
      await loaded.free();
    }
  });
});
