import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RemoteGenerator, SteerableModel } from "../src/inference/index.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { haveSharedData, type ServeProcess, startServe, tempDir } from "./helpers.js";
import {
  ask,
  injectionChecks,
  malformedRequestChecks,
  openAiClientChecks,
  type Target,
} from "./openai-checks.js";
import { writeSteerModel } from "./serve-fixture.js";

/**
 * `steerlm serve` in front of an engine (`--upstream`): a real `steerlm serve` process is the engine, and
 * the front end must pass the same openai-client checks as a server on a local model (test/serve.test.ts),
 * with replies equal to the local model's.
 */
const dir = tempDir("steerlm-serve-upstream-");
let modelPath: string;
let engine: ServeProcess;
let model: SteerableModel;
let remote: RemoteGenerator;
let server: SteerServer;
let client: OpenAI;

beforeAll(async () => {
  if (!haveSharedData) return;
  modelPath = await writeSteerModel(dir.path, "steer.gguf");
  engine = await startServe(["-m", modelPath, "--port", "0", "--parallel", "1", "--max-tokens-cap", "4096"]);
  model = await SteerableModel.load({ modelPath });
  remote = await RemoteGenerator.connect({ backend: engine.url, modelPath, concurrency: 2, maxQueue: 8 });
  server = await startServer({ model: remote, port: 0, maxTokensCap: 64, maxBodyBytes: 64 * 1024 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await remote?.dispose();
  await model?.dispose();
  await engine?.stop();
  dir.cleanup();
});

const target = (): Target => ({ server, client, model });

describe.skipIf(!haveSharedData)(
  "in front of an engine: the OpenAI-compatible API through the openai client",
  () => openAiClientChecks(target),
);

describe.skipIf(!haveSharedData)("in front of an engine: template injection", () => injectionChecks(target));

describe.skipIf(!haveSharedData)("in front of an engine: malformed requests", () =>
  malformedRequestChecks(target),
);

describe.skipIf(!haveSharedData)("in front of an engine: guidance and fractional values", () => {
  const post = async (steerlm: Record<string, unknown>) => {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: ask("hi"), max_tokens: 2, steerlm }),
    });
    return { status: res.status, body: (await res.json()) as { error?: Record<string, unknown> } };
  };

  it("refuses them with a 400 at their field (an engine samples from one conditioning)", async () => {
    const guided = await post({ guidance: 1 });
    expect(guided.status).toBe(400);
    expect(guided.body.error?.param).toBe("steerlm.guidance");
    expect(String(guided.body.error?.message)).toContain("remote engine");
    const mixed = await post({ attributes: { humor: 2.5 } });
    expect(mixed.status).toBe(400);
    expect(mixed.body.error?.param).toBe("steerlm.attributes");
    expect((await post({ attributes: { humor: 2 }, guidance: 0 })).status).toBe(200);
  });
});

describe.skipIf(!haveSharedData)("steerlm serve --upstream (the real CLI)", () => {
  it("reports the engine in /health and replies as the model does; 503 and 502 while the engine is down", async () => {
    const own = await startServe(["-m", modelPath, "--port", "0", "--parallel", "1"]);
    const front = await startServe([
      "-m",
      modelPath,
      "--upstream",
      own.url,
      "--port",
      "0",
      "--upstream-retries",
      "0",
    ]);
    try {
      const health = await fetch(`${front.url}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({
        status: "ok",
        model: "steer",
        parallel: 4,
        upstream: { url: own.url, status: "ok", model: "steer" },
      });
      const viaFront = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const r = await viaFront.chat.completions.create({
        model: "steer",
        messages: ask("Tell me a joke"),
        max_tokens: 12,
        temperature: 0,
      });
      const lib = await model.generate({ messages: ask("Tell me a joke"), maxTokens: 12 });
      expect(r.choices[0].message.content).toBe(lib.text);
      expect(r.usage?.completion_tokens).toBe(lib.usage.completionTokens);

      await own.stop("SIGKILL");
      const down = await fetch(`${front.url}/health`);
      expect(down.status).toBe(503);
      expect(await down.json()).toMatchObject({
        status: "unavailable",
        upstream: { url: own.url, status: "unavailable", message: "cannot reach the engine (ECONNREFUSED)" },
      });
      const failed = await viaFront.chat.completions
        .create({ model: "steer", messages: ask("hi"), max_tokens: 2 })
        .catch((e: unknown) => e);
      expect(failed).toMatchObject({ status: 502, code: "upstream_error", type: "server_error" });
      // streamed too: the SSE response opens only once the engine answers, so the client sees the 502
      // (and retries) rather than a 200 with an error event inside
      const streamed = await viaFront.chat.completions
        .create({ model: "steer", messages: ask("hi"), max_tokens: 2, stream: true })
        .catch((e: unknown) => e);
      expect(streamed).toMatchObject({ status: 502, code: "upstream_error" });
    } finally {
      await front.stop();
      await own.stop();
    }
  }, 60_000);
});
