import type { AttributeSchema } from "../data/attributes.js";
import { CONTROL_TOKEN_NAMES, CONTROL_TOKENS, RESPONSE_END } from "../data/template.js";
import { InputError } from "../util/errors.js";
import { type CompletionText, completionBudget, samplingTemperature } from "./completion.js";
import { type CompletionBody, Engine, type EngineOptions, remoteSetting } from "./engine.js";
import type { Generator, UpstreamState } from "./generator.js";
import type { GenerateOptions, GenerateResult, SamplingOptions, SteerResult } from "./model.js";
import { SlotPool } from "./pool.js";
import { PooledGenerator } from "./pooled.js";
import { UpstreamError } from "./upstream.js";
import { type PromptInfo, type PromptSource, type SteerPrompt, SteerVocab } from "./vocab.js";

/**
 * Generation on a remote engine behind an OpenAI-compatible `/v1/completions` (vLLM, SGLang, llama.cpp's
 * llama-server, another `steerlm serve`). The prompt is rendered and tokenized here, from the model's own
 * GGUF read vocabulary-only, exactly as SteerableModel does it, and sent as token ids: no engine gets text
 * it could read as control tokens. Where the engine returns the generated ids (vLLM's and steerlm's
 * `return_token_ids`), they are decoded here by the local path's code; llama-server returns text only, and
 * its text is taken through the same stop strings.
 */

export interface RemoteOptions extends EngineOptions {
  /** The GGUF the engine serves (or one with the same vocabulary): only its vocabulary is read. */
  modelPath: string;
  /** Built-in schema name, schema file or schema; default: the GGUF's `steerlm.schema`, else `steerlm`. */
  schema?: string | AttributeSchema;
  /** Tokens per generation; default: the engine's (steerlm serve's context_size, vLLM's max_model_len, llama-server's n_ctx). */
  contextSize?: number;
  /** Requests in flight. Default 4. */
  concurrency?: number;
  /** Generations allowed to wait for a request slot; beyond it `generate` throws BusyError. Default unbounded. */
  maxQueue?: number;
  /** Refuse a vocabulary without the SteerLM control tokens (see LoadOptions). */
  requireControlTokens?: boolean;
}

export class RemoteGenerator extends PooledGenerator implements Generator {
  private constructor(
    vocab: SteerVocab,
    private readonly engine: Engine,
    pool: SlotPool<number>,
    readonly contextSize: number,
  ) {
    super(vocab, pool);
  }

  /** Reads the vocabulary, asks the engine what it serves (retrying while it starts up), and is ready. */
  static async connect(opts: RemoteOptions): Promise<RemoteGenerator> {
    const concurrency = remoteSetting("concurrency", opts.concurrency);
    // The local half first: a missing or bad GGUF is said at once, not after the engine's retries.
    const vocab = await SteerVocab.load(opts.modelPath, opts);
    try {
      const engine = await Engine.connect(opts);
      const contextSize = opts.contextSize ?? engine.contextSize ?? vocab.defaultContextSize;
      const slots = Array.from({ length: concurrency }, (_, i) => i);
      const pool = new SlotPool(slots, opts.maxQueue ?? Number.POSITIVE_INFINITY);
      return new RemoteGenerator(vocab, engine, pool, contextSize);
    } catch (err) {
      await vocab.dispose();
      throw err;
    }
  }

  get url(): string {
    return this.engine.url;
  }

  /** The engine's name for the model it serves. */
  get engineModel(): string {
    return this.engine.model;
  }

  get retries(): number {
    return this.engine.retries;
  }

  renderPrompt(opts: PromptSource): SteerPrompt {
    return this.vocab.renderPrompt(opts, { admit: this.admit });
  }

  async generate(opts: GenerateOptions): Promise<SteerResult> {
    const { attributes, values, conditionings, ...prompt } = opts.prompt ?? this.renderPrompt(opts);
    if (conditionings)
      throw new InputError(
        "a prompt that mixes conditionings (fractional values, guidance) needs the local model",
        { setting: "prompt" },
        "render the prompt with this generator's renderPrompt",
      );
    const result = await this.run(prompt, opts);
    return { ...result, attributes, values };
  }

  upstream(): Promise<UpstreamState> {
    return this.engine.upstream();
  }

  async dispose(): Promise<void> {
    await this.vocab.dispose();
  }

  protected async run(prompt: PromptInfo, opts: SamplingOptions): Promise<GenerateResult> {
    const maxTokens = completionBudget(prompt.tokens.length, this.contextSize, opts);
    if (opts.logitBias) this.vocab.checkLogitBias(opts.logitBias);
    const slot = await this.pool.acquire(opts.signal);
    try {
      return await this.request(prompt, opts, maxTokens);
    } finally {
      this.pool.release(slot);
    }
  }

