import { type AttributeSchema, type AttributeValues, parseAttributes } from "../data/attributes.js";
import { type ContrastMode, checkContrast, checkGuidance } from "../inference/mixture.js";
import { checkSamplingValue, SAMPLING_SETTINGS, type SamplingName } from "../inference/sampling.js";
import type { ChatMessage } from "../inference/vocab.js";
import { badRequest, HttpError } from "./errors.js";

/** Request bodies -> typed options. Every problem is a 400 naming the offending field (`param`). */

export interface Limits {
  /** Upper bound on max_tokens; larger requests are capped to it. */
  maxTokensCap: number;
  /** Id of the served model; another id in `model` is a 404 as in OpenAI's API. */
  modelId: string;
}

export interface SamplingRequest {
  maxTokens?: number;
  /** Token id -> bias; the ids' and biases' ranges are the model's to check. */
  logitBias?: Map<number, number>;
  temperature: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

export interface ChatRequest extends SamplingRequest {
  messages: ChatMessage[];
  /** As given (fractions allowed); the model fills in the defaults. */
  attributes: AttributeValues;
  guidance?: number;
  contrast?: ContrastMode;
  returnPrompt: boolean;
}

export interface CompletionRequest extends SamplingRequest {
  /** Text, or token ids (taken as they are, control ids included: the caller tokenized deliberately). */
  prompt: string | number[];
  specialTokens: boolean;
  returnPrompt: boolean;
  /** vLLM's `return_token_ids`: the generated ids in the choice (`token_ids`). */
  returnTokenIds: boolean;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

function expect(ok: boolean, param: string, what: string, v: unknown): void {
  if (!ok) throw badRequest(`${param}: expected ${what}, got ${typeName(v)} ${JSON.stringify(v)}`, param);
}

/** A sampling field of the request, checked against the library's table; `key` may be an alias. */
function num(body: Obj, name: SamplingName, key: string = SAMPLING_SETTINGS[name].api): number | undefined {
  return checkSamplingValue(name, body[key] ?? undefined, { field: key });
}

function bool(obj: Obj, key: string, param = key): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  expect(typeof v === "boolean", param, "a boolean", v);
  return v as boolean;
}

/** OpenAI fields we accept only at the value that means "feature off". */
const NEUTRAL: Record<string, (v: unknown) => boolean> = {
  n: (v) => v === 1,
  presence_penalty: (v) => v === 0,
  frequency_penalty: (v) => v === 0,
  logprobs: (v) => v === false,
  echo: (v) => v === false,
  user: (v) => typeof v === "string",
  stream_options: (v) => isObj(v),
  // what OpenAI clients send by default or to say "none" (null is taken for each of these too)
  top_logprobs: (v) => v === 0,
  response_format: (v) => isObj(v) && v.type === "text",
  tools: (v) => Array.isArray(v) && v.length === 0,
  tool_choice: (v) => v === "none",
  functions: (v) => Array.isArray(v) && v.length === 0,
  function_call: (v) => v === "none",
  parallel_tool_calls: (v) => typeof v === "boolean",
  store: (v) => v === false,
  metadata: (v) => isObj(v),
  service_tier: (v) => v === "auto" || v === "default",
};

const SAMPLING_KEYS = [
  "model",
  "max_tokens",
  "max_completion_tokens",
  "temperature",
  "top_p",
  "top_k",
  "seed",
  "stop",
  "stream",
  "logit_bias",
  "steerlm",
];

function checkKeys(body: Obj, own: readonly string[]): void {
  for (const [key, v] of Object.entries(body)) {
    if (own.includes(key) || SAMPLING_KEYS.includes(key)) continue;
    const neutral = NEUTRAL[key];
    if (!neutral) throw badRequest(`unrecognized request argument: ${key}`, key, "unknown_parameter");
    if (v !== null && !neutral(v)) {
      throw badRequest(
        `${key}=${JSON.stringify(v)} is not supported by this server`,
        key,
        "unsupported_value",
      );
    }
  }
}

function sampling(body: Obj, limits: Limits): SamplingRequest {
  const model = body.model;
  if (model !== undefined) {
    expect(typeof model === "string", "model", "a string", model);
    if (model !== limits.modelId) {
      throw new HttpError(
        404,
        `the model "${String(model)}" does not exist; this server serves "${limits.modelId}"`,
        "invalid_request_error",
        "model",
        "model_not_found",
      );
    }
  }
  const maxTokens = num(body, "maxTokens", "max_completion_tokens") ?? num(body, "maxTokens");
  let stop: string[] = [];
  const s = body.stop;
  if (typeof s === "string") stop = [s];
  else if (Array.isArray(s)) stop = s as string[];
  else expect(s === undefined || s === null, "stop", "a string or an array of strings", s);
  expect(stop.length <= 4, "stop", "at most 4 stop strings", s);
  for (const x of stop) expect(typeof x === "string" && x !== "", "stop", "non-empty strings", x);
  const streamOptions = body.stream_options;
  const stream = bool(body, "stream") ?? false;
  const includeUsage = isObj(streamOptions)
    ? (bool(streamOptions, "include_usage", "stream_options.include_usage") ?? false)
    : false;
  return {
    maxTokens: maxTokens === undefined ? undefined : Math.min(maxTokens, limits.maxTokensCap),
    temperature: num(body, "temperature") ?? SAMPLING_SETTINGS.temperature.apiDefault,
    topP: num(body, "topP"),
    topK: num(body, "topK"),
    seed: num(body, "seed"),
    logitBias: logitBias(body.logit_bias),
    stop,
    stream,
    includeUsage,
  };
}

/** OpenAI's `logit_bias`: an object of token id (a decimal string) -> a number (its range is the library's to check). */
function logitBias(v: unknown): Map<number, number> | undefined {
  if (v === undefined || v === null) return undefined;
  expect(isObj(v), "logit_bias", "an object of token id -> bias", v);
  const out = new Map<number, number>();
  for (const [key, bias] of Object.entries(v as Obj)) {
    const param = `logit_bias.${key}`;
    expect(/^(0|[1-9]\d*)$/.test(key), param, "a token id (a whole number) as the key", key);
    expect(typeof bias === "number", param, "a number", bias);
    out.set(Number(key), bias as number);
  }
  return out.size > 0 ? out : undefined;
}

function steerlmField(body: Obj, allowed: readonly string[]): Obj {
  const v = body.steerlm;
  if (v === undefined || v === null) return {};
  expect(isObj(v), "steerlm", "an object", v);
  for (const key of Object.keys(v as Obj)) {
    if (!allowed.includes(key)) {
      throw badRequest(`unknown steerlm field "${key}" (known: ${allowed.join(", ")})`, `steerlm.${key}`);
    }
  }
  return v as Obj;
}

const ROLES = new Set(["system", "developer", "user", "assistant"]);

/** OpenAI-style messages at `param`; the last one must come from `last`. */
function messageList(v: unknown, param: string, last: ChatMessage["role"]): ChatMessage[] {
  expect(Array.isArray(v) && v.length > 0, param, "a non-empty array", v);
  const out = (v as unknown[]).map((m, i): ChatMessage => {
    const at = `${param}[${i}]`;
    expect(isObj(m), at, "an object", m);
    const { role, content } = m as Obj;
    expect(typeof role === "string" && ROLES.has(role), `${at}.role`, [...ROLES].join(", "), role);
    return {
      role: role === "developer" ? "system" : (role as ChatMessage["role"]),
      content: text(content, at),
    };
  });
  if (out.at(-1)?.role !== last) {
    throw badRequest(`the last message must come from the ${last}`, `${param}[${out.length - 1}].role`);
  }
  return out;
}

/** A message's content: a string, or OpenAI's array of `{type: "text", text}` parts. */
function text(content: unknown, param: string): string {
  if (typeof content === "string") return content;
  const what = 'a string or an array of {"type": "text", "text": string}';
  expect(Array.isArray(content), `${param}.content`, what, content);
  return (content as unknown[])
    .map((p, j) => {
      const ok = isObj(p) && p.type === "text" && typeof p.text === "string";
      expect(ok, `${param}.content[${j}]`, what, p);
      return (p as { text: string }).text;
    })
    .join("");
}

export function parseChatRequest(body: unknown, schema: AttributeSchema, limits: Limits): ChatRequest {
  expect(isObj(body), "body", "a JSON object", body);
  const b = body as Obj;
  checkKeys(b, ["messages"]);
  const steer = steerlmField(b, ["attributes", "guidance", "contrast", "return_prompt"]);
  return {
    ...sampling(b, limits),
    messages: messageList(b.messages, "messages", "user"),
    attributes: parseAttributes(
      schema,
      steer.attributes ?? {},
      { field: "steerlm.attributes" },
      { fractions: true },
    ),
    guidance: checkGuidance(steer.guidance ?? undefined, { field: "steerlm.guidance" }),
    contrast: checkContrast(steer.contrast ?? undefined, { field: "steerlm.contrast" }),
    returnPrompt: bool(steer, "return_prompt", "steerlm.return_prompt") ?? false,
  };
}

/** A token id's shape; whether it is in the vocabulary is the model's to say. */
const isTokenId = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

export function parseCompletionRequest(body: unknown, limits: Limits): CompletionRequest {
  expect(isObj(body), "body", "a JSON object", body);
  const b = body as Obj;
  checkKeys(b, ["prompt", "return_token_ids"]);
  const steer = steerlmField(b, ["special_tokens", "return_prompt"]);
  let prompt = b.prompt;
  // OpenAI's shapes for one prompt: text, token ids, or a batch of one of either.
  if (Array.isArray(prompt) && prompt.length === 1 && !isTokenId(prompt[0])) prompt = prompt[0];
  const ids = Array.isArray(prompt) && prompt.length > 0 && prompt.every(isTokenId);
  expect(
    typeof prompt === "string" || ids,
    "prompt",
    "a string or an array of token ids (or an array of one of either)",
    b.prompt,
  );
  return {
    ...sampling(b, limits),
    prompt: prompt as string | number[],
    specialTokens: bool(steer, "special_tokens", "steerlm.special_tokens") ?? false,
    returnPrompt: bool(steer, "return_prompt", "steerlm.return_prompt") ?? false,
    returnTokenIds: bool(b, "return_token_ids") ?? false,
  };
}

export interface ScoreRequest {
  /** Each conversation ends with the assistant reply to score. */
  conversations: ChatMessage[][];
  /** Where each conversation came from in the body (`messages`, `conversations[3]`), for errors. */
  params: string[];
}

/** Most conversations one scoring request may carry (each is a forward pass of the APM or more). */
export const MAX_SCORE_CONVERSATIONS = 256;

/** `{"messages": [...]}` (one conversation) or `{"conversations": [[...], ...]}` (a batch). */
export function parseScoreRequest(body: unknown): ScoreRequest {
  expect(isObj(body), "body", "a JSON object", body);
  const b = body as Obj;
  for (const key of Object.keys(b)) {
    if (key !== "messages" && key !== "conversations")
      throw badRequest(`unrecognized request argument: ${key}`, key, "unknown_parameter");
  }
  if ((b.messages === undefined) === (b.conversations === undefined))
    throw badRequest('expected either "messages" or "conversations"', null);
  if (b.messages !== undefined)
    return { conversations: [messageList(b.messages, "messages", "assistant")], params: ["messages"] };
  const list = b.conversations;
  expect(Array.isArray(list) && list.length > 0, "conversations", "a non-empty array", list);
  const n = (list as unknown[]).length;
  expect(
    n <= MAX_SCORE_CONVERSATIONS,
    "conversations",
    `at most ${MAX_SCORE_CONVERSATIONS} conversations`,
    n,
  );
  const params = (list as unknown[]).map((_, i) => `conversations[${i}]`);
  return {
    conversations: (list as unknown[]).map((c, i) => messageList(c, params[i]!, "assistant")),
    params,
  };
}
