import { spawn } from "node:child_process";
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SteerableModel } from "../src/inference/index.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { log } from "../src/util/log.js";
import { haveSharedData, repoRoot, runCli, tempDir } from "./helpers.js";
import { TINY_RANDOM, writeSteerModel } from "./serve-fixture.js";

/**
 * What a hostile or unlucky client cannot do to the server: hold connections open, trickle a request,
 * make it answer 500 with a malformed request, or reach it through a rebinding DNS name.
 */

/** Deadlines are checked about once a second, and a loaded machine runs timers late: the allowed lateness. */
const MARGIN_MS = 5000;

const dir = tempDir();
let model: SteerableModel;
let server: SteerServer;
let port: number;

beforeAll(async () => {
  if (!haveSharedData) return;
  const modelPath = await writeSteerModel(dir.path, "steer.gguf");
  model = await SteerableModel.load({ modelPath, parallel: 1, maxQueue: 4 });
  server = await startServer({ model, port: 0, headersTimeout: 2, requestTimeout: 3 });
  port = Number(new URL(server.url).port);
});

afterAll(async () => {
  await server?.close();
  await model?.dispose();
  dir.cleanup();
});

interface Conn {
  socket: Socket;
  /** When the connection was established. */
  opened: Promise<number>;
  /** When the server closed it, and every byte it sent before. */
  closed: Promise<{ at: number; data: string }>;
}

/** A raw TCP connection to `port`; `send` writes whatever the test wants once it is open. */
function open(to: number, send?: (socket: Socket) => void): Conn {
  const socket = connect(to, "127.0.0.1");
  let data = "";
  socket.setEncoding("utf8").on("data", (d: string) => (data += d));
  socket.on("error", () => {});
  const opened = new Promise<number>((resolve) =>
    socket.once("connect", () => {
      resolve(Date.now());
      send?.(socket);
    }),
  );
  const closed = new Promise<{ at: number; data: string }>((resolve) =>
    socket.once("close", () => resolve({ at: Date.now(), data })),
  );
  return { socket, opened, closed };
}

/** Writes `text` one piece every `ms` until the socket closes. */
function trickle(socket: Socket, text: string, ms: number): void {
  const timer = setInterval(() => {
    if (socket.destroyed) clearInterval(timer);
    else socket.write(text);
  }, ms);
}

/** One request with a Host header of our choosing (fetch would send the URL's). */
function get(path: string, host: string | undefined, to = port) {
  return new Promise<{ status: number; body: string; headers: Record<string, unknown> }>(
    (resolve, reject) => {
      const headers = host === undefined ? {} : { host };
      const req = request({ host: "127.0.0.1", port: to, path, headers, setHost: false }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      });
      req.on("error", reject);
      req.end();
    },
  );
}

