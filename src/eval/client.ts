import { SteerlmError } from "../util/errors.js";
import { log } from "../util/log.js";
import type { ChatMessage } from "./prompts.js";

/**
 * A judge behind any OpenAI-compatible `/v1/chat/completions` endpoint (steerlm serve, vLLM, llama.cpp's
 * server, OpenAI). FastChat asks its judges with temperature 0 and max_tokens 2048.
 */
export interface JudgeEndpoint {
  /** Base URL ending in /v1, e.g. http://127.0.0.1:8080/v1 */
  url: string;
  model: string;
  apiKey?: string;
  temperature?: number;
  maxTokens?: number;
  /** Attempts on network errors, 429 and 5xx (default 3). */
  attempts?: number;
  /** First retry delay in ms, doubled each time (default 1000). */
  retryDelayMs?: number;
  timeoutMs?: number;
}

export type JudgeFn = (messages: ChatMessage[]) => Promise<string>;

/** What a judge is asked with where the endpoint does not say: FastChat's temperature and max_tokens. */
export const JUDGE_DEFAULTS = { temperature: 0, maxTokens: 2048 };

export function openAiJudge(ep: JudgeEndpoint): JudgeFn {
  const url = `${ep.url.replace(/\/+$/, "")}/chat/completions`;
  const attempts = ep.attempts ?? 3;
  return async (messages) => {
    let delay = ep.retryDelayMs ?? 1000;
    for (let attempt = 1; ; attempt++) {
      let retryable: string;
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(ep.apiKey ? { authorization: `Bearer ${ep.apiKey}` } : {}),
          },
          body: JSON.stringify({
            model: ep.model,
            messages,
            n: 1,
            temperature: ep.temperature ?? JUDGE_DEFAULTS.temperature,
            max_tokens: ep.maxTokens ?? JUDGE_DEFAULTS.maxTokens,
          }),
          signal: AbortSignal.timeout(ep.timeoutMs ?? 600_000),
        });
        const body = await res.text();
        if (res.ok) return contentOf(body, url);
        if (res.status !== 429 && res.status < 500) {
          // Wrong key, unknown model, bad request: retrying cannot help.
          throw new SteerlmError(
            `judge ${url} answered ${res.status}: ${body.slice(0, 300)}`,
            res.status === 401 ? "check --api-key" : "check --judge-url and --judge-model",
          );
        }
        retryable = `${res.status}: ${body.slice(0, 200)}`;
      } catch (err) {
        if (err instanceof SteerlmError) throw err;
        retryable = (err as Error).message;
      }
      if (attempt >= attempts)
        throw new SteerlmError(
          `judge ${url} failed after ${attempts} attempts: ${retryable}`,
          "is the judge server running? judgments written so far are kept; run the same command again to resume",
        );
      log.warn(`judge: ${retryable}; retrying in ${delay} ms`);
      await new Promise((r) => setTimeout(r, delay));
      delay *= 2;
    }
  };
}

function contentOf(body: string, url: string): string {
  let obj: unknown;
  try {
    obj = JSON.parse(body);
  } catch {
    throw new SteerlmError(`judge ${url} did not answer JSON: ${body.slice(0, 200)}`);
  }
  const content = (obj as { choices?: Array<{ message?: { content?: unknown } }> }).choices?.[0]?.message
    ?.content;
  if (typeof content !== "string")
    throw new SteerlmError(
      `judge ${url}: no choices[0].message.content in the answer: ${body.slice(0, 200)}`,
    );
  return content;
}
