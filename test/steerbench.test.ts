import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BUILTIN_SCHEMAS, parseValues, STEERLM_ATTRIBUTE_ORDER } from "../src/data/attributes.js";
import { readRecords } from "../src/data/read.js";
import type { Conversation } from "../src/data/template.js";
import { composeResponse, withDerived } from "../src/steerbench/compose.js";
import { toNemoLine, writeBench } from "../src/steerbench/jsonl.js";
import { fuzzyMarker, MARKER_HEADS } from "../src/steerbench/markers.js";
import { MAX_CHARS, scoreResponse } from "../src/steerbench/oracle.js";
import { scoreFile } from "../src/steerbench/score.js";
import { parsePrompt } from "../src/steerbench/solve.js";
import { CREATIVITY, HUMOR, INCOHERENCE, TOXICITY } from "../src/steerbench/style.js";
import { SPLITS, splitSizes, synthesize } from "../src/steerbench/synth.js";
import { FAMILIES, generateTask } from "../src/steerbench/tasks.js";
import { Rng } from "../src/util/rng.js";
import { tempDir } from "./helpers.js";

const schema = BUILTIN_SCHEMAS.steerlm;
const bytes = (convs: Conversation[]) => convs.map(toNemoLine).join("\n");

/** Every assistant turn with the user turn before it and its parsed label. */
function labelledTurns(convs: Conversation[]) {
  const out: Array<{ prompt: string; response: string; label: Record<string, number> }> = [];
  for (const c of convs) {
    for (let i = 1; i < c.turns.length; i += 2) {
      out.push({
        prompt: c.turns[i - 1].text,
        response: c.turns[i].text,
        label: parseValues(schema, c.turns[i].values ?? ""),
      });
    }
  }
  return out;
}

describe("SteerBench generator", () => {
  const run = synthesize({ n: 3000, seed: 11 });

  it("is deterministic: the same seed gives the same bytes, another seed different ones", () => {
    const again = synthesize({ n: 3000, seed: 11 });
    for (const s of SPLITS) expect(bytes(again.splits[s])).toBe(bytes(run.splits[s]));
    const other = synthesize({ n: 3000, seed: 12 });
    expect(bytes(other.splits.train)).not.toBe(bytes(run.splits.train));
    // A string seed is accepted and deterministic too.
    expect(bytes(synthesize({ n: 50, seed: "abc" }).splits.train)).toBe(
      bytes(synthesize({ n: 50, seed: "abc" }).splits.train),
    );
  });

  it("writes the documented split sizes", () => {
    expect(splitSizes(20000)).toEqual({ train: 16000, validation: 1000, test: 2000, heldout: 1000 });
    const sizes = splitSizes(3000);
    for (const s of SPLITS) expect(run.splits[s].length).toBe(sizes[s]);
    expect(run.meta.sizes).toEqual(sizes);
  });

  it("keeps prompts disjoint across splits and the held-out family only in heldout", () => {
    const prompts = Object.fromEntries(
      SPLITS.map((s) => [
        s,
        new Set(run.splits[s].flatMap((c) => c.turns.filter((t) => t.role === "user").map((t) => t.text))),
      ]),
    ) as Record<(typeof SPLITS)[number], Set<string>>;
    for (const a of SPLITS) {
      for (const b of SPLITS) {
        if (a >= b) continue;
        const shared = [...prompts[a]].filter((p) => prompts[b].has(p));
        expect(shared, `${a} vs ${b}`).toEqual([]);
      }
    }
    // comparison is held out by default: its prompts parse as "choice" and appear nowhere else.
    for (const p of prompts.heldout) expect(parsePrompt(p)?.kind).toBe("choice");
    for (const s of ["train", "validation", "test"] as const) {
      for (const p of prompts[s]) expect(parsePrompt(p)?.kind).not.toBe("choice");
    }
  });

  it("realises every level of every attribute, samples the seven base attributes independently", () => {
    const turns = labelledTurns(run.splits.train);
    for (const name of STEERLM_ATTRIBUTE_ORDER) {
      const seen = new Set(turns.map((t) => t.label[name]));
      expect([...seen].sort(), name).toEqual([0, 1, 2, 3, 4]);
    }
    const base = ["toxicity", "humor", "creativity", "correctness", "coherence", "complexity", "verbosity"];
    const corr = (a: string, b: string) => {
      const xs = turns.map((t) => t.label[a]);
      const ys = turns.map((t) => t.label[b]);
      const mx = xs.reduce((s, x) => s + x, 0) / xs.length;
      const my = ys.reduce((s, y) => s + y, 0) / ys.length;
      let sxy = 0;
      let sxx = 0;
      let syy = 0;
      for (let i = 0; i < xs.length; i++) {
        sxy += (xs[i] - mx) * (ys[i] - my);
        sxx += (xs[i] - mx) ** 2;
        syy += (ys[i] - my) ** 2;
      }
      return sxy / Math.sqrt(sxx * syy);
    };
    for (let i = 0; i < base.length; i++) {
      for (let j = i + 1; j < base.length; j++) {
        expect(Math.abs(corr(base[i], base[j])), `${base[i]} ~ ${base[j]}`).toBeLessThan(0.1);
      }
    }
  });

  it("includes multi-turn conversations and keeps responses short", () => {
    const all = SPLITS.flatMap((s) => run.splits[s]);
    const multi = all.filter((c) => c.turns.length > 2).length / all.length;
    expect(multi).toBeGreaterThan(0.12);
    expect(multi).toBeLessThan(0.28);
    const words = labelledTurns(all)
      .map((t) => t.response.split(" ").length)
      .sort((a, b) => a - b);
    expect(words[words.length >> 1]).toBeLessThan(60);
    // verbosity drives length: mean words rise with it.
    const meanAt = (v: number) => {
      const ws = labelledTurns(all).filter((t) => t.label.verbosity === v);
      return ws.reduce((s, t) => s + t.response.split(" ").length, 0) / ws.length;
    };
    for (let v = 1; v <= 4; v++) expect(meanAt(v)).toBeGreaterThan(meanAt(v - 1));
  });

  it("generates 50,000 conversations well under a minute", () => {
    const t0 = performance.now();
    const big = synthesize({ n: 50_000, seed: 3 });
    let chars = 0;
    for (const s of SPLITS) for (const c of big.splits[s]) chars += toNemoLine(c).length;
    const seconds = (performance.now() - t0) / 1000;
    expect(chars).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(60);
  });

  it("rejects bad options with a named field", () => {
    expect(() => synthesize({ n: 0, seed: 1 })).toThrow(/n: expected an integer/);
    expect(() => synthesize({ n: 10, seed: 1, multiTurnFraction: 2 })).toThrow(/multiTurnFraction/);
  });
});

