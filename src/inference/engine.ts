import { type AttributeSchema, validateSchema } from "../data/attributes.js";
import { log } from "../util/log.js";
import { checkNumber, type NumberRange } from "../util/numbers.js";
import type { UpstreamState } from "./generator.js";
import { parseBackendUrl, type SseHandler, Upstream, UpstreamError } from "./upstream.js";

/**
 * An OpenAI-compatible engine steerlm sends token ids to: what it serves, how it is spoken to, and the
 * requests steerlm makes of it: a completion (RemoteGenerator), the greedy choice of one token among a
 * few (the generative APM's constrained decoding, src/apm/generative.ts), and, of a `steerlm serve --apm`,
 * the APM's scores of conversations (src/apm/score.ts).
 */

/** The remote settings, once: range, default and help (the CLI declares its flags from them). */
// biome-ignore format: one setting per line reads as a table
export const REMOTE_SETTINGS = {
  concurrency: { range: { integer: true, min: 1 }, default: 4, help: "requests in flight to the engine" },
  retries: { range: { integer: true, min: 0, max: 100 }, default: 5, help: "times a failed request is sent again (429, 5xx, connection errors, timeouts), with exponential backoff" },
  engineTimeout: { range: { above: 0 }, default: 600, help: "seconds the engine may stay silent before a request fails (and is retried)" },
} as const satisfies Record<string, { range: NumberRange; default: number; help: string }>;

/** A remote setting's value, or its default, checked against its range (errors name the setting). */
export function remoteSetting(name: keyof typeof REMOTE_SETTINGS, value: number | undefined): number {
  const s = REMOTE_SETTINGS[name];
  return checkNumber(value ?? s.default, s.range, { setting: name });
}

export interface EngineOptions {
  /** The engine's URL, with or without `/v1`. */
  backend: string;
  /** Default 5. */
  retries?: number;
  /** Seconds; default 600. */
  engineTimeout?: number;
  /** Bearer token of the engine. */
  apiKey?: string;
}

/**
 * How an engine is spoken to, from the `owned_by` of its `/v1/models`: `steerlm` and `openai` (vLLM,
 * SGLang) return the generated ids (`return_token_ids`), `llama.cpp` (llama-server) returns text only.
 */
export type Dialect = "steerlm" | "llama.cpp" | "openai";

interface ModelCard {
  id: string;
  owned_by?: string;
  max_model_len?: number;
}

/** One choice of a completion (or a chunk of a stream), as the engines send it. */
export interface Choice {
  text?: string;
  token_ids?: number[];
  finish_reason?: string | null;
}

export interface CompletionBody {
  choices?: Choice[];
  usage?: { completion_tokens?: number } | null;
}

/** What a `steerlm serve --apm` scores with: GET /v1/steerlm/schema's `apm`. */
export interface EngineApm {
  /** The attributes it predicts, in output order. */
  schema: AttributeSchema;
  /** SHA-256 of its checkpoint file. */
  sha256: string;
}

/** One conversation's score from POST /v1/steerlm/score: raw predictions and the labels annotate writes. */
export interface EngineScore {
  attributes: Record<string, number>;
  labels: Record<string, number>;
}

/** The bias that makes the engine's greedy choice one of the candidates: OpenAI's largest. */
const CHOICE_BIAS = 100;

export class Engine {
  private constructor(
    readonly client: Upstream,
    readonly dialect: Dialect,
    /** The engine's name for the model, sent as `model`. */
    readonly model: string,
    /** Its context length, where it says it. */
    readonly contextSize: number | undefined,
  ) {}

  /** Asks the engine what it serves (retrying while it starts up). */
  static async connect(opts: EngineOptions): Promise<Engine> {
    const url = parseBackendUrl(opts.backend, { setting: "backend" });
    const retries = remoteSetting("retries", opts.retries);
    const client = new Upstream({
      url,
      apiKey: opts.apiKey,
      retries,
      timeoutMs: remoteSetting("engineTimeout", opts.engineTimeout) * 1000,
      onRetry: ({ attempt, delayMs, reason }) =>
        log.warn(`${url}: ${reason}; retry ${attempt} of ${retries} in ${Math.round(delayMs)} ms`),
    });
    const card = await modelCard(client);
    const dialect: Dialect =
      card.owned_by === "steerlm" ? "steerlm" : card.owned_by === "llamacpp" ? "llama.cpp" : "openai";
    const contextSize = await engineContext(client, dialect, card);
    log.debug(`${url}: ${dialect} engine serving ${card.id}, context ${contextSize ?? "not said"}`);
    return new Engine(client, dialect, card.id, contextSize);
  }

  get url(): string {
    return this.client.url;
  }

  /** Requests sent again after a failure so far. */
  get retries(): number {
    return this.client.retries;
  }

