import { parseBackendUrl, Upstream, UpstreamError } from "../inference/upstream.js";
import { SteerlmError } from "../util/errors.js";
import { log } from "../util/log.js";
import type { ChatMessage } from "./prompts.js";

/**
 * A judge behind any OpenAI-compatible `/v1/chat/completions` endpoint (steerlm serve, vLLM, llama.cpp's
 * server, OpenAI). FastChat asks its judges with temperature 0 and max_tokens 2048.
 */
export interface JudgeEndpoint {
  /** Base URL, with or without its /v1, e.g. http://127.0.0.1:8080/v1 */
  url: string;
  model: string;
  apiKey?: string;
  temperature?: number;
  maxTokens?: number;
  /**
   * Attempts on network errors, 429 and 5xx (default 6), waiting what a Retry-After header asks, else a
   * jittered exponential backoff (the remote engines' client, src/inference/upstream.ts).
   */
  attempts?: number;
  timeoutMs?: number;
}

export type JudgeFn = (messages: ChatMessage[]) => Promise<string>;

/** What a judge is asked with where the endpoint does not say: FastChat's temperature and max_tokens. */
export const JUDGE_DEFAULTS = { temperature: 0, maxTokens: 2048, attempts: 6 };

export function openAiJudge(ep: JudgeEndpoint): JudgeFn {
  const upstream = new Upstream({
    url: parseBackendUrl(ep.url, { setting: "judgeUrl" }),
    apiKey: ep.apiKey,
    retries: (ep.attempts ?? JUDGE_DEFAULTS.attempts) - 1,
    timeoutMs: ep.timeoutMs ?? 600_000,
    onRetry: (r) => log.warn(`judge: ${r.reason}; retrying in ${(r.delayMs / 1000).toFixed(1)} s`),
  });
  const url = `${upstream.url}/v1/chat/completions`;
  return async (messages) => {
    let answer: unknown;
    try {
      answer = await upstream.post("/v1/chat/completions", {
        model: ep.model,
        messages,
        n: 1,
        temperature: ep.temperature ?? JUDGE_DEFAULTS.temperature,
        max_tokens: ep.maxTokens ?? JUDGE_DEFAULTS.maxTokens,
      });
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      // a refusal (wrong key, unknown model, bad request) was not retried: retrying cannot help
      const refused = err.status !== null && err.status !== 429 && err.status < 500;
      throw new SteerlmError(
        `judge ${err.message}`,
        refused
          ? err.status === 401
            ? "check --api-key"
            : "check --judge-url and --judge-model"
          : "is the judge server running? judgments written so far are kept; run the same command again to resume",
      );
    }
    return contentOf(answer, url);
  };
}

function contentOf(answer: unknown, url: string): string {
  const content = (answer as { choices?: Array<{ message?: { content?: unknown } }> }).choices?.[0]?.message
    ?.content;
  if (typeof content !== "string")
    throw new SteerlmError(
      `judge ${url}: no choices[0].message.content in the answer: ${JSON.stringify(answer).slice(0, 200)}`,
    );
  return content;
}
