import { existsSync } from "node:fs";
import { basename } from "node:path";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import {
  type AttributeSchema,
  type AttributeValues,
  formatValues,
  parseAttributes,
  withDefaults,
} from "../data/attributes.js";
import {
  CONTROL_TOKENS,
  type Conversation,
  DEFAULT_SYSTEM_PROMPT,
  renderConversation,
  type Turn,
} from "../data/template.js";
import { getLlamaRuntime } from "../runtime/llama.js";
import { InputError } from "../util/errors.js";
import { log } from "../util/log.js";
import { guidedTokens, WideSequences } from "./guided.js";
import {
  type ContrastMode,
  checkContrast,
  checkGuidance,
  planConditionings,
  TooManyConditioningsError,
} from "./mixture.js";
import { SlotPool } from "./pool.js";
import { type ControlVocab, detectControlTokens, tokenizeParts, tokenizeRaw } from "./prompt.js";
import { checkSampling, SAMPLING_SETTINGS } from "./sampling.js";
import { resolveSchema, type SchemaSource } from "./schema.js";
import { IncrementalDecoder, StopText } from "./stop.js";

export interface LoadOptions {
  modelPath: string;
  /** A LoRA adapter GGUF applied on top of the model. */
  loraPath?: string;
  /** Built-in schema name, schema file, or schema object; default: the GGUF's `steerlm.schema`, else `steerlm`. */
  schema?: string | AttributeSchema;
  /** Generations that run at once (context sequences sharing one batch). Default 1. */
  parallel?: number;
  /** Generations allowed to wait for a sequence; beyond it `generate` throws BusyError. Default unbounded. */
  maxQueue?: number;
  /** Tokens per sequence (prompt + completion). Default: the model's training context, at most 2048. */
  contextSize?: number;
  /** CPU threads; default 1 for tiny models (thread hand-off costs more than the math), else llama.cpp's choice. */
  threads?: number;
  /**
   * Sequences one guided or fractional generation may use (its conditionings: mixture.ts). They live in
   * a second context, created on the first such generation with `parallel` groups of them. Default 5:
   * guidance with up to two fractional attributes.
   */
  conditionings?: number;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** Ranges and defaults: SAMPLING_SETTINGS (sampling.ts). */
export interface SamplingOptions {
  /** Exactly this many at most; more than fits in the context is a ContextLengthError. */
  maxTokens?: number;
  /** When maxTokens is unset: as many as fit in the context, at most this many. Default 256. */
  maxTokensDefault?: number;
  /** 0 (the default) is greedy decoding. */
  temperature?: number;
  topK?: number;
  /** 0 keeps only the most likely token: greedy decoding, whatever the temperature. */
  topP?: number;
  seed?: number;
  /** Extra stop strings; `<extra_id_1>` always stops. */
  stop?: readonly string[];
  signal?: AbortSignal;
  /** Called once a sequence is free and generation starts (after any wait in the queue). */
  onStart?: () => void;
  /** Streaming: each new piece of text as soon as it is safe to show. */
  onToken?: (text: string) => void;
}

export interface GenerateOptions extends SamplingOptions {
  /** OpenAI-style messages; system messages join into the system prompt (default: SteerLM's). */
  messages?: readonly ChatMessage[];
  /** Or a conversation as the template takes it; must end with a user turn. */
  conversation?: Conversation;
  /**
   * Attribute values (an object of name -> number, or a value string `humor=3,verbosity=1`); unspecified
   * ones take the schema defaults. Fractions (`humor: 2.5`) mix the neighbouring integer conditionings.
   */
  attributes?: AttributeValues | string;
  /** Attribute guidance strength (mixture.ts, GUIDANCE); default 0: none. */
  guidance?: number;
  /** What guidance pushes away from; default DEFAULT_CONTRAST (`defaults`). */
  contrast?: ContrastMode;
  /** Or the prompt `renderPrompt` made already (the five fields above are then unused). */
  prompt?: SteerPrompt;
}

export interface CompleteOptions extends SamplingOptions {
  prompt: string;
  /** Parse special-token strings (such as `<extra_id_1>`) in the prompt into their ids. Default false. */
  specialTokens?: boolean;
}

/** `stop`: a stop token or string; `length`: maxTokens reached; `abort`: the signal fired. */
export type FinishReason = "stop" | "length" | "abort";

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export interface PromptInfo {
  text: string;
  tokens: number[];
  /** Control-token ids in `tokens`: depends only on the number of turns (0 when the vocabulary lacks them). */
  controlTokens: number;
  /** The template's parts (chat prompts only): control parts are the only source of control ids. */
  parts?: Array<{ kind: "control" | "text"; text: string }>;
}

export interface GenerateResult {
  text: string;
  /** Ids of the generated tokens (the stop token excluded). */
  tokens: number[];
  finishReason: FinishReason;
  usage: Usage;
  prompt: PromptInfo;
}

/** One conditioning of a mixed prompt: its value string, its weight in the combination, its tokens. */
export interface PromptConditioning {
  values: string;
  weight: number;
  tokens: number[];
}

/** An inference prompt with the attribute values it carries. */
export interface SteerPrompt extends PromptInfo {
  /** Effective attribute values, defaults filled in (fractions as requested). */
  attributes: AttributeValues;
  /** The requested value string (fractions as requested: `humor:2.5`). */
  values: string;
  /**
   * With fractional values or guidance: every conditioning combined at each step (mixture.ts), the first
   * being the prompt above. Absent for a plain prompt.
   */
  conditionings?: PromptConditioning[];
}

export interface SteerResult
  extends GenerateResult,
    Pick<SteerPrompt, "attributes" | "values" | "conditionings"> {}

const DEFAULT_MAX_TOKENS = 256;
const DEFAULT_CONDITIONINGS = 5;

/**
 * A GGUF model ready for steerable generation: a schema, one context with `parallel` sequences, and a
 * bounded queue in front of them. Safe to call `generate` concurrently.
 */
export class SteerableModel {
  private constructor(
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly sequences: readonly LlamaContextSequence[],
    private readonly pool: SlotPool<number>,
    private readonly wide: WideSequences,
    private readonly vocab: ControlVocab,
    readonly modelPath: string,
    readonly schema: AttributeSchema,
    readonly schemaSource: SchemaSource,
  ) {}

