import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatValues, withDefaults } from "../src/data/attributes.js";
import { renderConversation } from "../src/data/template.js";
import { messagesToConversation, SteerableModel } from "../src/inference/index.js";
import { getLlamaRuntime } from "../src/runtime/llama.js";
import { startServer } from "../src/serve/index.js";
import { haveSharedData, tempDir } from "./helpers.js";
import { TEST_SCHEMA, writeSteerModel } from "./serve-fixture.js";

/**
 * Attribute guidance and fractional values (src/inference/mixture.ts, guided.ts) on the tiny steerable
 * model: the plain path stays today's token for token, and every token of a mixed generation is the
 * argmax of the weighted log-probabilities, re-derived here with each conditioning evaluated on its own
 * in a separate node-llama-cpp context (teacher forcing on the generated tokens).
 */
const messages = [{ role: "user" as const, content: "Tell me a story about a cat" }];
const dir = tempDir("steerlm-guidance-");
let path: string;
let model: SteerableModel;
let raw: LlamaModel;
let ref: LlamaContext;
let seq: LlamaContextSequence;

beforeAll(async () => {
  if (!haveSharedData) return;
  path = await writeSteerModel(dir.path, "steer.gguf");
  model = await SteerableModel.load({ modelPath: path });
  raw = await (await getLlamaRuntime()).loadModel({ modelPath: path, gpuLayers: 0 });
  // As SteerableModel creates its contexts: no flash attention.
  ref = await raw.createContext({
    sequences: 1,
    contextSize: model.contextSize,
    threads: 1,
    flashAttention: false,
  });
  seq = ref.getSequence();
});

afterAll(async () => {
  await ref?.dispose();
  await raw?.dispose();
  await model?.dispose();
  dir.cleanup();
});

/** Greedy tokens of today's decode loop, by hand: a clean sequence, `evaluate`, no guidance code at all. */
async function plainGreedy(tokens: readonly number[], n: number): Promise<number[]> {
  await seq.clearHistory();
  const out: number[] = [];
  for await (const t of seq.evaluate(tokens as Token[], { temperature: 0 })) {
    out.push(t);
    if (out.length === n) break;
  }
  return out;
}

/** log p(next | prompt + generated[0..i)) for each i, from one sequence evaluated alone. */
async function logProbsAlong(prompt: readonly number[], generated: readonly number[]) {
  await seq.clearHistory();
  const all = [...prompt, ...generated.slice(0, -1)];
  const items = all.map((t, j) =>
    j >= prompt.length - 1 ? ([t, { generateNext: { probabilities: true } }] as const) : t,
  );
  const out = await seq.controlledEvaluate(items as Parameters<typeof seq.controlledEvaluate>[0]);
  return generated.map((_, i) => out[prompt.length - 1 + i]?.next.probabilities as Map<number, number>);
}

