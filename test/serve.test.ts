import { spawn } from "node:child_process";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SteerableModel, type SteerResult } from "../src/inference/index.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { haveSharedData, repoRoot, tempDir } from "./helpers.js";
import {
  ask,
  injectionChecks,
  malformedRequestChecks,
  openAiClientChecks,
  type Target,
} from "./openai-checks.js";
import { writeSteerModel } from "./serve-fixture.js";

/** Test servers on ephemeral ports, driven by the official openai client and by raw fetch. */

const dir = tempDir();
let modelPath: string;
let model: SteerableModel;
let server: SteerServer;
let client: OpenAI;

beforeAll(async () => {
  if (!haveSharedData) return;
  modelPath = await writeSteerModel(dir.path, "steer.gguf");
  model = await SteerableModel.load({ modelPath, parallel: 2, maxQueue: 8 });
  server = await startServer({ model, port: 0, maxTokensCap: 64, maxBodyBytes: 64 * 1024 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});

afterAll(async () => {
  await server?.close();
  await model?.dispose();
  dir.cleanup();
});

const target = (): Target => ({ server, client, model });

describe.skipIf(!haveSharedData)("OpenAI-compatible API through the official openai client", () =>
  openAiClientChecks(target),
);

describe.skipIf(!haveSharedData)("template injection through the API", () => injectionChecks(target));

describe.skipIf(!haveSharedData)("malformed requests", () => malformedRequestChecks(target));

describe.skipIf(!haveSharedData)("API key", () => {
  let keyed: SteerServer;
  beforeAll(async () => {
    keyed = await startServer({ model, port: 0, apiKey: "s3cret" });
  });
  afterAll(() => keyed.close());

  it("is required on every /v1 route, not on /health or the page", async () => {
    for (const [method, path] of [
      ["GET", "/v1/models"],
      ["GET", "/v1/steerlm/schema"],
      ["POST", "/v1/chat/completions"],
      ["POST", "/v1/completions"],
    ]) {
      for (const auth of [undefined, "Bearer wrong", "Bearer s3cre", "s3cret"]) {
        const res = await fetch(`${keyed.url}${path}`, {
          method,
          headers: auth ? { authorization: auth } : {},
        });
        expect(res.status, `${method} ${path} ${auth}`).toBe(401);
        expect(res.headers.get("www-authenticate")).toBe("Bearer");
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_api_key");
      }
    }
    expect((await fetch(`${keyed.url}/health`)).status).toBe(200);
    expect((await fetch(`${keyed.url}/`)).status).toBe(200);
  });

  it("lets the openai client in with the right key and rejects it with a wrong one", async () => {
    const ok = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: "s3cret", maxRetries: 0 });
    expect((await ok.models.list()).data[0].id).toBe("steer");
    const wrong = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: "nope", maxRetries: 0 });
    await expect(wrong.models.list()).rejects.toMatchObject({ status: 401 });
  });
});