  private async request(
    prompt: PromptInfo,
    opts: SamplingOptions,
    maxTokens: number,
  ): Promise<GenerateResult> {
    const reply = new EngineReply(this.vocab.completionText(opts.stop ?? [], maxTokens, opts.onToken));
    // Started once the engine answers: a caller that streams (the server's SSE) opens its response then, so
    // an engine that fails or refuses first is still an error status, not a 200 with an error inside.
    let started = false;
    const start = () => {
      if (!started) opts.onStart?.();
      started = true;
    };
    if (maxTokens > 0) {
      const body = this.body(prompt.tokens, opts, maxTokens);
      const onEvent = opts.onToken
        ? (e: unknown) => {
            start();
            reply.take(e as CompletionBody);
          }
        : undefined;
      try {
        const whole = await this.engine.complete(body, { signal: opts.signal, onEvent });
        start();
        if (whole !== undefined) reply.take(whole);
      } catch (err) {
        if (!opts.signal?.aborted) throw err;
      }
    }
    if (opts.signal?.aborted) reply.text.abort();
    else if (reply.text.open) {
      // The engine stopped before the text did: at a stop id it did not send back, or at its length
      // limit, which must be ours (an engine that caps max_tokens lower would cut completions short).
      const generated = reply.measured;
      if (reply.finish === "length" && generated !== undefined && generated < maxTokens)
        throw new UpstreamError(
          this.url,
          `the engine stopped at its own length limit after ${generated} tokens, before max_tokens ${maxTokens}`,
          null,
          "raise the engine's limit (steerlm serve --max-tokens-cap, llama-server --n-predict)",
        );
      reply.text.endAs(reply.finish === "length" ? "length" : "stop");
    }
    return {
      text: reply.text.finish(),
      tokens: reply.tokens,
      finishReason: reply.text.finishReason,
      usage: {
        promptTokens: prompt.tokens.length,
        completionTokens: reply.count,
        totalTokens: prompt.tokens.length + reply.count,
      },
      prompt,
    };
  }

  /** The `/v1/completions` body: the ids, the budget and the sampling options, in the engine's dialect. */
  private body(tokens: readonly number[], opts: SamplingOptions, maxTokens: number): Record<string, unknown> {
    const temperature = samplingTemperature(opts);
    const stop = opts.stop ?? [];
    const body: Record<string, unknown> = {
      prompt: tokens,
      max_tokens: maxTokens,
      temperature,
      // As the local path: top-k and top-p only shape sampling, greedy decoding ignores them.
      ...(temperature > 0 && opts.topK !== undefined ? { top_k: opts.topK } : {}),
      ...(temperature > 0 && opts.topP !== undefined ? { top_p: opts.topP } : {}),
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
      ...(opts.logitBias?.size ? { logit_bias: Object.fromEntries(opts.logitBias) } : {}),
    };
    const controls = this.vocab.controlIds.length > 0 ? [...CONTROL_TOKEN_NAMES] : [CONTROL_TOKENS.turn];
    switch (this.engine.dialect) {
      case "steerlm":
        // It stops at the control ids itself and returns the generated ids.
        return { ...body, ...(stop.length > 0 ? { stop } : {}), return_token_ids: true };
      case "llama.cpp":
        // llama-server returns text only and drops control tokens from it unless they are preserved:
        // preserved, they show as text and stop there.
        // The response's end first: llama-server cuts the stop string it matched, so its text is final.
        return { ...body, stop: [RESPONSE_END.text, ...controls, ...stop], preserved_tokens: controls };
      case "openai":
        // vLLM (and SGLang) stop at ids; `return_token_ids` gives the ids to decode here.
        return {
          ...body,
          stop: [CONTROL_TOKENS.turn, ...stop],
          stop_token_ids: this.vocab.controlIds,
          return_token_ids: true,
        };
    }
  }
}

/**
 * What an engine sends back, taken chunk by chunk (or whole). Ids are decoded here, the way the local
 * path decodes them; an engine that sends text (llama-server, a steerlm stream) has its text taken through
 * the stop strings, and any ids it adds are kept as the completion's tokens.
 */
class EngineReply {
  /** Ids the engine sent beside its text. */
  private readonly engineIds: number[] = [];
  private viaText = false;
  private engineCount: number | undefined;
  finish: string | undefined;

  constructor(readonly text: CompletionText) {}

  take(body: CompletionBody): void {
    const choice = body.choices?.[0];
    if (choice !== undefined) {
      // ids decide the text only when they carry it: an engine may send an empty list beside its text
      const decodable = choice.token_ids !== undefined && (choice.token_ids.length > 0 || !choice.text);
      if (decodable && !this.viaText) for (const id of choice.token_ids ?? []) this.text.push(id);
      else {
        if (choice.text) {
          this.viaText = true;
          this.text.pushText(choice.text);
        }
        if (choice.token_ids) this.engineIds.push(...choice.token_ids);
      }
      if (choice.finish_reason) this.finish = choice.finish_reason;
    }
    const n = body.usage?.completion_tokens;
    if (typeof n === "number") this.engineCount = n;
  }

  get tokens(): number[] {
    return this.viaText ? this.engineIds : this.text.tokens;
  }

  /** Tokens generated: the ids, else what the engine counted (undefined: it did not say). */
  get measured(): number | undefined {
    return this.viaText && this.engineIds.length === 0 ? this.engineCount : this.tokens.length;
  }

  get count(): number {
    return this.measured ?? 0;
  }
}