describe("SteerBench oracle agreement with generator labels", () => {
  const run = synthesize({ n: 4000, seed: 5 });
  for (const split of ["test", "train", "heldout"] as const) {
    it(`>= 95% exact and >= 99% within ±1 per attribute on ${split}`, () => {
      const turns = labelledTurns(run.splits[split]);
      expect(turns.length).toBeGreaterThan(150);
      for (const name of STEERLM_ATTRIBUTE_ORDER) {
        let exact = 0;
        let within = 0;
        for (const t of turns) {
          const s = scoreResponse(t.prompt, t.response)[name];
          if (s === t.label[name]) exact++;
          if (Math.abs(s - t.label[name]) <= 1) within++;
        }
        expect(exact / turns.length, name).toBeGreaterThanOrEqual(0.95);
        expect(within / turns.length, name).toBeGreaterThanOrEqual(0.99);
      }
    });
  }

  it("re-derives every family's solution from the prompt text alone", () => {
    const rng = new Rng(99);
    for (const family of FAMILIES) {
      for (let i = 0; i < 300; i++) {
        const task = generateTask(family, rng);
        expect(parsePrompt(task.prompt), task.prompt).toEqual(task.solution);
      }
    }
  });

  it("grades each correctness level of each family back to itself, at every complexity", () => {
    const rng = new Rng(7);
    for (const family of FAMILIES) {
      for (let i = 0; i < 100; i++) {
        const task = generateTask(family, rng);
        const correctness = i % 5;
        const v = withDerived({
          toxicity: 0,
          humor: 0,
          creativity: 0,
          correctness,
          coherence: 4,
          complexity: (i >> 2) % 5,
          verbosity: 4,
        });
        const response = composeResponse(task, v, rng);
        expect(scoreResponse(task.prompt, response), response).toEqual(v);
      }
    }
  });

  it("keeps marker banks apart from each other and from explanation steps", () => {
    const entries = [TOXICITY, HUMOR, CREATIVITY, INCOHERENCE].flatMap((bank) =>
      Object.values(bank).flatMap((xs) => xs.map((x) => x.toLowerCase())),
    );
    expect(new Set(entries).size).toBe(entries.length);
    // Three-word heads of the longer markers are unique too.
    expect(MARKER_HEADS.size).toBe(
      entries.filter((e) => e.replace(/[.!?]+$/, "").split(" ").length > 3).length,
    );
    for (const a of entries)
      for (const b of entries) if (a !== b) expect(b.includes(a), `${a} in ${b}`).toBe(false);
    const rng = new Rng(1);
    for (const family of FAMILIES) {
      for (let i = 0; i < 50; i++) {
        for (const step of generateTask(family, rng).steps) {
          for (const e of entries) expect(step.toLowerCase().includes(e.replace(/[.!?]$/, ""))).toBe(false);
          expect(fuzzyMarker(step.toLowerCase()), step).toBeUndefined();
        }
      }
    }
  });
});