describe.skipIf(!haveSharedData)("capacity: one slot, a queue of one", () => {
  let small: SteerableModel;
  let busy: SteerServer;
  const results: SteerResult[] = [];
  beforeAll(async () => {
    small = await SteerableModel.load({ modelPath, parallel: 1, maxQueue: 1 });
    // Record every finished generation, to see how an aborted one ended.
    const generate = small.generate.bind(small);
    small.generate = async (opts) => {
      const r = await generate(opts);
      results.push(r);
      return r;
    };
    busy = await startServer({ model: small, port: 0, maxTokensCap: 1800 });
  });
  afterAll(async () => {
    await busy.close();
    await small.dispose();
  });

  const post = (body: object, signal?: AbortSignal) =>
    fetch(`${busy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });

  it("answers 429 with Retry-After over capacity, and serves the rest", async () => {
    const long = { messages: ask("long story"), max_tokens: 600, temperature: 0 };
    // Streaming and plain requests alike: a stream that cannot get a slot is refused before any byte of SSE.
    const responses = await Promise.all(
      Array.from({ length: 5 }, (_, i) => post({ ...long, stream: i % 2 === 1 })),
    );
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 429, 429, 429]);
    for (const r of responses.filter((x) => x.status === 429)) {
      expect(r.headers.get("retry-after")).toBe("1");
      expect(((await r.json()) as { error: { type: string } }).error.type).toBe("rate_limit_error");
    }
    for (const r of responses.filter((x) => x.status === 200))
      expect((await r.text()).length).toBeGreaterThan(0);
    expect((await post({ messages: ask("after"), max_tokens: 2 })).status).toBe(200);
  });

  it("frees the slot when a streaming client disconnects mid-stream", async () => {
    results.length = 0;
    const ctrl = new AbortController();
    const res = await post({ messages: ask("long"), max_tokens: 1800, stream: true }, ctrl.signal);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read(); // the first chunk: generation is running
    ctrl.abort();
    await expect(reader.read()).rejects.toThrow();
    for (let i = 0; i < 100 && results.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(results[0].finishReason).toBe("abort");
    expect(results[0].usage.completionTokens).toBeLessThan(1800);
    expect(small.load).toEqual({ active: 0, queued: 0 });
    // The single slot is free again: a new request gets it at once.
    const next = await post({ messages: ask("next"), max_tokens: 2 });
    expect(next.status).toBe(200);
  });

  it("frees the slot when a non-streaming client gives up", async () => {
    results.length = 0;
    const ctrl = new AbortController();
    const pending = post({ messages: ask("long"), max_tokens: 1800 }, ctrl.signal).catch((e: Error) => e);
    while (small.load.active === 0) await new Promise((r) => setTimeout(r, 5));
    ctrl.abort();
    expect(await pending).toBeInstanceOf(Error);
    for (let i = 0; i < 100 && results.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(results[0].finishReason).toBe("abort");
    expect(small.load.active).toBe(0);
  });
});

describe.skipIf(!haveSharedData)("steerlm serve (the real CLI)", () => {
  it("binds 127.0.0.1, takes the API key from the environment, serves the page and the API from dist/, exits cleanly on SIGTERM", async () => {
    const child = spawn(
      process.execPath,
      [join(repoRoot, "bin", "steerlm.js"), "serve", "-m", modelPath, "--port", "0"],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, STEERLM_API_KEY: "from-env" } },
    );
    let stderr = "";
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
        const m = /at (http:\/\/\S+)/.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.on("exit", () => reject(new Error(`serve exited early: ${stderr}`)));
    });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const page = await fetch(`${url}/`);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await page.text()).toContain('<script src="/app.js"');
    expect((await fetch(`${url}/app.js`)).status).toBe(200);
    expect((await fetch(`${url}/style.css`)).status).toBe(200);
    // The key comes from STEERLM_API_KEY when --api-key is not given.
    expect((await fetch(`${url}/v1/steerlm/schema`)).status).toBe(401);
    const auth = { headers: { authorization: "Bearer from-env" } };
    const schema = (await (await fetch(`${url}/v1/steerlm/schema`, auth)).json()) as { name: string };
    expect(schema.name).toBe("tiny-test");
    const code = await new Promise<number | null>((resolve) => {
      child.on("exit", (c) => resolve(c));
      child.kill("SIGTERM");
    });
    expect(code).toBe(0);
  });

  it("reports a bad port or model as a user error", async () => {
    const { runCli } = await import("./helpers.js");
    const bad = await runCli(["serve", "-m", modelPath, "--port", "http"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--port: expected an integer/);
    const missing = await runCli(["serve", "-m", join(dir.path, "missing.gguf")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/missing\.gguf: model: no such file/);
    const lora = await runCli(["serve", "-m", modelPath, "--lora", join(dir.path, "adapter.gguf")]);
    expect(lora.code).toBe(1);
    expect(lora.stderr).toMatch(/adapter\.gguf: lora: no such file/);
  });
});
