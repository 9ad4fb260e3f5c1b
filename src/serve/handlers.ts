import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { type ApmScorer, chatRecord } from "../apm/score.js";
import type { AttributeValues } from "../data/attributes.js";
import type { DataRecord } from "../data/record.js";
import type { Generator } from "../inference/generator.js";
import type { GenerateResult, SamplingOptions } from "../inference/model.js";
import type { SlotPool } from "../inference/pool.js";
import type { PromptConditioning, PromptInfo } from "../inference/vocab.js";
import { InputError } from "../util/errors.js";
import { badRequest } from "./errors.js";
import { SseWriter, sendJson } from "./http.js";
import type { ChatRequest, CompletionRequest, SamplingRequest, ScoreRequest } from "./validate.js";

/** The OpenAI response shapes of /v1/chat/completions and /v1/completions, streaming and not. */

interface Call {
  model: Generator;
  req: IncomingMessage;
  res: ServerResponse;
  /** The configured cap; also the default when a request sets no max_tokens. */
  maxTokensCap: number;
}

/** Aborts generation when the client goes away before the response is complete: its slot comes free. */
function disconnectSignal(res: ServerResponse): AbortSignal {
  const ctrl = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) ctrl.abort();
  });
  return ctrl.signal;
}

function samplingOptions(r: SamplingRequest, call: Call, signal: AbortSignal): SamplingOptions {
  return {
    maxTokens: r.maxTokens,
    maxTokensDefault: call.maxTokensCap,
    temperature: r.temperature,
    topP: r.topP,
    topK: r.topK,
    seed: r.seed,
    stop: r.stop,
    logitBias: r.logitBias,
    signal,
  };
}

const usage = (r: GenerateResult) => ({
  prompt_tokens: r.usage.promptTokens,
  completion_tokens: r.usage.completionTokens,
  total_tokens: r.usage.totalTokens,
});

const promptField = (p: PromptInfo) => ({
  text: p.text,
  token_ids: p.tokens.map(Number),
  control_tokens: p.controlTokens,
  ...(p.parts ? { parts: p.parts } : {}),
});

/**
 * The `steerlm` field of chat responses: the effective attributes, the conditionings a guided or
 * fractional reply combined (value string and weight each), and the prompt when asked for.
 */
const steerField = (
  s: { attributes: AttributeValues; values: string; conditionings?: PromptConditioning[] },
  prompt?: PromptInfo,
) => ({
  attributes: s.attributes,
  values: s.values,
  ...(s.conditionings
    ? { conditionings: s.conditionings.map(({ values, weight }) => ({ values, weight })) }
    : {}),
  ...(prompt ? { prompt: promptField(prompt) } : {}),
});

/**
 * What the responses to one request share: `head(object)` gives OpenAI's id, object, created and model
 * fields; `signal` fires when the client goes away.
 */