  /** POST /v1/completions; with `onEvent`, streamed (each event handed on as it comes). */
  async complete(
    body: Record<string, unknown>,
    opts: { signal?: AbortSignal; onEvent?: SseHandler } = {},
  ): Promise<CompletionBody | undefined> {
    const full = { model: this.model, ...body };
    if (opts.onEvent === undefined)
      return (await this.client.post("/v1/completions", full, opts.signal)) as CompletionBody;
    await this.client.stream("/v1/completions", { ...full, stream: true }, opts.onEvent, opts.signal);
    return undefined;
  }

  /**
   * The engine's greedy next token after `prompt` among `candidates` (ids): every candidate gets the
   * same large logit bias, so the engine's argmax is the argmax over the candidates (up to float ties).
   * `text` spells a candidate, for an engine that answers with text.
   */
  async choose(
    prompt: readonly number[],
    candidates: readonly number[],
    text: (id: number) => string,
  ): Promise<number> {
    const reply = await this.complete({
      prompt,
      max_tokens: 1,
      temperature: 0,
      logit_bias: Object.fromEntries(candidates.map((id) => [String(id), CHOICE_BIAS])),
      ...(this.dialect === "llama.cpp" ? {} : { return_token_ids: true }),
    });
    const choice = reply?.choices?.[0];
    const id = choice?.token_ids?.[0] ?? candidates.find((c) => choice?.text === text(c));
    if (id === undefined || !candidates.includes(id))
      throw new UpstreamError(
        this.url,
        `the engine answered ${JSON.stringify(choice?.token_ids ?? choice?.text)}, none of the tokens it was biased to`,
        null,
        "does the engine honour logit_bias, and serve the model whose vocabulary the prompt was tokenized with?",
      );
    return id;
  }

  /** The APM a `steerlm serve --apm` scores with; refused for any other engine. */
  async apm(): Promise<EngineApm> {
    const none = (what: string) =>
      new UpstreamError(
        this.url,
        what,
        null,
        "start it as `steerlm serve -m <model> --apm <apm run>`, or give the APM here (apm)",
      );
    if (this.dialect !== "steerlm") throw none("not a steerlm server: it has no scoring endpoint");
    const body = (await this.client.get("/v1/steerlm/schema")) as { apm?: unknown };
    const apm = body.apm as { name?: unknown; attributes?: unknown; sha256?: unknown } | null | undefined;
    if (apm === null || apm === undefined) throw none("the server has no APM (steerlm serve without --apm)");
    if (typeof apm.sha256 !== "string") throw none("the server does not say which APM it scores with");
    const schema = validateSchema(
      { name: apm.name, attributes: apm.attributes },
      `${this.url}/v1/steerlm/schema`,
    );
    return { schema, sha256: apm.sha256 };
  }

  /** POST /v1/steerlm/score: the APM's score of each conversation's last (assistant) message. */
  async score(
    conversations: ReadonlyArray<ReadonlyArray<{ role: string; content: string }>>,
    signal?: AbortSignal,
  ): Promise<EngineScore[]> {
    const body = (await this.client.post("/v1/steerlm/score", { conversations }, signal)) as {
      scores?: unknown;
    };
    if (!Array.isArray(body.scores) || body.scores.length !== conversations.length)
      throw new UpstreamError(
        this.url,
        `/v1/steerlm/score answered ${Array.isArray(body.scores) ? body.scores.length : "no"} scores for ${conversations.length} conversations`,
        null,
      );
    return body.scores as EngineScore[];
  }

  /** Whether the engine answers now (one request, no retries). */
  async upstream(): Promise<UpstreamState> {
    try {
      await this.client.get("/v1/models", { attempts: 1, timeoutMs: 5000 });
      return { url: this.url, status: "ok", model: this.model };
    } catch (err) {
      const message = err instanceof UpstreamError ? err.what : (err as Error).message;
      return { url: this.url, status: "unavailable", model: this.model, message };
    }
  }
}

/** The first model `/v1/models` lists: what the engine serves. */
async function modelCard(client: Upstream): Promise<ModelCard> {
  const body = (await client.get("/v1/models")) as { data?: unknown };
  const card = Array.isArray(body.data) ? (body.data[0] as ModelCard | undefined) : undefined;
  if (typeof card?.id !== "string")
    throw new UpstreamError(
      client.url,
      "/v1/models lists no model",
      null,
      "is this an OpenAI-compatible server?",
    );
  return card;
}

/** The engine's context length, where it says it: steerlm's context_size, vLLM's max_model_len, llama-server's n_ctx. */
async function engineContext(
  client: Upstream,
  dialect: Dialect,
  card: ModelCard,
): Promise<number | undefined> {
  const positive = (v: unknown) => (typeof v === "number" && Number.isInteger(v) && v > 0 ? v : undefined);
  if (dialect === "openai") return positive(card.max_model_len);
  try {
    if (dialect === "steerlm")
      return positive(((await client.get("/v1/steerlm/schema")) as { context_size?: unknown }).context_size);
    const props = (await client.get("/props")) as { default_generation_settings?: { n_ctx?: unknown } };
    return positive(props.default_generation_settings?.n_ctx);
  } catch (err) {
    log.debug(`${client.url}: no context size (${(err as Error).message})`);
    return undefined;
  }
}
