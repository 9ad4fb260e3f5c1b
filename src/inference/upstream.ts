import { InputError, type Place, SteerlmError } from "../util/errors.js";
import { AbortedError } from "./pool.js";

/**
 * HTTP to an OpenAI-compatible engine: JSON requests and server-sent-event streams, each retried with
 * exponential backoff and full jitter on what a retry can fix (429, 5xx, a refused or dropped connection,
 * no answer within the timeout), at most `retries` times, waiting what a `Retry-After` header asks instead
 * when there is one. Anything else (400, 401, 404 ...) is the request's fault and fails at once.
 */

/** The engine failed (or could not be reached) after the retries it was allowed; `status` is its HTTP status, if it answered. */
export class UpstreamError extends SteerlmError {
  override name = "UpstreamError";
  constructor(
    readonly url: string,
    readonly what: string,
    readonly status: number | null,
    hint?: string,
  ) {
    super(`${url}: ${what}`, hint);
  }
}

/**
 * An engine's base URL: http(s), with or without the `/v1` the endpoints add (`http://127.0.0.1:8000`
 * and `http://127.0.0.1:8000/v1` are the same engine). Returned without a trailing slash or `/v1`.
 */
export function parseBackendUrl(text: string, place: Place): string {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash)
    throw new InputError(
      `expected the http(s) URL of an OpenAI-compatible server, got ${JSON.stringify(text)}`,
      place,
      "e.g. http://127.0.0.1:8000 (vLLM), http://127.0.0.1:8080 (llama-server, steerlm serve)",
    );
  return url.href.replace(/\/+$/, "").replace(/\/v1$/, "");
}

export interface UpstreamOptions {
  /** From `parseBackendUrl`. */
  url: string;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Extra attempts after a failure a retry can fix. */
  retries: number;
  /** A request fails when the engine sends nothing for this long (no headers, no body bytes). */
  timeoutMs: number;
  /** Told of each retry before its wait (a progress bar counts them). */
  onRetry?: (retry: { attempt: number; delayMs: number; reason: string }) => void;
}

/** A server-sent event's data, parsed from JSON. */
export type SseHandler = (data: unknown) => void;

/** The wait before retry n (1-based): uniform in [0, min(30 s, 0.5 s · 2^(n-1))] (full jitter). */
export function backoffMs(n: number, random = Math.random()): number {
  return random * Math.min(30_000, 500 * 2 ** (n - 1));
}

/** Longest wait a `Retry-After` header can ask for; a longer one is shortened to it. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

interface Failure {
  reason: string;
  status: number | null;
  retryAfterMs?: number;
}

/** A failure worth retrying, thrown inside `send` and caught by its loop. */
class Retryable extends Error {
  constructor(readonly failure: Failure) {
    super(failure.reason);
  }
}

export class Upstream {
  /** Requests sent again after a failure, over this client's life. */
  retries = 0;

  constructor(private readonly opts: UpstreamOptions) {}

  get url(): string {
    return this.opts.url;
  }

  /** GET `path` (JSON); `attempts` 1 asks once, without retries. */
  get(path: string, opts: { attempts?: number; timeoutMs?: number } = {}): Promise<unknown> {
    return this.send(path, { method: "GET" }, (res) => readJson(res), {
      maxRetries: (opts.attempts ?? this.opts.retries + 1) - 1,
      timeoutMs: opts.timeoutMs,
    });
  }

  /** POST a JSON body, read a JSON answer. */
  post(path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.send(path, jsonInit(body), (res) => readJson(res), { signal });
  }

  /**
   * POST a JSON body, read the answer as server-sent events (`data: {...}` until `data: [DONE]`). Once an
   * event has been handed on, a failure is not retried (what was streamed cannot be taken back).
   */
  stream(path: string, body: unknown, onEvent: SseHandler, signal?: AbortSignal): Promise<void> {
    let delivered = false;
    return this.send(
      path,
      jsonInit(body),
      (res, touch) =>
        readEvents(res, touch, (data) => {
          delivered = true;
          onEvent(data);
        }),
      { signal, retryable: () => !delivered },
    );
  }