function respond(call: Call, idPrefix: string) {
  const id = `${idPrefix}-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const head = (object: string) => ({ id, object, created, model: call.model.id });
  return { head, signal: disconnectSignal(call.res) };
}

/** OpenAI knows no "abort": a response cut short by its own client is never seen anyway. */
const finish = (r: GenerateResult) => (r.finishReason === "abort" ? "stop" : r.finishReason);

export interface ChatCall extends Call {
  request: ChatRequest;
}

export async function chatCompletion(call: ChatCall): Promise<void> {
  const { model, res, request: r } = call;
  const { head, signal } = respond(call, "chatcmpl");
  const base = {
    messages: r.messages,
    attributes: r.attributes,
    guidance: r.guidance,
    contrast: r.contrast,
    ...samplingOptions(r, call, signal),
  };

  if (!r.stream) {
    const g = await model.generate(base);
    if (signal.aborted) return;
    sendJson(res, 200, {
      ...head("chat.completion"),
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: g.text },
          finish_reason: finish(g),
          logprobs: null,
        },
      ],
      usage: usage(g),
      steerlm: steerField(g, r.returnPrompt ? g.prompt : undefined),
    });
    return;
  }

  const sse = new SseWriter(res);
  const chunk = (delta: object, finishReason: string | null, extra: object = {}) => ({
    ...head("chat.completion.chunk"),
    choices: [{ index: 0, delta, finish_reason: finishReason, logprobs: null }],
    ...extra,
  });
  // The rendered prompt goes out with the first chunk so a UI can show it before the reply streams.
  const rendered = model.renderPrompt(base);
  const g = await model.generate({
    ...base,
    prompt: rendered,
    onStart: () =>
      sse.send(
        chunk({ role: "assistant", content: "" }, null, {
          steerlm: steerField(rendered, r.returnPrompt ? rendered : undefined),
        }),
      ),
    onToken: (text) => sse.send(chunk({ content: text }, null)),
  });
  if (signal.aborted) return;
  // OpenAI's stream_options.include_usage puts usage in a last chunk of its own, and only there (clients such
  // as LangChain add up every usage they see); without it, the finish chunk carries it for the page.
  sse.send(chunk({}, finish(g), { ...(r.includeUsage ? {} : { usage: usage(g) }), steerlm: steerField(g) }));
  if (r.includeUsage) sse.send({ ...head("chat.completion.chunk"), choices: [], usage: usage(g) });
  sse.done();
}

export interface CompletionCall extends Call {
  request: CompletionRequest;
}

export async function completion(call: CompletionCall): Promise<void> {
  const { model, res, request: r } = call;
  const { head, signal } = respond(call, "cmpl");
  const opts = { prompt: r.prompt, specialTokens: r.specialTokens, ...samplingOptions(r, call, signal) };
  const extra = (g: GenerateResult) => (r.returnPrompt ? { steerlm: { prompt: promptField(g.prompt) } } : {});
  // vLLM's spelling: the generated ids, for a client that decodes them itself (steerlm's remote generator);
  // left out where they are unknown (in front of an engine that sends text only), never an empty list
  const ids = (g: GenerateResult) =>
    r.returnTokenIds && g.tokens.length === g.usage.completionTokens ? { token_ids: g.tokens } : {};

  if (!r.stream) {
    const g = await model.complete(opts);
    if (signal.aborted) return;
    sendJson(res, 200, {
      ...head("text_completion"),
      choices: [{ index: 0, text: g.text, finish_reason: finish(g), logprobs: null, ...ids(g) }],
      usage: usage(g),
      ...extra(g),
    });
    return;
  }
  const sse = new SseWriter(res);
  const chunk = (text: string, finishReason: string | null, more: object = {}, choice: object = {}) => ({
    ...head("text_completion"),
    choices: [{ index: 0, text, finish_reason: finishReason, logprobs: null, ...choice }],
    ...more,
  });
  const g = await model.complete({
    ...opts,
    onStart: () => sse.open(),
    onToken: (text) => sse.send(chunk(text, null)),
  });
  if (signal.aborted) return;
  // The ids come whole with the last chunk: the text chunks hold text back for stop strings, ids cannot be.
  sse.send(chunk("", finish(g), { usage: usage(g), ...extra(g) }, ids(g)));
  sse.done();
}

export interface ScoreCall {
  /** The one APM, behind a pool of one slot: requests take turns, and a full queue is a 429. */
  scorer: SlotPool<ApmScorer>;
  schema: ApmScorer["schema"];
  res: ServerResponse;
  request: ScoreRequest;
}

/**
 * POST /v1/steerlm/score: each conversation's last (assistant) message scored by the APM, as `steerlm
 * annotate` labels it: `{"scores": [{"attributes": {name: raw}, "labels": {name: int}}, ...]}`.
 */
export async function scoreConversations(call: ScoreCall): Promise<void> {
  const { request: r, res } = call;
  const records = r.conversations.map((messages, i): DataRecord => {
    try {
      return chatRecord(messages, call.schema);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      // The chat importer names `messages[j]...`; the client knows the conversation by its place in the body.
      const param = (err.place.field ?? "messages").replace(/^messages/, r.params[i]!);
      throw badRequest(`${param}: ${err.what}`, param);
    }
  });
  const signal = disconnectSignal(res);
  const apm = await call.scorer.acquire(signal);
  try {
    const scores = await apm.score(records);
    if (!signal.aborted) sendJson(res, 200, { object: "steerlm.scores", scores });
  } finally {
    call.scorer.release(apm);
  }
}
