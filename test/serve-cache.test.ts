import { join } from "node:path";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SteerableModel } from "../src/inference/index.js";
import { CachedSequence } from "../src/inference/prompt-cache.js";
import { getLlamaRuntime } from "../src/runtime/llama.js";
import { writeRandomLlama } from "../src/serve/bench-model.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { Rng } from "../src/util/rng.js";
import { haveSharedData, tempDir } from "./helpers.js";
import { TINY_RANDOM, writeSteerModel } from "./serve-fixture.js";

/**
 * Prompt caching (src/inference/prompt-cache.ts): a request reuses the keys and values a context sequence
 * holds for the prompt's common prefix, and its outputs are the same bytes as without the cache.
 */
const dir = tempDir("steerlm-cache-");

describe.skipIf(!haveSharedData)(
  "a cached prefix gives the logits of a fresh evaluation, bit for bit",
  () => {
    // Width 256: the tiny model's 16 dimensions are too few for llama.cpp's batch kernels to differ at all.
    let raw: LlamaModel;
    let context: LlamaContext;
    let fresh: LlamaContextSequence;
    let cached: CachedSequence;
    const batchSize = 64;

    beforeAll(async () => {
      const path = join(dir.path, "wide.gguf");
      await writeRandomLlama(path, TINY_RANDOM, { hiddenSize: 256, numLayers: 2, contextLength: 1024 });
      raw = await (await getLlamaRuntime()).loadModel({ modelPath: path, gpuLayers: 0 });
      // The settings SteerableModel uses (no flash attention), with small batches to reach their edges.
      context = await raw.createContext({
        sequences: 2,
        contextSize: 1024,
        batchSize,
        threads: 1,
        flashAttention: false,
      });
      fresh = context.getSequence();
      cached = new CachedSequence(context.getSequence(), true);
    }, 60_000);

    afterAll(async () => {
      await context?.dispose();
      await raw?.dispose();
    });

    /** Next-token probabilities after `tokens`, appended to what the sequence holds. */
    async function next(
      sequence: LlamaContextSequence,
      tokens: readonly number[],
    ): Promise<Map<number, number>> {
      const last = tokens.length - 1;
      const items = tokens.map((t, j) =>
        j === last ? ([t as Token, { generateNext: { probabilities: true } }] as const) : (t as Token),
      );
      const out = await sequence.controlledEvaluate(
        items as Parameters<typeof sequence.controlledEvaluate>[0],
      );
      return out[last]?.next.probabilities as Map<number, number>;
    }

    it("after generated tokens, an identical prompt, a last batch of one token, an unrelated prompt", async () => {
      const rng = new Rng(5);
      const random = (n: number) => Array.from({ length: n }, () => rng.int(100, 30000));
      const p1 = random(100);
      const generated = random(10);
      const p2 = [...p1, ...generated, ...random(30)]; // the conversation, extended by a turn
      const p4 = [...p2.slice(0, 70), ...random(59)]; // 129 tokens: fresh, its last batch is one token
      const steps: Array<{ prompt: number[]; reused: number; decode?: number[] }> = [
        { prompt: p1, reused: 0, decode: generated },
        // Generated tokens were evaluated one at a time: never reused, evaluated again in a batch.
        { prompt: p2, reused: 100 },
        // The last token is evaluated, in a batch of two as it is fresh, not alone.
        { prompt: p2, reused: 138 },
        // A single last batch, as fresh: from a batch boundary.
        { prompt: p4, reused: 64 },
        // p4's last token was computed alone: not reused for a longer prompt.
        { prompt: [...p4, ...random(1)], reused: 128 },
        { prompt: random(40), reused: 0 },
        { prompt: p1, reused: 0 },
      ];
      for (const [i, step] of steps.entries()) {
        const { reused, rest } = await cached.prepare(step.prompt);
        expect({ step: i, reused }).toEqual({ step: i, reused: step.reused });
        const got = await next(cached.sequence, rest);
        cached.evaluated(step.prompt.length, reused);
        await fresh.clearHistory();
        const want = await next(fresh, step.prompt);
        const differing = [...want].filter(([id, p]) => got.get(id) !== p).length;
        expect({ step: i, differing }).toEqual({ step: i, differing: 0 });
        // Decoding: one token per batch.
        for (const t of step.decode ?? [])
          await cached.sequence.evaluateWithoutGeneratingNewTokens([t as Token]);
      }
    });
  },
);