describe.skipIf(!haveSharedData)("connections and deadlines", () => {
  it("closes 200 idle connections at the headers deadline, and answers a request meanwhile", async () => {
    const conns = Array.from({ length: 200 }, () => open(port));
    const opened = await Promise.all(conns.map((c) => c.opened));
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    const closed = await Promise.all(conns.map((c) => c.closed));
    const late = closed.map((c, i) => c.at - opened[i] - 2000);
    expect(Math.max(...late)).toBeLessThan(MARGIN_MS);
  });

  it("answers 408 to headers and to a body that trickle in past their deadlines", async () => {
    const headers = open(port, (s) => {
      s.write("GET /health HTTP/1.1\r\nHost: localhost\r\n");
      trickle(s, "x-slow: 1\r\n", 200);
    });
    const body = open(port, (s) => {
      s.write(
        "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n",
      );
      trickle(s, " ", 200);
    });
    for (const [conn, deadline] of [
      [headers, 2000],
      [body, 3000],
    ] as const) {
      const start = await conn.opened;
      const { at, data } = await conn.closed;
      expect(data).toMatch(/^HTTP\/1\.1 408 /);
      expect(at - start - deadline).toBeLessThan(MARGIN_MS);
    }
  });

  it("does not cut a request that arrived in time but takes longer than the deadlines to answer", async () => {
    const complete = model.complete.bind(model);
    const spy = vi.spyOn(model, "complete").mockImplementation(async (opts) => {
      await new Promise((r) => setTimeout(r, 4500)); // past both deadlines, with no byte on the wire
      return complete(opts);
    });
    try {
      const res = await fetch(`${server.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "Once upon", max_tokens: 2, temperature: 0 }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(
        2,
      );
    } finally {
      spy.mockRestore();
    }
  });

  it("refuses connections beyond --max-connections, and takes new ones once some close", async () => {
    const small = await startServer({ model, port: 0, maxConnections: 8 });
    const smallPort = Number(new URL(small.url).port);
    try {
      const held = Array.from({ length: 8 }, () => open(smallPort));
      await Promise.all(held.map((c) => c.opened));
      let heldClosed = 0;
      for (const c of held) void c.closed.then(() => heldClosed++);
      const extra = open(smallPort);
      const { data } = await extra.closed;
      expect(data).toBe("");
      expect(heldClosed).toBe(0);
      for (const c of held) c.socket.destroy();
      await Promise.all(held.map((c) => c.closed));
      // The server sees the clients go a moment later.
      const count = () => new Promise<number>((r) => small.server.getConnections((_e, n) => r(n)));
      while ((await count()) > 0) await new Promise((r) => setTimeout(r, 20));
      expect((await fetch(`${small.url}/health`)).status).toBe(200);
    } finally {
      await small.close();
    }
  });
});

describe.skipIf(!haveSharedData)("malformed requests are 400s, never 500s with a stack trace", () => {
  const post = (body: string) =>
    fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
  const nested = (depth: number, open: string, close: string) =>
    open.repeat(depth) + "1" + close.repeat(depth);

  it("refuses deeply nested JSON before anything walks it", async () => {
    const errors = vi.spyOn(log, "error");
    try {
      for (const body of [
        `{"messages": [${nested(100_000, "[", "]")}]}`,
        `{"messages": [{"role": "user", "content": "hi"}], "steerlm": {"attributes": ${nested(50_000, '{"a":', "}")}}}`,
        nested(65, "[", "]"),
      ]) {
        const res = await post(body);
        expect(res.status).toBe(400);
        const { error } = (await res.json()) as { error: { code: string; message: string } };
        expect(error.code).toBe("json_too_deep");
        expect(error.message).toMatch(/deeper than 64 levels/);
      }
      // Brackets inside strings, after escaped quotes and backslashes, are text, not nesting.
      const text = `\\" ${"[".repeat(100)} \\\\ ${"{".repeat(100)}`;
      const inString = await post(`{"messages": [{"role": "user", "content": "${text}"}], "max_tokens": 1}`);
      expect(inString.status).toBe(200);
      // 64 levels is still JSON the validator reads (and refuses for what it is).
      const ok = await post(nested(64, "[", "]"));
      expect(ok.status).toBe(400);
      expect(((await ok.json()) as { error: { param: string } }).error.param).toBe("body");
      expect(errors).not.toHaveBeenCalled();
    } finally {
      errors.mockRestore();
    }
  });

  it("answers 400 to a request target that is not a URL", async () => {
    const errors = vi.spyOn(log, "error");
    try {
      const conn = open(port, (s) =>
        s.write("GET http://[ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
      );
      const { data } = await conn.closed;
      expect(data).toMatch(/^HTTP\/1\.1 400 /);
      const body = JSON.parse(data.slice(data.indexOf("\r\n\r\n") + 4)) as { error: { code: string } };
      expect(body.error.code).toBe("bad_request_target");
      expect(errors).not.toHaveBeenCalled();
    } finally {
      errors.mockRestore();
    }
  });
});

describe.skipIf(!haveSharedData)("bodies over --max-body", () => {
  const limit = 64 * 1024;
  let small: SteerServer;
  let smallPort: number;
  beforeAll(async () => {
    small = await startServer({ model, port: 0, maxBodyBytes: limit });
    smallPort = Number(new URL(small.url).port);
  });
  afterAll(async () => small?.close());

  /** Sends the request head and the whole body before looking at the answer, as many clients do. */
  const sendWhole = (head: string, body: Buffer) =>
    open(smallPort, (s) => {
      s.write(head);
      s.write(body);
    }).closed;

  it("are answered 413 before the body is read, even when the body is cut off past the drain bound", async () => {
    // 32 times the limit: the server cuts the connection at 16 times; the 413 went out before that.
    const body = Buffer.alloc(32 * limit, 0x20);
    const { data } = await sendWhole(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n" +
        `content-length: ${body.length}\r\n\r\n`,
      body,
    );
    expect(data).toMatch(/^HTTP\/1\.1 413 /);
    const json = JSON.parse(data.slice(data.indexOf("\r\n\r\n") + 4)) as { error: { code: string } };
    expect(json.error.code).toBe("request_too_large");
  });

  it("are answered 413 when a chunked body passes the limit, and the whole answer arrives", async () => {
    const body = Buffer.alloc(2 * limit, 0x20);
    const chunked = Buffer.concat([
      Buffer.from(`${body.length.toString(16)}\r\n`),
      body,
      Buffer.from("\r\n0\r\n\r\n"),
    ]);
    const { data } = await sendWhole(
      "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n" +
        "transfer-encoding: chunked\r\n\r\n",
      chunked,
    );
    expect(data).toMatch(/^HTTP\/1\.1 413 /);
    expect(data).toMatch(/connection: close/i);
    expect(data).toMatch(/"message":"request body larger than 65536 bytes"/);
  });

  it("fetch gets the 413, and the server answers the next request", async () => {
    const res = await fetch(`${small.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: Buffer.alloc(2 * limit, 0x20),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("request_too_large");
    expect((await fetch(`${small.url}/health`)).status).toBe(200);
  });
});

describe.skipIf(!haveSharedData)("Host names (DNS rebinding)", () => {
  it("answers requests addressed to a loopback name or an IP address", async () => {
    for (const host of [
      `localhost:${port}`,
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
      "app.localhost",
      "LOCALHOST.",
      "10.1.2.3",
    ]) {
      expect((await get("/health", host)).status, host).toBe(200);
    }
  });

  it("refuses any other name with 403, on the page and the API alike", async () => {
    for (const path of ["/", "/health", "/v1/models"]) {
      for (const host of [`rebind.example:${port}`, "localhost.evil.example", "127.0.0.1.nip.io"]) {
        const res = await get(path, host);
        expect(res.status, `${path} ${host}`).toBe(403);
        const { error } = JSON.parse(res.body) as { error: { code: string; message: string } };
        expect(error.code).toBe("host_not_allowed");
        expect(error.message).toMatch(/--allowed-hosts/);
      }
    }
  });

  it("answers the names of --allowed-hosts too", async () => {
    const named = await startServer({ model, port: 0, allowedHosts: ["steer.lan"] });
    const to = Number(new URL(named.url).port);
    try {
      expect((await get("/health", `steer.lan:${to}`, to)).status).toBe(200);
      expect((await get("/health", `localhost:${to}`, to)).status).toBe(200);
      expect((await get("/health", "other.lan", to)).status).toBe(403);
    } finally {
      await named.close();
    }
  });

  it("forbids framing the page", async () => {
    const csp = (await fetch(`${server.url}/`)).headers.get("content-security-policy");
    expect(csp).toMatch(/frame-ancestors 'none'/);
  });
});

describe.skipIf(!haveSharedData)("long prompts", () => {
  const post = (path: string, body: object) =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const huge = "a ".repeat(400_000); // 800 KB, under the body limit: ~400k tokens

  it("are a 400 that says how long the prompt is and what the context holds", async () => {
    for (const [path, body] of [
      ["/v1/chat/completions", { messages: [{ role: "user", content: huge }] }],
      ["/v1/chat/completions", { messages: [{ role: "user", content: huge }], stream: true }],
      ["/v1/completions", { prompt: huge }],
      ["/v1/completions", { prompt: huge, stream: true }],
    ] as const) {
      const res = await post(path, body);
      expect(res.status, path).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe("context_length_exceeded");
      expect(error.message).toMatch(/the prompt \(8\d\d,\d{3} characters, at least [\d,]+ tokens\)/);
      expect(error.message).toMatch(/the context of 2048 tokens/);
    }
  });

  it("counts the bytes of a prompt its length alone does not refuse", async () => {
    // 20,000 characters of 3 bytes, with Llama-2's longest piece of 27 bytes: 741 tokens at least by length,
    // 2,223 by bytes, so refused before tokenizing only because the bytes were counted
    const res = await post("/v1/completions", { prompt: "€".repeat(20_000) });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { message: string } };
    expect(error.message).toMatch(/the prompt \(20,000 characters, at least 2,\d{3} tokens\)/);
  });
});

describe.skipIf(!haveSharedData)("the work a request causes before it holds a slot", () => {
  /** Records every text the llama.cpp model inside `m` tokenizes. */
  const watchTokenizer = (m: SteerableModel) =>
    vi.spyOn((m as unknown as { vocab: { model: Pick<LlamaModel, "tokenize"> } }).vocab.model, "tokenize");
  const post = (url: string, path: string, body: object, signal?: AbortSignal) =>
    fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });

  it("a prompt too long for the context at any tokenization is refused without tokenizing it", async () => {
    const spy = watchTokenizer(model);
    try {
      const long = "hello world ".repeat(25_000); // 300 KB
      expect((await post(server.url, "/v1/completions", { prompt: long })).status).toBe(400);
      const chat = { messages: [{ role: "user", content: long }], stream: true };
      expect((await post(server.url, "/v1/chat/completions", chat)).status).toBe(400);
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it("a chat prompt is tokenized once, streaming or not", async () => {
    for (const stream of [false, true]) {
      const spy = watchTokenizer(model);
      try {
        const body = {
          messages: [
            { role: "system", content: "Be brief." },
            { role: "user", content: "Tell me a joke" },
          ],
          max_tokens: 2,
          stream,
          steerlm: { return_prompt: true },
        };
        const res = await post(server.url, "/v1/chat/completions", body);
        const text = await res.text();
        const json = stream ? text.split("\n\n")[0].slice("data: ".length) : text;
        const { steerlm } = JSON.parse(json) as {
          steerlm: { prompt: { parts: Array<{ kind: string; text: string }> } };
        };
        const textParts = steerlm.prompt.parts.filter((p) => p.kind === "text").map((p) => p.text);
        expect(spy.mock.calls.map((c) => c[0]).join("")).toBe(textParts.join(""));
      } finally {
        spy.mockRestore();
      }
    }
  });

  it("a full server refuses with 429 before tokenizing", async () => {
    const busy = await SteerableModel.load({
      modelPath: join(dir.path, "steer.gguf"),
      parallel: 1,
      maxQueue: 0,
    });
    const busyServer = await startServer({ model: busy, port: 0, maxTokensCap: 1800 });
    const holder = new AbortController();
    try {
      const held = await post(
        busyServer.url,
        "/v1/completions",
        { prompt: "Once", max_tokens: 1800, stream: true },
        holder.signal,
      );
      await (held.body as ReadableStream<Uint8Array>).getReader().read(); // generating: the only slot is taken
      const spy = watchTokenizer(busy);
      try {
        const prompt = "hello world ".repeat(100); // fits: it would be tokenized if it were let in
        const res = await post(busyServer.url, "/v1/completions", { prompt, max_tokens: 1 });
        expect(res.status).toBe(429);
        expect(spy).not.toHaveBeenCalled();
      } finally {
        spy.mockRestore();
      }
    } finally {
      holder.abort();
      await busyServer.close();
      await busy.dispose();
    }
  });
});

describe.skipIf(!haveSharedData)("steerlm serve: the limits as flags", () => {
  const plain = TINY_RANDOM; // a Llama-2 vocabulary: no SteerLM control tokens

  it("--require-control-tokens refuses a model without the control tokens; the default beyond loopback", async () => {
    await expect(SteerableModel.load({ modelPath: plain, requireControlTokens: true })).rejects.toThrow(
      /requireControlTokens: the vocabulary has no SteerLM control tokens \(<extra_id_0>, <extra_id_1>, <extra_id_2>\)/,
    );
    for (const args of [["--require-control-tokens"], ["--host", "0.0.0.0"]]) {
      const r = await runCli(["serve", "-m", plain, "--port", "0", ...args], { timeoutMs: 60_000 });
      expect(r.stderr).toMatch(
        /llama-2-tiny-random\.gguf: --require-control-tokens: the vocabulary has no SteerLM/,
      );
      expect(r.stderr).toMatch(/hint: serve a model made by steerlm sft/);
      expect(r.code).toBe(1);
    }
  });

  it("refuses a request timeout shorter than the headers timeout", async () => {
    const args = ["serve", "-m", join(dir.path, "steer.gguf"), "--port", "0", "--headers-timeout", "10"];
    const r = await runCli([...args, "--request-timeout", "5"]);
    expect(r.stderr).toMatch(/--request-timeout: must be at least the headers timeout \(10 s\), got 5 s/);
    expect(r.code).toBe(1);
  });

  it("--allowed-hosts names the hosts a loopback server answers besides localhost and IP addresses", async () => {
    const child = spawn(
      process.execPath,
      [
        join(repoRoot, "bin", "steerlm.js"),
        "serve",
        "-m",
        join(dir.path, "steer.gguf"),
        "--port",
        "0",
        "--allowed-hosts",
        "steer.lan, other.lan",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    try {
      let stderr = "";
      const url = await new Promise<string>((resolve, reject) => {
        child.stderr.setEncoding("utf8").on("data", (d: string) => {
          stderr += d;
          const m = /at (http:\/\/\S+)/.exec(stderr);
          if (m) resolve(m[1]);
        });
        child.on("exit", () => reject(new Error(`serve exited early: ${stderr}`)));
      });
      const to = Number(new URL(url).port);
      expect((await get("/health", "steer.lan", to)).status).toBe(200);
      expect((await get("/health", "other.lan", to)).status).toBe(200);
      expect((await get("/health", "rebind.example", to)).status).toBe(403);
    } finally {
      child.kill("SIGTERM");
    }
  });
});