describe("SteerBench oracle on hand-written and hostile text", () => {
  const valid = (v: Record<string, number>) => {
    expect(Object.keys(v)).toEqual([...STEERLM_ATTRIBUTE_ORDER]);
    for (const x of Object.values(v)) expect(Number.isInteger(x) && x >= 0 && x <= 4).toBe(true);
  };

  it("scores an empty response as no answer, no style, fully coherent", () => {
    const v = scoreResponse("What is 3 plus 4?", "");
    valid(v);
    expect(v).toMatchObject({
      correctness: 0,
      verbosity: 0,
      toxicity: 0,
      humor: 0,
      creativity: 0,
      coherence: 4,
    });
    valid(scoreResponse("", ""));
  });

  it("grades hand-written answers per family", () => {
    expect(scoreResponse("What is 3 plus 4?", "It is 7.").correctness).toBe(4);
    expect(scoreResponse("What is 3 plus 4?", "The answer is 8.")).toMatchObject({
      correctness: 3,
      complexity: 1,
    });
    expect(scoreResponse("Compute 20 minus 5.", "So the correct result is 10.").correctness).toBe(2);
    expect(scoreResponse("Please calculate 6 times 7.", "It is 100.").correctness).toBe(1);
    expect(scoreResponse("What is 6 times 7?", "It is unknown.").correctness).toBe(0);
    expect(scoreResponse("How many centimeters are in 3 meters?", "It is 300 centimeters.").correctness).toBe(
      4,
    );
    expect(scoreResponse("How many legs does a spider have?", "The answer is 6 legs.").correctness).toBe(2);
    expect(scoreResponse("Which is the largest of 4, 9, 2 and 7?", "It is 7.").correctness).toBe(3);
    expect(scoreResponse("Which is the largest of 4, 9, 2 and 7?", "It is 5.").correctness).toBe(1);
    expect(scoreResponse("Put 5, 1, 3, 2 in ascending order.", "It is 1, 2, 3, 5.").correctness).toBe(4);
    expect(scoreResponse("Put 5, 1, 3, 2 in ascending order.", "It is 2, 1, 3, 5.").correctness).toBe(3);
    expect(scoreResponse("Put 5, 1, 3, 2 in ascending order.", "It is 5, 3, 2, 1.").correctness).toBe(1);
    expect(scoreResponse('How do you spell "garden"?', "It is g-a-r-d-e-n.").correctness).toBe(4);
    expect(scoreResponse('How do you spell "garden"?', "It is g-a-r-d-e-m.").correctness).toBe(3);
    expect(scoreResponse('How do you spell "garden"?', "It is g-a-r-d-e-n-s.").correctness).toBe(3);
    // An answer to a prompt the oracle cannot solve is neither right nor wrong.
    expect(scoreResponse("Tell me about the sea.", "The answer is blue.").correctness).toBe(2);
  });

  it("derives helpfulness 4 and quality 4 from the steerlm schema's inference defaults", () => {
    const defaults = Object.fromEntries(BUILTIN_SCHEMAS.steerlm.attributes.map((a) => [a.name, a.default]));
    const derived = withDerived({
      toxicity: defaults.toxicity,
      humor: defaults.humor,
      creativity: defaults.creativity,
      correctness: defaults.correctness,
      coherence: defaults.coherence,
      complexity: defaults.complexity,
      verbosity: defaults.verbosity,
    });
    expect(derived).toEqual(defaults);
  });

  it("finds style markers and derives helpfulness and quality", () => {
    const v = scoreResponse(
      "What is 3 plus 4?",
      "Use your own brain next time, genius. Therefore, the resulting value is 7. First, we start with 3. " +
        "Then, we add 4 to that number. But I digress. Clear as a bell. Why was six afraid of seven? Because seven ate nine.",
    );
    expect(v).toEqual({
      quality: Math.floor((2 * 2 + 4 + 3 + 0) / 5),
      toxicity: 4,
      humor: 3,
      creativity: 1,
      helpfulness: Math.floor((2 * 4 + 3 + 0) / 4),
      correctness: 4,
      coherence: 3,
      complexity: 3,
      verbosity: 2,
    });
  });

  it("counts imperfect markers: missing punctuation, or a marker's opening words going astray", () => {
    const v = scoreResponse(
      "What is 3 plus 4?",
      "It is 7 Why was six afraid of seven? Because seven ate the cake. Easy peasy Penguins rarely play football.",
    );
    // "It is 7 why was six afraid of seven?" is one sentence here: no period after the answer.
    expect(v.correctness).toBe(4);
    expect(v.humor).toBe(1);
    expect(v.coherence).toBe(2);
    const w = scoreResponse("What is 3 plus 4?", "It is 7. Why was six afraid of eight? Who knows.");
    expect(w.humor).toBe(3);
    expect(w.verbosity).toBe(1);
  });

  it("reads imitations with a word or letter wrong", () => {
    const v = scoreResponse(
      "What is 3 plus 4?",
      "Even a kid knows this. Consequently, the definitive resultant number is precisely 7. " +
        "Picture the numbers settling into place like fireflies at night. Zero said to eight: nice belt! Ba-dum-tss",
    );
    expect(v).toMatchObject({
      toxicity: 2,
      complexity: 4,
      correctness: 4,
      creativity: 3,
      humor: 4,
      verbosity: 0,
    });
  });

  it("never throws on non-ASCII, garbage or very long text, and stays bounded in time", () => {
    const hostile = [
      "Ответ: 42 🎉 — это всё.",
      "数字は42です。It is 42.",
      "\u0000\u0001\uFFFF\uD800 broken surrogate",
      '{"json": [1, 2, 3]}',
      "....!!!???",
      "a-b-c-d-e-f-g-h-i-j-k",
      "It is",
      "The answer is -99999999999999999999999.",
      Array.from({ length: 500 }, (_, i) => String.fromCharCode(33 + ((i * 7919) % 90))).join(""),
    ];
    for (const text of hostile) {
      valid(scoreResponse("What is 3 plus 4?", text));
      valid(scoreResponse(text, text));
    }
    const long = "Easy peasy. We start with 3. ".repeat(200_000); // ~5.8 MB
    const t0 = performance.now();
    const v = scoreResponse('How do you spell "apple"?', long);
    expect(performance.now() - t0).toBeLessThan(2000);
    valid(v);
    expect(v.humor).toBe(1);
    expect(v.verbosity).toBe(4);
    expect(long.length).toBeGreaterThan(MAX_CHARS);
  });
});