  static async load(opts: LoadOptions): Promise<SteerableModel> {
    for (const [field, path] of [
      ["model", opts.modelPath],
      ["lora", opts.loraPath],
    ] as const) {
      if (path !== undefined && !existsSync(path))
        throw new InputError("no such file", { file: path, field });
    }
    const llama = await getLlamaRuntime();
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: opts.modelPath, gpuLayers: llama.gpu ? "auto" : 0 });
    } catch (err) {
      throw new InputError(`cannot load the model: ${(err as Error).message}`, { file: opts.modelPath });
    }
    try {
      const { schema, source } = resolveSchema(model, opts.modelPath, opts.schema);
      const vocab = detectControlTokens(model, opts.modelPath);
      if (vocab.mode === "text") {
        log.warn(
          `${opts.modelPath}: the vocabulary has no SteerLM control tokens; they are sent as plain text ` +
            `and generation stops at the text ${CONTROL_TOKENS.turn}`,
        );
      }
      const parallel = opts.parallel ?? 1;
      const tiny = model.size < 64 * 1024 * 1024;
      let context: LlamaContext;
      try {
        context = await model.createContext({
          sequences: parallel,
          contextSize: opts.contextSize ?? Math.min(model.trainContextSize || 2048, 2048),
          threads: opts.threads ?? (tiny ? 1 : undefined),
          lora: opts.loraPath,
        });
      } catch (err) {
        const what = opts.loraPath ? "the model with its LoRA adapter" : "a context";
        throw new InputError(`cannot create ${what}: ${(err as Error).message}`, {
          file: opts.loraPath ?? opts.modelPath,
        });
      }
      const sequences = Array.from({ length: parallel }, () => context.getSequence());
      const pool = new SlotPool(
        sequences.map((_, i) => i),
        opts.maxQueue ?? Number.POSITIVE_INFINITY,
      );
      const wide = new WideSequences(parallel, opts.conditionings ?? DEFAULT_CONDITIONINGS, (n) =>
        model
          .createContext({
            sequences: n,
            contextSize: context.contextSize,
            threads: opts.threads ?? (tiny ? 1 : undefined),
            lora: opts.loraPath,
          })
          .catch((err: Error) => {
            throw new InputError(
              `cannot create the context of guided or fractional generations: ${err.message}`,
              { file: opts.modelPath, setting: "conditionings" },
              "lower `conditionings` or `parallel`, or the context size",
            );
          }),
      );
      return new SteerableModel(model, context, sequences, pool, wide, vocab, opts.modelPath, schema, source);
    } catch (err) {
      await model.dispose();
      throw err;
    }
  }

  /** A short id for the model (its file name without .gguf). */
  get id(): string {
    return basename(this.modelPath).replace(/\.gguf$/i, "");
  }

  get controlMode(): ControlVocab["mode"] {
    return this.vocab.mode;
  }

  get contextSize(): number {
    return this.context.contextSize;
  }

  get parallel(): number {
    return this.pool.size;
  }

  /** Generations allowed to wait for a sequence (LoadOptions.maxQueue). */
  get maxQueue(): number {
    return this.pool.maxQueue;
  }

  /** Generations running now and waiting for a sequence. */
  get load(): { active: number; queued: number } {
    return { active: this.pool.active, queued: this.pool.queued };
  }

  /** Ids back to text (special tokens dropped), as generation decodes them. */
  decode(tokens: readonly number[]): string {
    return this.model.detokenize(tokens as Token[], false);
  }

  /**
   * The SteerLM inference prompt for a conversation at the given attribute values; with fractional values
   * or guidance, also every conditioning the generation combines (mixture.ts).
   */
  renderPrompt(
    opts: Pick<GenerateOptions, "messages" | "conversation" | "attributes" | "guidance" | "contrast">,
  ): SteerPrompt {
    const place = { field: "attributes" };
    const given = parseAttributes(this.schema, opts.attributes ?? {}, place, { fractions: true });
    const attributes = withDefaults(this.schema, given, place, { fractions: true });
    const plan = planConditionings(
      this.schema,
      attributes,
      Object.keys(given),
      checkGuidance(opts.guidance) ?? 0,
      checkContrast(opts.contrast),
    );
    if (plan.length > this.wide.width && plan.length > 1)
      throw new TooManyConditioningsError(plan.length, this.wide.width, { setting: "attributes" });
    const render = (values: string) => {
      const conv = opts.conversation ?? messagesToConversation(opts.messages ?? [], values);
      const rendered = renderConversation(conv, "inference", { values });
      const { tokens, controlTokens } = tokenizeParts(this.model, this.vocab, rendered.parts);
      const parts = rendered.parts.map(({ kind, text }) => ({ kind, text }));
      return { text: rendered.text, tokens, controlTokens, parts };
    };
    const conditionings = plan.map((c) => {
      const values = formatValues(this.schema, c.attributes);
      return { values, weight: c.weight, rendered: render(values) };
    });
    const main = (conditionings[0] as (typeof conditionings)[number]).rendered;
    const values = formatValues(this.schema, attributes, { fractions: true });
    if (conditionings.length === 1) return { ...main, attributes, values };
    return {
      ...main,
      attributes,
      values,
      conditionings: conditionings.map((c) => ({
        values: c.values,
        weight: c.weight,
        tokens: c.rendered.tokens,
      })),
    };
  }

  /** One assistant turn at the requested attribute values, streamed through `onToken`. */
  async generate(opts: GenerateOptions): Promise<SteerResult> {
    const { attributes, values, conditionings, ...prompt } = opts.prompt ?? this.renderPrompt(opts);
    const result = await this.run(prompt, opts, conditionings);
    return { ...result, attributes, values, ...(conditionings ? { conditionings } : {}) };
  }

  /** A raw prompt, no template (still stops at `<extra_id_1>`). */
  async complete(opts: CompleteOptions): Promise<GenerateResult> {
    const tokens = tokenizeRaw(this.model, opts.prompt, opts.specialTokens ?? false);
    const control = new Set<number>(this.vocab.ids.values());
    const controlTokens = tokens.filter((t) => control.has(t)).length;
    return this.run({ text: opts.prompt, tokens, controlTokens }, opts);
  }

  private async run(
    prompt: PromptInfo,
    opts: SamplingOptions,
    conditionings?: readonly PromptConditioning[],
  ): Promise<GenerateResult> {
    const longest = Math.max(prompt.tokens.length, ...(conditionings ?? []).map((c) => c.tokens.length));
    const room = this.contextSize - longest;
    const maxTokens =
      opts.maxTokens ?? Math.max(0, Math.min(opts.maxTokensDefault ?? DEFAULT_MAX_TOKENS, room));
    checkSampling(opts);
    // The first generated token needs a free cell too, even when maxTokens is 0.
    if (room < 1 || maxTokens > room) {
      throw new ContextLengthError(longest, maxTokens, this.contextSize);
    }
    const slot = await this.pool.acquire(opts.signal);
    try {
      opts.onStart?.();
      return await this.runOn(slot, prompt, opts, maxTokens, conditionings);
    } finally {
      this.pool.release(slot);
    }
  }

  private async runOn(
    slot: number,
    prompt: PromptInfo,
    opts: SamplingOptions,
    maxTokens: number,
    conditionings?: readonly PromptConditioning[],
  ): Promise<GenerateResult> {
    // A sequence holds the previous request's tokens; start clean (no prefix reuse, kept simple on purpose).
    const group = conditionings
      ? await this.wide.group(slot)
      : [this.sequences[slot] as LlamaContextSequence];
    await Promise.all(group.map((s) => s.clearHistory()));
    const stopIds = new Set<Token>(this.vocab.ids.values());
    const text = new StopText([CONTROL_TOKENS.turn, ...(opts.stop ?? [])]);
    const generated: Token[] = [];
    const decoder = new IncrementalDecoder<Token>((ids, previous) =>
      this.model.detokenize(ids, false, previous),
    );
    // top_p 0 keeps one token: greedy, said here so it does not rest on llama.cpp's top-p at its edge.
    const temperature = opts.topP === 0 ? 0 : (opts.temperature ?? SAMPLING_SETTINGS.temperature.default);
    let finishReason: FinishReason = "length";
    const emit = (piece: string) => {
      if (piece !== "") opts.onToken?.(piece);
    };
    if (maxTokens > 0) {
      const sampling = {
        temperature,
        topK: temperature > 0 ? opts.topK : undefined,
        topP: temperature > 0 ? opts.topP : undefined,
        seed: opts.seed,
      };
      const tokens = conditionings
        ? guidedTokens(
            group,
            conditionings.map((c) => c.tokens),
            conditionings.map((c) => c.weight),
            sampling,
          )
        : (group[0] as LlamaContextSequence).evaluate(prompt.tokens as Token[], sampling);
      for await (const token of tokens) {
        if (opts.signal?.aborted) {
          finishReason = "abort";
          break;
        }
        if (stopIds.has(token) || this.model.isEogToken(token)) {
          finishReason = "stop";
          break;
        }
        generated.push(token);
        emit(text.update(decoder.text(generated)));
        if (text.stopped) {
          finishReason = "stop";
          break;
        }
        if (generated.length >= maxTokens) break;
      }
    }
    if (opts.signal?.aborted) finishReason = "abort";
    if (!text.stopped) emit(text.flush());
    return {
      text: text.final,
      tokens: generated.map(Number),
      finishReason,
      usage: {
        promptTokens: prompt.tokens.length,
        completionTokens: generated.length,
        totalTokens: prompt.tokens.length + generated.length,
      },
      prompt: { ...prompt, tokens: prompt.tokens.map(Number) },
    };
  }

  async dispose(): Promise<void> {
    await this.wide.dispose();
    await this.context.dispose();
    await this.model.dispose();
  }
}