describe.skipIf(!haveSharedData)("steerlm serve with and without the prompt cache", () => {
  let cachedModel: SteerableModel;
  let plainModel: SteerableModel;
  let cachedServer: SteerServer;
  let plainServer: SteerServer;

  beforeAll(async () => {
    const modelPath = await writeSteerModel(dir.path, "steer.gguf");
    cachedModel = await SteerableModel.load({ modelPath, parallel: 2 });
    plainModel = await SteerableModel.load({ modelPath, promptCache: false });
    cachedServer = await startServer({ model: cachedModel, port: 0, maxTokensCap: 4096 });
    plainServer = await startServer({ model: plainModel, port: 0, maxTokensCap: 4096 });
  });

  afterAll(async () => {
    await cachedServer?.close();
    await plainServer?.close();
    await cachedModel?.dispose();
    await plainModel?.dispose();
    dir.cleanup();
  });

  const chat = async (server: SteerServer, body: object, signal?: AbortSignal) =>
    fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ temperature: 0, max_tokens: 24, ...body }),
      signal,
    });

  /** The reply and its usage from both servers; they must be the same. Returns the reply's text. */
  async function same(body: object): Promise<string> {
    const [a, b] = await Promise.all(
      [cachedServer, plainServer].map(async (s) => {
        const res = await chat(s, body);
        expect(res.status).toBe(200);
        const json = (await res.json()) as {
          choices: Array<{ message: { content: string }; finish_reason: string }>;
          usage: object;
        };
        return { choice: json.choices[0], usage: json.usage };
      }),
    );
    expect(a).toEqual(b);
    return a?.choice?.message.content ?? "";
  }

  const system = {
    role: "system",
    content: "You are a ship's cook who answers every question with a recipe. ".repeat(12),
  };
  const first = [system, { role: "user", content: "What should I cook tonight?" }];

  it("answers a conversation, its next turn, an unrelated prompt and the first again as without it", async () => {
    const reused = () => cachedModel.promptTokens.reused;
    const reply = await same({ messages: first, steerlm: { attributes: { humor: 3 } } });
    expect(reused()).toBe(0);
    const before = reused();
    const extended = [
      ...first,
      { role: "assistant", content: reply },
      { role: "user", content: "And for dessert?" },
    ];
    await same({ messages: extended, steerlm: { attributes: { humor: 3 } } });
    // The whole first prompt (the system prompt and the first turn) came from the cache.
    expect(reused() - before).toBeGreaterThan(100);
    await same({ messages: [{ role: "user", content: "Name three rivers." }] });
    const beforeFirst = reused();
    await same({ messages: first, steerlm: { attributes: { humor: 3 } } });
    // The unrelated prompt took the other sequence: the conversation was still cached.
    expect(reused() - beforeFirst).toBeGreaterThan(100);
    // Other attribute values: the prompt differs only after the conversation.
    await same({ messages: first, steerlm: { attributes: { humor: 0, verbosity: 7 } } });
    await same({ messages: extended, stream: false, max_tokens: 40 });
  });

  it("answers as without it after a stream the client aborted", async () => {
    const long = [system, { role: "user", content: "Tell me a very long story." }];
    const ctrl = new AbortController();
    const res = await chat(cachedServer, { messages: long, stream: true, max_tokens: 2000 }, ctrl.signal);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read(); // generation is running
    ctrl.abort();
    await expect(reader.read()).rejects.toThrow();
    while (cachedModel.load.active > 0) await new Promise((r) => setTimeout(r, 10));
    await same({ messages: long });
    await same({
      messages: [...long, { role: "assistant", content: "Once" }, { role: "user", content: "Go on." }],
    });
  });
});
