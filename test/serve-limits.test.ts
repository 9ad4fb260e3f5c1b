import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SteerableModel } from "../src/inference/index.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { haveSharedData, tempDir } from "./helpers.js";
import { writeSteerModel } from "./serve-fixture.js";

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