  private async send<T>(
    path: string,
    init: RequestInit,
    read: (res: Response, touch: () => void) => Promise<T>,
    opts: { signal?: AbortSignal; maxRetries?: number; timeoutMs?: number; retryable?: () => boolean },
  ): Promise<T> {
    const url = `${this.opts.url}${path}`;
    const maxRetries = opts.maxRetries ?? this.opts.retries;
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs;
    const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
    if (this.opts.apiKey !== undefined) headers.authorization = `Bearer ${this.opts.apiKey}`;
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw new AbortedError();
      const ctrl = new AbortController();
      let timedOut = false;
      let timer: NodeJS.Timeout | undefined;
      const touch = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          timedOut = true;
          ctrl.abort();
        }, timeoutMs);
      };
      const cancel = () => ctrl.abort();
      opts.signal?.addEventListener("abort", cancel, { once: true });
      let failure: Failure;
      try {
        touch();
        const res = await fetch(url, { ...init, headers, signal: ctrl.signal });
        touch();
        if (!res.ok) throw await answerFailure(url, res);
        return await read(res, touch);
      } catch (err) {
        if (opts.signal?.aborted) throw new AbortedError();
        if (err instanceof Retryable) failure = err.failure;
        else if (timedOut) failure = { reason: `no answer for ${timeoutMs / 1000} s`, status: null };
        else if (err instanceof SteerlmError) throw err;
        else failure = { reason: connectionProblem(err), status: null };
      } finally {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", cancel);
      }
      const retryable = opts.retryable?.() ?? true;
      if (attempt > maxRetries || !retryable) {
        const tries = attempt > 1 ? ` (after ${attempt} attempts)` : "";
        throw new UpstreamError(
          url,
          `${failure.reason}${retryable ? tries : " in the middle of a stream"}`,
          failure.status,
          failure.status === null
            ? "is the engine running there? (the settings retries and engineTimeout say how long to wait for it)"
            : undefined,
        );
      }
      const delayMs = failure.retryAfterMs ?? backoffMs(attempt);
      this.retries++;
      this.opts.onRetry?.({ attempt, delayMs, reason: failure.reason });
      await sleep(delayMs, opts.signal);
    }
  }
}

function jsonInit(body: unknown): RequestInit {
  return { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
}

/** A non-2xx answer: Retryable for 429 and 5xx, else an UpstreamError with the engine's message. */
async function answerFailure(url: string, res: Response): Promise<Error> {
  const text = await res.text().catch(() => "");
  let message = text.trim().slice(0, 500);
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    const m = typeof body.error === "string" ? body.error : (body.error?.message ?? body.message);
    if (typeof m === "string") message = m;
  } catch {
    // not JSON: the text itself says it
  }
  const reason = `HTTP ${res.status}${message ? `: ${message}` : ""}`;
  if (res.status === 429 || res.status >= 500)
    return new Retryable({
      reason,
      status: res.status,
      retryAfterMs: retryAfter(res.headers.get("retry-after")),
    });
  return new UpstreamError(url, `the engine refused the request: ${reason}`, res.status);
}

/** `Retry-After` in ms: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfter(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}

function connectionProblem(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const what = cause?.code ?? cause?.message ?? (err as Error).message ?? String(err);
  return `cannot reach the engine (${what})`;
}

async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Retryable({ reason: `the answer is not JSON: ${text.slice(0, 200)}`, status: res.status });
  }
}

/** Server-sent events: `data:` lines, events separated by a blank line, `[DONE]` ends the stream. */
async function readEvents(res: Response, touch: () => void, onEvent: SseHandler): Promise<void> {
  if (res.body === null) throw new Retryable({ reason: "an empty stream", status: res.status });
  const decoder = new TextDecoder();
  let buffer = "";
  // line ends (CRLF, CR, LF) made LF on the text as it accumulates: a CR that ends a chunk waits for the
  // next one, which may start with its LF
  let pending = "";
  const chunks = res.body as unknown as AsyncIterable<Uint8Array>;
  // the stream's text, and then its end, which settles a CR it ended with
  async function* texts() {
    for await (const chunk of chunks) {
      touch();
      yield decoder.decode(chunk, { stream: true });
    }
    yield null;
  }
  for await (const text of texts()) {
    pending += text ?? "";
    const keep = text !== null && pending.endsWith("\r") ? 1 : 0;
    buffer += pending.slice(0, pending.length - keep).replace(/\r\n?/g, "\n");
    pending = pending.slice(pending.length - keep);
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (data === "") continue;
      if (data === "[DONE]") return;
      let value: unknown;
      try {
        value = JSON.parse(data);
      } catch {
        throw new Retryable({ reason: `an event is not JSON: ${data.slice(0, 200)}`, status: res.status });
      }
      const error = (value as { error?: { message?: unknown } }).error;
      if (error !== undefined)
        throw new Retryable({
          reason: `the stream ended with an error: ${String(error?.message ?? error)}`,
          status: 500,
        });
      onEvent(value);
    }
  }
  throw new Retryable({ reason: "the stream ended without [DONE]", status: null });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", abort);
      resolve();
    }
    function abort() {
      clearTimeout(timer);
      reject(new AbortedError());
    }
    signal?.addEventListener("abort", abort, { once: true });
  });
}
