import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SAMPLING_SETTINGS, SteerableModel } from "../src/inference/index.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { InputError } from "../src/util/errors.js";
import { haveSharedData, runCli } from "./helpers.js";
import { TINY_RANDOM } from "./serve-fixture.js";

/**
 * The sampling options have one table of ranges (SAMPLING_SETTINGS): the library, the server and the CLI
 * accept and refuse the same values, and `top_p: 0` means the same everywhere (only the most likely token:
 * greedy decoding, whatever the temperature).
 */

let model: SteerableModel;
let server: SteerServer;
const messages = [{ role: "user" as const, content: "Tell me a story" }];

beforeAll(async () => {
  if (!haveSharedData) return;
  model = await SteerableModel.load({ modelPath: TINY_RANDOM });
  server = await startServer({ model, port: 0 });
});

afterAll(async () => {
  await server?.close();
  await model?.dispose();
});

const chat = async (body: object) => {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages, ...body }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, never> };
};

describe.skipIf(!haveSharedData)("top_p 0", () => {
  it("is greedy decoding in the library, whatever the temperature and seed", async () => {
    const greedy = await model.generate({ messages, maxTokens: 12, temperature: 0 });
    for (const seed of [1, 2]) {
      const r = await model.generate({ messages, maxTokens: 12, temperature: 1.5, topP: 0, seed });
      expect(r.tokens).toEqual(greedy.tokens);
    }
    // Sampling proper does differ with the seed here, so the equality above is not an accident.
    const [a, b] = [1, 2].map((seed) => model.generate({ messages, maxTokens: 12, temperature: 1.5, seed }));
    expect((await a).tokens).not.toEqual((await b).tokens);
  });

  it("is accepted by the server and means the same there", async () => {
    const greedy = await model.generate({ messages, maxTokens: 12, temperature: 0 });
    for (const seed of [1, 2]) {
      const r = await chat({ max_tokens: 12, temperature: 1.5, top_p: 0, seed });
      expect(r.status).toBe(200);
      expect(r.body.choices[0].message.content).toBe(greedy.text);
    }
  });
});

// biome-ignore format: one bad value per line reads as a table
const BAD: Array<{ name: keyof typeof SAMPLING_SETTINGS; value: number; what: string }> = [
  { name: "topP", value: 1.5, what: "expected a number in 0..1, got number 1.5" },
  { name: "topP", value: -0.1, what: "expected a number in 0..1, got number -0.1" },
  { name: "temperature", value: 3, what: "expected a number in 0..2, got number 3" },
  { name: "topK", value: 2.5, what: "expected an integer in 0..1000000, got number 2.5" },
  { name: "seed", value: -1, what: "expected an integer in 0..4294967295, got number -1" },
  { name: "maxTokens", value: 0, what: "expected a positive integer, got number 0" },
];

describe.skipIf(!haveSharedData)("out-of-range sampling values", () => {
  for (const b of BAD) {
    const api = SAMPLING_SETTINGS[b.name].api;
    it(`${b.name} ${b.value}: refused in the same words by the library (${b.name}) and the server (${api})`, async () => {
      const err = await model.generate({ messages, [b.name]: b.value }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).message).toBe(`${b.name}: ${b.what}`);
      const r = await chat({ [api]: b.value });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ message: `${api}: ${b.what}`, param: api });
    });
  }

  it("the CLI refuses them at its flags with the same range", async () => {
    const r = await runCli(["generate", "-m", TINY_RANDOM, "--top-p", "1.5", "hi"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('steerlm: --top-p: expected a number in 0..1, got "1.5"\n');
    const t = await runCli(["generate", "-m", TINY_RANDOM, "-t", "hot", "hi"]);
    expect(t.stderr).toBe('steerlm: --temperature: expected a number in 0..2, got "hot"\n');
    const zero = await runCli([
      "--quiet",
      "generate",
      "-m",
      TINY_RANDOM,
      "--top-p",
      "0",
      "-t",
      "1",
      "--max-tokens",
      "3",
      "hi",
    ]);
    expect(zero.code).toBe(0);
  }, 60_000);
});
