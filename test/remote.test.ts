import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ContextLengthError,
  type GenerateOptions,
  type Generator,
  RemoteGenerator,
  SteerableModel,
  UpstreamError,
} from "../src/inference/index.js";
import { startServer } from "../src/serve/index.js";
import { haveSharedData, runCli, type ServeProcess, startServe, tempDir } from "./helpers.js";
import { CONTROL_IDS, writeSteerModel } from "./serve-fixture.js";

/**
 * The remote generator against a real `steerlm serve` process (loopback only): the same calls give the
 * same results as the model loaded here, token for token; failures of the engine are retried as far as
 * a retry can fix them. Flaky engines are a tiny HTTP server in front of the real one.
 */
const dir = tempDir("steerlm-remote-");
let modelPath: string;
let upstream: ServeProcess;
let local: SteerableModel;
let remote: RemoteGenerator;

beforeAll(async () => {
  if (!haveSharedData) return;
  modelPath = await writeSteerModel(dir.path, "steer.gguf");
  // One sequence: greedy and seeded replies do not depend on which requests share a batch.
  upstream = await startServe([
    "-m",
    modelPath,
    "--port",
    "0",
    "--parallel",
    "1",
    "--max-tokens-cap",
    "4096",
  ]);
  local = await SteerableModel.load({ modelPath });
  remote = await RemoteGenerator.connect({ backend: upstream.url, modelPath });
}, 60_000);

afterAll(async () => {
  await remote?.dispose();
  await local?.dispose();
  await upstream?.stop();
  dir.cleanup();
});

const ask = (content: string) => [{ role: "user" as const, content }];

/** Generations whose results must not depend on where the tokens are sampled. */
// biome-ignore format: one case per line reads as a table
const CASES: Array<{ name: string; opts: GenerateOptions }> = [
  { name: "greedy, steered", opts: { messages: ask("Tell me a joke"), attributes: { humor: 4, verbosity: 0 }, maxTokens: 16 } },
  { name: "sampled with a seed", opts: { messages: ask("Once upon a time"), temperature: 0.9, topK: 30, topP: 0.9, seed: 11, maxTokens: 16 } },
  { name: "multi-turn, own system prompt", opts: { messages: [{ role: "system", content: "Be brief." }, ...ask("one"), { role: "assistant", content: "two" }, ...ask("three")], maxTokens: 12 } },
  { name: "as many tokens as the default allows", opts: { messages: ask("go on"), maxTokensDefault: 20 } },
];

describe.skipIf(!haveSharedData)("RemoteGenerator against steerlm serve", () => {
  it("reads the engine: its model, its context, the schema from the GGUF's vocabulary-only load", () => {
    expect(remote.engineModel).toBe("steer");
    expect(remote.contextSize).toBe(local.contextSize);
    expect(remote.schema).toEqual(local.schema);
    expect([remote.schemaSource, remote.controlMode]).toEqual(["gguf", "tokens"]);
  });

  for (const { name, opts } of CASES) {
    it(`${name}: the same reply as the local model, whole and streamed`, async () => {
      const want = await local.generate(opts);
      expect(await remote.generate(opts)).toEqual(want);
      const pieces: string[] = [];
      const streamed = await remote.generate({ ...opts, onToken: (t) => pieces.push(t) });
      expect(pieces.join("")).toBe(want.text);
      expect(streamed).toEqual(want);
    });
  }

  it("cuts at a caller's stop string as the local model does", async () => {
    const { text } = await local.generate({ messages: ask("Tell me a joke"), maxTokens: 16 });
    const stop = [text.slice(6, 10)];
    const want = await local.generate({ messages: ask("Tell me a joke"), maxTokens: 16, stop });
    expect(want.finishReason).toBe("stop");
    expect(await remote.generate({ messages: ask("Tell me a joke"), maxTokens: 16, stop })).toEqual(want);
  });

  it("completes raw text and token-id prompts (control ids included) like the local model", async () => {
    const raw = { prompt: "Once upon", maxTokens: 8 };
    expect(await remote.complete(raw)).toEqual(await local.complete(raw));
    const ids = { prompt: [1, 15043, CONTROL_IDS.turn, 3186], maxTokens: 8 };
    const want = await local.complete(ids);
    expect(want.prompt.controlTokens).toBe(1);
    expect(await remote.complete(ids)).toEqual(want);
  });

  it("refuses a prompt that does not fit before sending it, with the local model's error", async () => {
    const opts = { messages: ask("word ".repeat(3000)), maxTokens: 10 };
    const err = await remote.generate(opts).catch((e: Error) => e);
    expect(err).toBeInstanceOf(ContextLengthError);
    expect((err as Error).message).toBe(
      ((await local.generate(opts).catch((e: Error) => e)) as Error).message,
    );
  });

  it("ends with finish reason abort when the caller gives up", async () => {
    const ctrl = new AbortController();
    const r = await remote.generate({
      messages: ask("a long story"),
      maxTokens: 1900,
      signal: ctrl.signal,
      onToken: () => ctrl.abort(),
    });
    expect(r.finishReason).toBe("abort");
    expect(remote.load).toEqual({ active: 0, queued: 0 });
  });
});