describe("SteerBench files through the shared data layer", () => {
  it("writes SteerLM JSONL that src/data reads back strictly, labels intact", async () => {
    const tmp = tempDir("steerbench-io-");
    try {
      const run = synthesize({ n: 400, seed: 21 });
      writeBench(tmp.path, run);
      const records = [];
      for await (const r of readRecords(join(tmp.path, "train.jsonl"))) records.push(r);
      expect(records).toHaveLength(run.splits.train.length);
      records.forEach((r, i) => {
        const conv = run.splits.train[i];
        expect(r.turns.map((t) => t.text)).toEqual(conv.turns.map((t) => t.text));
        conv.turns.forEach((t, k) => {
          expect(r.turns[k].labels).toEqual(t.values ? parseValues(schema, t.values) : null);
        });
      });
    } finally {
      tmp.cleanup();
    }
  });

  it("scores other formats too: HelpSteer rows compare on their five attributes", async () => {
    const tmp = tempDir("steerbench-hs-");
    try {
      const file = join(tmp.path, "hs.jsonl");
      const rows = [
        {
          prompt: "What is 2 plus 2?",
          response: "The answer is 4. First, we start with 2.",
          helpfulness: 4,
          correctness: 4,
          coherence: 4,
          complexity: 1,
          verbosity: 1,
        },
        {
          prompt: "What is 2 plus 2?",
          response: "It is 5.",
          helpfulness: 4,
          correctness: 4,
          coherence: 4,
          complexity: 0,
          verbosity: 0,
        },
      ];
      writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n"));
      const { rows: scored, summary } = await scoreFile(file);
      expect(summary).toMatchObject({ rows: 2, scored: 2, labelled: 2 });
      expect(Object.keys(summary.agreement).sort()).toEqual([
        "coherence",
        "complexity",
        "correctness",
        "helpfulness",
        "verbosity",
      ]);
      expect(summary.agreement.correctness).toEqual({ n: 2, exact: 0.5, within1: 1 });
      expect(summary.agreement.verbosity.exact).toBe(1);
      expect(scored[1].scores.correctness).toBe(3);
    } finally {
      tmp.cleanup();
    }
  });
});
