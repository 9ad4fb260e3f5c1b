import type { ServerResponse } from "node:http";
import { AttributeError } from "../data/attributes.js";
import { ContextLengthError } from "../inference/completion.js";
import { BusyError } from "../inference/pool.js";
import { apiField } from "../inference/sampling.js";
import { UpstreamError } from "../inference/upstream.js";
import { InputError, placeName, SteerlmError } from "../util/errors.js";
import { log } from "../util/log.js";

export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error";

/**
 * The one error type of the HTTP layer. Handlers throw it (or library errors, mapped below); `sendError`
 * turns it into an OpenAI-style body `{"error": {message, type, param, code}}` in one place.
 */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    // A client's error: its stack is never shown, and capturing one is most of what a refusal costs.
    const depth = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = depth;
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new HttpError(400, message, "invalid_request_error", param, code);

/** Any error -> the HttpError the client sees. Unknown errors are our bugs: 500, logged with a stack. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof BusyError) {
    return new HttpError(429, err.message, "rate_limit_error", null, "server_busy", { "retry-after": "1" });
  }
  if (err instanceof UpstreamError) {
    // In front of an engine: a request it refused is the client's; an engine that fails is a bad gateway.
    log.warn(`serve: ${err.message}`);
    if (err.status === 400 || err.status === 413 || err.status === 422)
      return badRequest(err.what, null, "upstream_refused");
    return new HttpError(502, `the engine failed: ${err.what}`, "server_error", null, "upstream_error");
  }
  if (err instanceof InputError) {
    // Library errors name their setting (`maxTokens`); the client knows it as a request field (`max_tokens`).
    const { setting } = err.place;
    const shown = setting === undefined ? err : err.showSettingAs(apiField(setting));
    const code =
      err instanceof ContextLengthError
        ? "context_length_exceeded"
        : err instanceof AttributeError
          ? err.code
          : null;
    return badRequest(
      shown.hint ? `${shown.message} (${shown.hint})` : shown.message,
      placeName(shown.place) ?? null,
      code,
    );
  }
  if (err instanceof SteerlmError) return badRequest(err.message);
  log.error(`serve: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return new HttpError(500, "internal server error", "server_error");
}

export function errorBody(err: HttpError): { error: Record<string, string | null> } {
  return { error: { message: err.message, type: err.type, param: err.param, code: err.code } };
}

/**
 * Answers with `err` as the client sees it (toHttpError). With `end: false` the whole response is written but
 * left open, for a caller that still has to read the request before the connection may close.
 */
export function sendError(res: ServerResponse, err: unknown, opts: { end?: boolean } = {}): void {
  const e = toHttpError(err);
  if (res.headersSent) {
    // Mid-stream: the status is gone already; an SSE error event is all the client can still get.
    if (!res.writableEnded) {
      res.write(`data: ${JSON.stringify(errorBody(e))}\n\n`);
      res.end();
    }
    return;
  }
  const body = JSON.stringify(errorBody(e));
  res.writeHead(e.status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    ...e.headers,
  });
  if (opts.end === false) res.write(body);
  else res.end(body);
}