/** A tiny engine in front of the real one: `plan` answers the next /v1/completions requests, then it proxies. */
async function flakyEngine(target: string, plan: Array<(res: ServerResponse) => void>) {
  let seen = 0;
  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.url === "/v1/completions") {
      seen++;
      const fail = plan.shift();
      if (fail) return fail(res);
    }
    const upstreamRes = await fetch(`${target}${req.url}`, {
      method: req.method,
      headers: { "content-type": "application/json" },
      body: req.method === "POST" ? Buffer.concat(chunks) : undefined,
    });
    res.writeHead(upstreamRes.status, { "content-type": upstreamRes.headers.get("content-type") ?? "" });
    res.end(Buffer.from(await upstreamRes.arrayBuffer()));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    get completions() {
      return seen;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const answer =
  (status: number, headers: Record<string, string> = {}) =>
  (res: ServerResponse) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify({ error: { message: `busy (${status})` } }));
  };
const hang = () => () => {}; // accepts the request and never answers

describe.skipIf(!haveSharedData)("an engine that fails", () => {
  const opts = { messages: ask("Tell me a joke"), maxTokens: 8 };
  let connected: Generator | undefined;
  afterAll(() => connected?.dispose());
  const connect = async (url: string, more: { retries?: number; engineTimeout?: number } = {}) => {
    await connected?.dispose();
    connected = await RemoteGenerator.connect({ backend: url, modelPath, ...more });
    return connected;
  };

  it("is retried on 429 (waiting what Retry-After says) and 503 until it answers, with the same reply", async () => {
    const engine = await flakyEngine(upstream.url, [
      answer(429, { "retry-after": "0" }),
      answer(503),
      answer(429, { "retry-after": "0" }),
    ]);
    try {
      const g = await connect(engine.url, { retries: 3 });
      expect(await g.generate(opts)).toEqual(await local.generate(opts));
      expect(engine.completions).toBe(4);
      expect(g.retries).toBe(3);
    } finally {
      await engine.close();
    }
  });

  it("gives up after its retries, saying what the engine answered", async () => {
    const engine = await flakyEngine(upstream.url, [answer(503), answer(500), answer(503)]);
    try {
      const g = await connect(engine.url, { retries: 1 });
      const err = await g.generate(opts).catch((e: Error) => e);
      expect(err).toBeInstanceOf(UpstreamError);
      expect((err as UpstreamError).status).toBe(500);
      expect((err as Error).message).toBe(
        `${engine.url}/v1/completions: HTTP 500: busy (500) (after 2 attempts)`,
      );
      expect(engine.completions).toBe(2);
    } finally {
      await engine.close();
    }
  });

  it("is not retried when it refuses the request itself (400)", async () => {
    const engine = await flakyEngine(upstream.url, [answer(400)]);
    try {
      const g = await connect(engine.url, { retries: 3 });
      const err = await g.generate(opts).catch((e: Error) => e);
      expect((err as UpstreamError).status).toBe(400);
      expect((err as Error).message).toContain("the engine refused the request: HTTP 400: busy (400)");
      expect(engine.completions).toBe(1);
    } finally {
      await engine.close();
    }
  });

  it("times out a request the engine never answers, retries it, and then succeeds", async () => {
    const engine = await flakyEngine(upstream.url, [hang()]);
    try {
      const g = await connect(engine.url, { retries: 2, engineTimeout: 2 });
      expect(await g.generate(opts)).toEqual(await local.generate(opts));
      expect(g.retries).toBe(1);
    } finally {
      await engine.close();
    }
  });

  it("reports the timeout once its retries are spent", async () => {
    const engine = await flakyEngine(upstream.url, [hang(), hang()]);
    try {
      const g = await connect(engine.url, { retries: 1, engineTimeout: 0.3 });
      const err = await g.generate(opts).catch((e: Error) => e);
      expect((err as Error).message).toBe(
        `${engine.url}/v1/completions: no answer for 0.3 s (after 2 attempts)`,
      );
    } finally {
      await engine.close();
    }
  });

  it("refuses to start when nothing answers at the URL", async () => {
    const engine = await flakyEngine(upstream.url, []);
    await engine.close(); // a port nobody listens on any more
    const err = await RemoteGenerator.connect({ backend: engine.url, modelPath, retries: 0 }).catch(
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toMatch(/\/v1\/models: cannot reach the engine \(ECONNREFUSED\)$/);
  });
});

/**
 * An engine that speaks as vLLM or llama-server do, made of the real one: /v1/models says who it is, the
 * fields steerlm serve does not take are dropped (after being recorded), and a llama-server answers with
 * text only, its ids removed.
 */
async function mimicEngine(target: string, kind: "vllm" | "llamacpp", opts: { crlf?: boolean } = {}) {
  const bodies: Array<Record<string, unknown>> = [];
  const context = ((await (await fetch(`${target}/v1/steerlm/schema`)).json()) as { context_size: number })
    .context_size;
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const send = (value: unknown) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(value));
    };
    if (req.url === "/v1/models") {
      const list = (await (await fetch(`${target}/v1/models`)).json()) as { data: object[] };
      const extra = kind === "vllm" ? { max_model_len: context } : {};
      return send({ ...list, data: list.data.map((m) => ({ ...m, owned_by: kind, ...extra })) });
    }
    if (req.url === "/props" && kind === "llamacpp")
      return send({ default_generation_settings: { n_ctx: context } });
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
    bodies.push(body);
    const { stop_token_ids: _ids, preserved_tokens: _kept, ...forwarded } = body;
    if (kind === "llamacpp") forwarded.return_token_ids = false;
    const upstreamRes = await fetch(`${target}${req.url}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(forwarded),
    });
    res.writeHead(upstreamRes.status, { "content-type": upstreamRes.headers.get("content-type") ?? "" });
    if (!opts.crlf) return res.end(Buffer.from(await upstreamRes.arrayBuffer()));
    // CRLF line ends (as some servers write SSE), each CR sent apart from its LF
    const pieces = (await upstreamRes.text()).replace(/\n/g, "\r\n").split(/(?<=\r)/);
    for (const piece of pieces) {
      res.write(piece);
      await new Promise((r) => setTimeout(r, 2));
    }
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

describe.skipIf(!haveSharedData)("the dialects of other engines", () => {
  const opts = { messages: ask("Tell me a joke"), maxTokens: 12 };

  it("vLLM: ids back (return_token_ids), stop at the control ids, the context from max_model_len", async () => {
    const engine = await mimicEngine(upstream.url, "vllm");
    const g = await RemoteGenerator.connect({ backend: engine.url, modelPath });
    try {
      expect(g.contextSize).toBe(local.contextSize);
      expect(await g.generate(opts)).toEqual(await local.generate(opts));
      expect(engine.bodies[0]).toMatchObject({
        model: "steer",
        prompt: (await local.generate(opts)).prompt.tokens,
        max_tokens: 12,
        temperature: 0,
        stop: ["<extra_id_1>"],
        stop_token_ids: [CONTROL_IDS.system, CONTROL_IDS.turn, CONTROL_IDS.label],
        return_token_ids: true,
      });
    } finally {
      await g.dispose();
      await engine.close();
    }
  });

  it("reads a stream whose CRLF line ends arrive split across chunks", async () => {
    const engine = await mimicEngine(upstream.url, "vllm", { crlf: true });
    const g = await RemoteGenerator.connect({ backend: engine.url, modelPath });
    try {
      const pieces: string[] = [];
      const got = await g.generate({ ...opts, onToken: (t) => pieces.push(t) });
      expect(got).toEqual(await local.generate(opts));
      expect(pieces.join("")).toBe(got.text);
    } finally {
      await g.dispose();
      await engine.close();
    }
  });

  it("llama-server: text back, control tokens preserved and stopped at, the context from /props", async () => {
    const engine = await mimicEngine(upstream.url, "llamacpp");
    const g = await RemoteGenerator.connect({ backend: engine.url, modelPath });
    try {
      expect(g.contextSize).toBe(local.contextSize);
      const want = await local.generate(opts);
      const pieces: string[] = [];
      for (const got of [
        await g.generate(opts),
        await g.generate({ ...opts, onToken: (t) => pieces.push(t) }),
      ]) {
        expect({ ...got, tokens: want.tokens }).toEqual(want); // the text, its finish, its usage
        expect(got.tokens).toEqual([]); // llama-server's /v1/completions returns no ids
      }
      expect(pieces.join("")).toBe(want.text);
      const controls = ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"];
      expect(engine.bodies[0]).toMatchObject({
        stop: ["\n<extra_id_1>", ...controls],
        preserved_tokens: controls,
      });
      expect(engine.bodies[0]).not.toHaveProperty("return_token_ids");

      // chained: steerlm serve in front of it knows no ids either, and says none rather than an empty
      // list, so a steerlm client takes the text
      const front = await startServer({ model: g, port: 0 });
      const viaFront = await RemoteGenerator.connect({ backend: front.url, modelPath });
      try {
        const res = await fetch(`${front.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            prompt: "Once upon",
            max_tokens: 4,
            temperature: 0,
            return_token_ids: true,
          }),
        });
        const body = (await res.json()) as { choices: Array<Record<string, unknown>> };
        expect(body.choices[0]).not.toHaveProperty("token_ids");
        expect((await viaFront.generate(opts)).text).toBe(want.text);
      } finally {
        await viaFront.dispose();
        await front.close();
      }
    } finally {
      await g.dispose();
      await engine.close();
    }
  });
});

