import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { badRequest, HttpError, sendError } from "./errors.js";

/** How much of an oversized body is read (and dropped) after the 413, in multiples of the limit. */
const DRAIN_FACTOR = 16;

/** Deepest nesting of arrays and objects a request body may have (OpenAI's bodies need 4). */
export const MAX_JSON_DEPTH = 64;

/**
 * Reads a JSON body of at most `limit` bytes; 400 for anything that is not JSON. A body over the limit is
 * answered 413 on `res` as soon as it is known to be (from content-length before a byte is read, else when
 * the count passes the limit), and the HttpError thrown after it finds the response ended.
 */
export async function readJson(req: IncomingMessage, res: ServerResponse, limit: number): Promise<unknown> {
  const type = req.headers["content-type"] ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw badRequest(
      `expected content-type application/json, got ${JSON.stringify(type)}`,
      null,
      "bad_content_type",
    );
  }
  let refusal: HttpError | undefined; // set once the body is known to be over the limit
  // The whole 413 goes out at once, so a client that reads while it sends stops sending; the response ends
  // (and the connection closes) only once the body is in, so one that sends everything first can still
  // read it. What comes after the limit is dropped, and the connection is cut past DRAIN_FACTOR * limit.
  const refuse = () => {
    refusal = tooLarge(limit);
    sendError(res, refusal, { end: false });
  };
  if (Number(req.headers["content-length"] ?? 0) > limit) refuse();
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (refusal) {
        if (size > DRAIN_FACTOR * limit) req.destroy();
      } else if (size > limit) refuse();
      else chunks.push(chunk);
    }
  } catch {
    if (!refusal) throw badRequest("the request body was cut off", null, "incomplete_body");
  }
  if (refusal) {
    res.end();
    throw refusal;
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "")
    throw badRequest("the request body is empty; expected a JSON object", null, "empty_body");
  if (nestedDeeper(text, MAX_JSON_DEPTH)) {
    throw badRequest(
      `the request body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels`,
      null,
      "json_too_deep",
    );
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badRequest(`the request body is not valid JSON: ${(err as Error).message}`, null, "invalid_json");
  }
}

/** The characters that open or close a string, an array or an object, or escape inside a string. */
const STRUCTURE = /["\\[\]{}]/g;

/**
 * Whether a JSON text nests deeper than `limit`, found by scanning brackets outside strings: a hostile body
 * is refused before any recursive code (parsing, validation, error messages) walks it. The regex jumps
 * from one structural character to the next: a long prompt is passed over in one native scan.
 */
function nestedDeeper(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  STRUCTURE.lastIndex = 0;
  for (let m = STRUCTURE.exec(text); m !== null; m = STRUCTURE.exec(text)) {
    const c = text.charCodeAt(m.index);
    if (inString) {
      if (c === 0x5c)
        STRUCTURE.lastIndex = m.index + 2; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

function tooLarge(limit: number): HttpError {
  return new HttpError(
    413,
    `request body larger than ${limit} bytes`,
    "invalid_request_error",
    null,
    "request_too_large",
    { connection: "close" },
  );
}

/** Bearer token check on /v1 routes; constant-time comparison so the key cannot be guessed byte by byte. */
export function checkApiKey(req: IncomingMessage, apiKey: string | undefined): void {
  if (apiKey === undefined) return;
  const header = req.headers.authorization ?? "";
  const match = /^Bearer\s+(.+)$/i.exec(header);
  const given = Buffer.from(match?.[1]?.trim() ?? "");
  const want = Buffer.from(apiKey);
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    throw new HttpError(
      401,
      match ? "incorrect API key provided" : "missing API key: send the header Authorization: Bearer <key>",
      "authentication_error",
      null,
      "invalid_api_key",
      { "www-authenticate": "Bearer" },
    );
  }
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

/**
 * Server-sent events as OpenAI streams them: `data: <json>\n\n`, ending in `data: [DONE]`. Events go out
 * corked until the second turn of the event loop: a token's write (a syscall) then runs while the next token
 * is computed on llama.cpp's thread, not before it is asked for. node-llama-cpp hands the next decode to its
 * thread in a setImmediate of its own, queued after the token's event (its "nextCycle" batching), so the
 * uncork waits one turn more. Ending the response flushes everything, in order, an error event written by
 * sendError included.
 */
export class SseWriter {
  private corked = false;

  constructor(private readonly res: ServerResponse) {}

  open(): void {
    if (this.res.headersSent) return;
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
  }

  send(value: unknown): void {
    this.open();
    if (this.res.writableEnded || this.res.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.res.cork();
      setImmediate(() =>
        setImmediate(() => {
          this.corked = false;
          this.res.uncork();
        }),
      );
    }
    this.res.write(`data: ${JSON.stringify(value)}\n\n`);
  }

  done(): void {
    this.open();
    if (!this.res.writableEnded) this.res.end("data: [DONE]\n\n");
  }
}