/** The prompt and the requested completion do not fit in a sequence's context. */
export class ContextLengthError extends InputError {
  override name = "ContextLengthError";
  constructor(
    readonly promptTokens: number,
    readonly maxTokens: number,
    readonly contextSize: number,
  ) {
    super(
      `the prompt (${promptTokens} tokens) plus max_tokens (${maxTokens}) exceeds the context of ${contextSize} tokens`,
      { setting: "maxTokens" },
      "shorten the conversation or lower max_tokens",
    );
  }
}

/**
 * OpenAI-style messages -> a template conversation. System messages join into the system prompt;
 * earlier assistant turns carry the same value string as the turn to generate, as SteerLM's multi-turn
 * training data labels every assistant turn.
 */
export function messagesToConversation(messages: readonly ChatMessage[], values: string): Conversation {
  const system: string[] = [];
  const turns: Turn[] = [];
  for (const [i, m] of messages.entries()) {
    if (m.role === "system") system.push(m.content);
    else if (m.role === "user") turns.push({ role: "user", text: m.content });
    else if (m.role === "assistant") turns.push({ role: "assistant", text: m.content, values });
    else throw new InputError(`unknown role ${JSON.stringify(m.role)}`, { field: `messages[${i}].role` });
  }
  if (turns.length === 0) throw new InputError("no user message", { field: "messages" });
  return { system: system.length > 0 ? system.join("\n") : DEFAULT_SYSTEM_PROMPT, turns };
}
