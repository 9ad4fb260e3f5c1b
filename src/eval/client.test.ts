import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { openAiJudge } from "./client.js";

/** A judge endpoint that answers each request from `plan` in turn (then the verdict), recording the times. */
async function judgeServer(plan: Array<(res: ServerResponse) => void>) {
  const times: number[] = [];
  const paths: string[] = [];
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    for await (const _ of req);
    times.push(performance.now());
    paths.push(req.url ?? "");
    const next = plan.shift();
    if (next) return next(res);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ choices: [{ message: { role: "assistant", content: "[[A]]" } }] }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return { url, times, paths, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const busy = (headers: Record<string, string>) => (res: ServerResponse) => {
  res.writeHead(429, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify({ error: { message: "rate limited" } }));
};

describe("openAiJudge", () => {
  const servers: Array<{ close: () => Promise<void> }> = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
  });

  it("waits what a 429's Retry-After asks, and keeps trying past three rate limits", async () => {
    const s = await judgeServer([
      busy({ "retry-after": "1" }),
      busy({}),
      busy({}),
      busy({ "retry-after": "0" }),
    ]);
    servers.push(s);
    const verdict = await openAiJudge({ url: s.url, model: "judge" })([{ role: "user", content: "which?" }]);
    expect(verdict).toBe("[[A]]");
    expect(s.times).toHaveLength(5);
    expect((s.times[1] as number) - (s.times[0] as number)).toBeGreaterThanOrEqual(990);
  });

  it("posts to <base>/chat/completions, adding /v1 to a bare host only", async () => {
    const s = await judgeServer([]);
    servers.push(s);
    const host = s.url.replace(/\/v1$/, "");
    for (const base of [s.url, host, `${host}/`, `${host}/v1beta/openai`])
      await openAiJudge({ url: base, model: "judge" })([{ role: "user", content: "?" }]);
    expect(s.paths).toEqual([
      "/v1/chat/completions",
      "/v1/chat/completions",
      "/v1/chat/completions",
      "/v1beta/openai/chat/completions",
    ]);
  });

  it("stops at once on a refusal, with the endpoint's message and a hint", async () => {
    const s = await judgeServer([
      (res) => {
        res.writeHead(401, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "bad key" } }));
      },
    ]);
    servers.push(s);
    const err = await openAiJudge({ url: s.url, model: "judge", apiKey: "x" })([
      { role: "user", content: "?" },
    ]).catch((e: Error & { hint?: string }) => e);
    expect((err as Error).message).toBe(
      `judge ${s.url}/chat/completions: the engine refused the request: HTTP 401: bad key`,
    );
    expect((err as { hint?: string }).hint).toBe("check --api-key");
    expect(s.times).toHaveLength(1);
  });
});