/** Every generated token is the argmax of Σ weight·log p over the conditionings (and wins by a margin). */
async function expectCombinedArgmax(
  conditionings: ReadonlyArray<{ tokens: number[]; weight: number }>,
  generated: readonly number[],
) {
  const per: Array<Array<Map<number, number>>> = [];
  for (const c of conditionings) per.push(await logProbsAlong(c.tokens, generated));
  const logp = (p: Map<number, number> | undefined, t: number) =>
    Math.log(Math.max(p?.get(t) ?? 0, 1.401298464324817e-45));
  let checked = 0;
  for (const [i, token] of generated.entries()) {
    const vocab = per[0]?.[i]?.size ?? 0;
    let best = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    let second = Number.NEGATIVE_INFINITY;
    for (let t = 0; t < vocab; t++) {
      const score = conditionings.reduce((s, c, k) => s + c.weight * logp(per[k]?.[i], t), 0);
      if (score > bestScore) {
        second = bestScore;
        bestScore = score;
        best = t;
      } else if (score > second) second = score;
    }
    // Batched and single-sequence logits may differ in the last bits: only a clear winner is a check.
    if (bestScore - second > 1e-3) {
      expect({ step: i, token }).toEqual({ step: i, token: best });
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(generated.length / 2);
}

describe.skipIf(!haveSharedData)("attribute guidance and fractional values", () => {
  it("g = 0 and integer values are today's decode loop token for token, on today's prompt", async () => {
    for (const attributes of [{}, { humor: 3 }, { humor: 4, verbosity: 9 }, "quality=0,humor=2"]) {
      const today = withDefaults(TEST_SCHEMA, attributes);
      const values = formatValues(TEST_SCHEMA, today);
      const text = renderConversation(messagesToConversation(messages, values), "inference", { values }).text;
      const plain = await model.generate({ messages, attributes, maxTokens: 16, temperature: 0 });
      const g0 = await model.generate({ messages, attributes, guidance: 0, maxTokens: 16, temperature: 0 });
      expect(plain.prompt.text).toBe(text);
      expect(plain.conditionings).toBeUndefined();
      expect(g0.tokens).toEqual(plain.tokens);
      expect(g0.text).toBe(plain.text);
      expect(plain.tokens).toEqual(await plainGreedy(plain.prompt.tokens, plain.tokens.length));
    }
    // An integer given as 3.0 in JSON is the integer 3: the same plain generation.
    const three = await model.generate({ messages, attributes: { humor: 3.0 }, maxTokens: 16 });
    expect(three.text).toBe((await model.generate({ messages, attributes: "humor=3", maxTokens: 16 })).text);
  });

  it("guidance combines the request and the contrast at every step, in lockstep", async () => {
    // Random weights barely read the value string: a strong g is needed to move the argmax.
    const g = 5;
    const r = await model.generate({ messages, attributes: { humor: 4 }, guidance: g, maxTokens: 12 });
    expect(r.values).toBe("quality:4,humor:4,verbosity:3");
    expect(r.conditionings?.map((c) => [c.values, c.weight])).toEqual([
      ["quality:4,humor:4,verbosity:3", 1 + g],
      ["quality:4,humor:0,verbosity:3", -g],
    ]);
    expect(r.prompt.text).toContain("<extra_id_2>quality:4,humor:4,verbosity:3");
    expect(r.tokens.length).toBe(12);
    await expectCombinedArgmax(r.conditionings ?? [], r.tokens);
    const plain = await model.generate({ messages, attributes: { humor: 4 }, maxTokens: 12 });
    expect(r.tokens).not.toEqual(plain.tokens);

    // The default contrast: the steered attribute at its schema default; `opposite`: at the far end.
    const d = await model.generate({ messages, attributes: { verbosity: 7 }, guidance: 1, maxTokens: 4 });
    expect(d.conditionings?.map((c) => c.values)).toEqual([
      "quality:4,humor:0,verbosity:7",
      "quality:4,humor:0,verbosity:3",
    ]);
    const o = await model.generate({
      messages,
      attributes: { verbosity: 7 },
      guidance: 1,
      contrast: "opposite",
      maxTokens: 4,
    });
    expect(o.conditionings?.at(-1)?.values).toBe("quality:4,humor:0,verbosity:0");
    // Nothing steered: guidance has no direction, and the plain path runs.
    const none = await model.generate({ messages, guidance: 2, maxTokens: 8 });
    expect(none.conditionings).toBeUndefined();
    expect(none.tokens).toEqual((await model.generate({ messages, maxTokens: 8 })).tokens);
  });

  it("a fractional value mixes its two integer neighbours log-linearly", async () => {
    const r = await model.generate({ messages, attributes: "humor=2.25", maxTokens: 10 });
    expect(r.values).toBe("quality:4,humor:2.25,verbosity:3");
    expect(r.conditionings?.map((c) => [c.values, c.weight])).toEqual([
      ["quality:4,humor:2,verbosity:3", 0.75],
      ["quality:4,humor:3,verbosity:3", 0.25],
    ]);
    await expectCombinedArgmax(r.conditionings ?? [], r.tokens);

    // Two fractions and guidance: four corners with product weights, then the contrast.
    const both = await model.generate({
      messages,
      attributes: { humor: 1.5, verbosity: 6.5 },
      guidance: 1,
      contrast: "opposite",
      maxTokens: 4,
    });
    expect(both.conditionings?.map((c) => c.weight)).toEqual([0.5, 0.5, 0.5, 0.5, -1]);
    expect(both.conditionings?.at(-1)?.values).toBe("quality:4,humor:4,verbosity:0");
    await expectCombinedArgmax(both.conditionings ?? [], both.tokens);

    // Three fractions need 8 conditionings, more than a generation's 5 sequences.
    await expect(
      model.generate({ messages, attributes: { quality: 3.5, humor: 1.5, verbosity: 6.5 }, maxTokens: 2 }),
    ).rejects.toThrow(/attributes: these values need 8 conditionings at once, more than the 5 sequences/);
    await expect(model.generate({ messages, attributes: { humor: 4.5 }, maxTokens: 2 })).rejects.toThrow(
      "attributes.humor: 4.5 is out of range 0..4",
    );
  });

  it("samples from the combination reproducibly with a seed", async () => {
    const opts = { messages, attributes: { humor: 3.5 }, guidance: 1, maxTokens: 12, temperature: 1 };
    const [a, b, c] = await Promise.all([
      model.generate({ ...opts, seed: 7 }),
      model.generate({ ...opts, seed: 7 }),
      model.generate({ ...opts, seed: 8 }),
    ]);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
  });

  it("takes steerlm.guidance, steerlm.contrast and fractions in the API, refusing bad ones at their field", async () => {
    const server = await startServer({ model, port: 0 });
    try {
      const chat = async (steerlm: object) => {
        const res = await fetch(`${server.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ messages, max_tokens: 6, temperature: 0, steerlm }),
        });
        return { status: res.status, body: (await res.json()) as Record<string, never> };
      };
      const ok = await chat({ attributes: { humor: 1.5 }, guidance: 2 });
      expect(ok.status).toBe(200);
      const lib = await model.generate({ messages, attributes: { humor: 1.5 }, guidance: 2, maxTokens: 6 });
      expect(ok.body.choices[0].message.content).toBe(lib.text);
      expect(ok.body.steerlm).toMatchObject({
        values: "quality:4,humor:1.5,verbosity:3",
        conditionings: [
          { values: "quality:4,humor:1,verbosity:3", weight: 1.5 },
          { values: "quality:4,humor:2,verbosity:3", weight: 1.5 },
          { values: "quality:4,humor:0,verbosity:3", weight: -2 },
        ],
      });
      const bad = async (steerlm: object) => {
        const r = await chat(steerlm);
        expect(r.status).toBe(400);
        return (r.body as { error: { message: string; param: string } }).error;
      };
      expect(await bad({ guidance: 11 })).toMatchObject({
        param: "steerlm.guidance",
        message: "steerlm.guidance: expected a number in 0..10, got number 11",
      });
      expect((await bad({ contrast: "other" })).param).toBe("steerlm.contrast");
      expect((await bad({ attributes: { humor: 5.5 } })).param).toBe("steerlm.attributes.humor");
      expect(await bad({ attributes: { quality: 3.5, humor: 1.5, verbosity: 6.5 } })).toMatchObject({
        param: "steerlm.attributes",
        message: expect.stringMatching(/need 8 conditionings at once/),
      });
    } finally {
      await server.close();
    }
  });
});
