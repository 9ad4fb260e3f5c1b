/**
 * Load: N concurrent clients for D seconds against a tiny model. Half the clients stream, half do not;
 * attributes and seeds vary per request. Reports throughput, latency percentiles and every status code;
 * fails on any 5xx, transport error or server crash.
 */
import { quantile } from "../util/numbers.js";
import { startServe, TINY_MODEL } from "./bench-server.js";

export interface ServeBenchOptions {
  model?: string;
  clients?: number;
  seconds?: number;
  /** Server's --parallel (sequences generating at once). */
  parallel?: number;
  maxTokens?: number;
}

export interface ServeBenchResult {
  model: string;
  clients: number;
  seconds: number;
  parallel: number;
  requests: number;
  status: Record<string, number>;
  errors5xx: number;
  transportErrors: number;
  serverCrashed: boolean;
  requestsPerSecond: number;
  completionTokensPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  /** Streaming requests: time to the first content chunk. */
  firstTokenMs: { p50: number; p99: number };
}

/** One request; resolves with its status, latency, first-token time (streams) and completion tokens. */
async function oneRequest(
  url: string,
  i: number,
  stream: boolean,
  maxTokens: number,
): Promise<{ status: number; ms: number; firstMs?: number; tokens: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      messages: [{ role: "user", content: `Request ${i}: tell me about the sea.` }],
      max_tokens: maxTokens,
      temperature: 0.7,
      seed: i,
      stream,
      stream_options: stream ? { include_usage: true } : undefined,
      steerlm: { attributes: { humor: i % 5, verbosity: (i * 3) % 5 } },
    }),
  });
  if (!stream || res.status !== 200) {
    const body = (await res.json()) as { usage?: { completion_tokens: number } };
    return { status: res.status, ms: performance.now() - t0, tokens: body.usage?.completion_tokens ?? 0 };
  }
  let firstMs: number | undefined;
  let tokens = 0;
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true });
    if (firstMs === undefined && text.includes('"content":"') && /"content":"[^"]/.test(text)) {
      firstMs = performance.now() - t0;
    }
  }
  const usage = /"usage":\{"prompt_tokens":\d+,"completion_tokens":(\d+)/.exec(text);
  if (usage) tokens = Number(usage[1]);
  if (!text.endsWith("data: [DONE]\n\n")) return { status: 599, ms: performance.now() - t0, tokens };
  return { status: res.status, ms: performance.now() - t0, firstMs, tokens };
}

export async function benchServe(opts: ServeBenchOptions = {}): Promise<ServeBenchResult> {
  const model = opts.model ?? TINY_MODEL;
  const clients = opts.clients ?? 32;
  const seconds = opts.seconds ?? 30;
  const parallel = opts.parallel ?? 4;
  const maxTokens = opts.maxTokens ?? 32;
  const { child, url } = await startServe(model, parallel);
  let crashed = false;
  let stopping = false;
  // Any exit before we ask it to stop, or an unclean exit after, counts as a crash.
  child.on("exit", (code) => {
    if (!stopping || code !== 0) crashed = true;
  });
  const status: Record<string, number> = {};
  const latencies: number[] = [];
  const firsts: number[] = [];
  let transportErrors = 0;
  let tokens = 0;
  let counter = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      while (performance.now() < deadline && !crashed) {
        const i = counter++;
        try {
          const r = await oneRequest(url, i, c % 2 === 0, maxTokens);
          status[r.status] = (status[r.status] ?? 0) + 1;
          if (r.status === 200) {
            latencies.push(r.ms);
            tokens += r.tokens;
            if (r.firstMs !== undefined) firsts.push(r.firstMs);
          }
        } catch {
          transportErrors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const healthy =
    !crashed &&
    (await fetch(`${url}/health`)
      .then((r) => r.ok)
      .catch(() => false));
  stopping = true;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;
  latencies.sort((a, b) => a - b);
  firsts.sort((a, b) => a - b);
  const requests = Object.values(status).reduce((a, b) => a + b, 0);
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    model,
    clients,
    seconds: round(elapsed),
    parallel,
    requests,
    status,
    errors5xx: Object.entries(status)
      .filter(([s]) => Number(s) >= 500)
      .reduce((a, [, n]) => a + n, 0),
    transportErrors,
    serverCrashed: crashed || !healthy,
    requestsPerSecond: round(requests / elapsed),
    completionTokensPerSecond: round(tokens / elapsed),
    latencyMs: {
      p50: round(quantile(latencies, 0.5)),
      p90: round(quantile(latencies, 0.9)),
      p99: round(quantile(latencies, 0.99)),
      max: round(latencies[latencies.length - 1] ?? Number.NaN),
    },
    firstTokenMs: { p50: round(quantile(firsts, 0.5)), p99: round(quantile(firsts, 0.99)) },
  };
}

export function formatServeBench(r: ServeBenchResult): string {
  return (
    `serve ${r.model.split("/").pop()}: ${r.clients} clients, ${r.seconds} s, --parallel ${r.parallel}\n` +
    `  ${r.requests} requests = ${r.requestsPerSecond} req/s, ${r.completionTokensPerSecond} completion tokens/s\n` +
    `  latency p50 ${r.latencyMs.p50} ms, p90 ${r.latencyMs.p90} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms; ` +
    `first token (streams) p50 ${r.firstTokenMs.p50} ms, p99 ${r.firstTokenMs.p99} ms\n` +
    `  status ${JSON.stringify(r.status)}, 5xx ${r.errors5xx}, transport errors ${r.transportErrors}, ` +
    `server crashed: ${r.serverCrashed ? "YES" : "no"}\n`
  );
}
