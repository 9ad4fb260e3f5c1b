import { remoteSetting } from "../inference/engine.js";
import { parseBackendUrl, Upstream, UpstreamError } from "../inference/upstream.js";
import { SteerlmError } from "../util/errors.js";
import { log } from "../util/log.js";
import type { ChatMessage } from "./prompts.js";

/**
 * A judge behind any OpenAI-compatible `/v1/chat/completions` endpoint (steerlm serve, vLLM, llama.cpp's
 * server, OpenAI). FastChat asks its judges with temperature 0 and max_tokens 2048.
 */
export interface JudgeEndpoint {
  /**
   * The endpoint's base URL: `…/chat/completions` is added to it, and `/v1` before that when it has no path
   * (http://127.0.0.1:8080/v1, http://127.0.0.1:8080, https://host/v1beta/openai all work).
   */
  url: string;
  model: string;
  apiKey?: string;
  temperature?: number;
  maxTokens?: number;
  /** Sent again after 429, 5xx and network errors, waiting what Retry-After asks (REMOTE_SETTINGS.retries). */
  retries?: number;
  /** Seconds the judge may stay silent (REMOTE_SETTINGS.engineTimeout). */
  timeout?: number;
}

export type JudgeFn = (messages: ChatMessage[]) => Promise<string>;

/** What a judge is asked with where the endpoint does not say: FastChat's temperature and max_tokens. */
export const JUDGE_DEFAULTS = { temperature: 0, maxTokens: 2048 };

export function openAiJudge(ep: JudgeEndpoint): JudgeFn {
  const { base, path } = judgeRoute(ep.url);
  const upstream = new Upstream({
    url: base,
    apiKey: ep.apiKey,
    retries: remoteSetting("retries", ep.retries),
    timeoutMs: remoteSetting("engineTimeout", ep.timeout) * 1000,
    onRetry: (r) => log.warn(`judge: ${r.reason}; retrying in ${(r.delayMs / 1000).toFixed(1)} s`),
  });
  const url = `${base}${path}`;
  return async (messages) => {
    let answer: unknown;
    try {
      answer = await upstream.post(path, {
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

/** The judge's base URL as given (checked), and the chat path under it: `/v1` added only to a bare host. */
function judgeRoute(text: string): { base: string; path: string } {
  parseBackendUrl(text, { setting: "judgeUrl" }); // refuses what is not an http(s) URL, naming the flag
  const base = text.replace(/\/+$/, "");
  const bare = new URL(base).pathname.replace(/\/+$/, "") === "";
  return { base, path: bare ? "/v1/chat/completions" : "/chat/completions" };
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