describe.skipIf(!haveSharedData)("the CLI with --backend", () => {
  it("prints the same reply as local generate, greedy and sampled", async () => {
    for (const args of [
      ["--attr", "humor=4", "--max-tokens", "24"],
      ["-t", "0.8", "--seed", "7", "--top-k", "20", "--max-tokens", "24"],
    ]) {
      const here = await runCli(["generate", "-m", modelPath, ...args, "Tell me a joke"]);
      const there = await runCli([
        "generate",
        "-m",
        modelPath,
        "--backend",
        `${upstream.url}/v1`,
        ...args,
        "Tell me a joke",
      ]);
      expect(there.stderr).toBe("");
      expect([there.code, here.code]).toEqual([0, 0]);
      expect(there.stdout).toBe(here.stdout);
      expect(there.stdout.length).toBeGreaterThan(10);
    }
  }, 60_000);

  it("chat --backend holds the same conversation as local chat, /set between turns", async () => {
    const input = "Tell me a joke\n/set humor=4\nAnother one\n/quit\n";
    const args = ["chat", "-m", modelPath, "--max-tokens", "12"];
    const here = await runCli(args, { input });
    const there = await runCli([...args, "--backend", upstream.url], { input });
    expect([there.code, here.code]).toEqual([0, 0]);
    expect(there.stdout).toBe(here.stdout);
    expect(there.stdout).toContain("humor:4");
  }, 60_000);

  it("eval answer --backend writes the local answers, two questions in flight", async () => {
    const questions = join(dir.path, "question.jsonl");
    writeFileSync(
      questions,
      [
        { question_id: 1, category: "writing", turns: ["Tell me a joke", "Another one"] },
        { question_id: 2, category: "math", turns: ["What is 2+2?"] },
      ]
        .map((q) => `${JSON.stringify(q)}\n`)
        .join(""),
    );
    const answers = async (extra: string[], name: string) => {
      const out = join(dir.path, name);
      const r = await runCli(
        ["eval", "answer", "-m", modelPath, "--bench", questions, "-o", out].concat([
          "--max-tokens",
          "10",
          "--attr",
          "humor=3",
          ...extra,
        ]),
      );
      expect(r.code).toBe(0);
      return readFileSync(out, "utf8")
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l))
        .map(({ question_id, choices, steerlm_values }) => ({ question_id, choices, steerlm_values }));
    };
    const here = await answers([], "here.jsonl");
    expect(await answers(["--backend", upstream.url, "--parallel", "2"], "there.jsonl")).toEqual(here);
  }, 60_000);

  it("names the flag of a bad URL, and refuses remote settings without --backend", async () => {
    const bad = await runCli(["generate", "-m", modelPath, "--backend", "ftp://x", "hi"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(
      '--backend: expected the http(s) URL of an OpenAI-compatible server, got "ftp://x"',
    );
    const alone = await runCli(["generate", "-m", modelPath, "--retries", "2", "hi"]);
    expect(alone.code).toBe(1);
    expect(alone.stderr).toContain("--retries: applies to a remote engine only");
  });

  it("refuses guidance and fractional values on an engine, naming the flag", async () => {
    const remote = ["generate", "-m", modelPath, "--backend", upstream.url, "--max-tokens", "4"];
    const guided = await runCli([...remote, "--guidance", "1", "hi"]);
    expect(guided.code).toBe(1);
    expect(guided.stderr).toContain("--guidance: attribute guidance mixes");
    expect(guided.stderr).toContain("remote engine");
    expect(guided.stderr).not.toContain("    at ");
    const mixed = await runCli([...remote, "--attr", "humor=2.5", "hi"]);
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toContain("--attr: a fractional attribute value mixes 2 conditionings");
    const plain = await runCli([...remote, "--attr", "humor=2", "--guidance", "0", "hi"]);
    expect(plain.code).toBe(0);
  });
});
