import { existsSync } from "node:fs";
import type { LlamaContext, Token, TokenBias } from "node-llama-cpp";
import type { AttributeSchema } from "../data/attributes.js";
import { readGguf } from "../gguf/reader.js";
import { InputError } from "../util/errors.js";
import {
  type CompletionText,
  completionBudget,
  type FinishReason,
  samplingTemperature,
} from "./completion.js";
import { guidedTokens, WideSequences } from "./guided.js";
import { SlotPool } from "./pool.js";
import { PooledGenerator } from "./pooled.js";
import { CachedSequence } from "./prompt-cache.js";
import {
  openLlamaModel,
  type PromptConditioning,
  type PromptInfo,
  type PromptSource,
  type SteerPrompt,
  SteerVocab,
} from "./vocab.js";

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
  /** Tokens per sequence (prompt + completion). Default: the model's training context, at most CONTEXT_SIZE_CAP. */
  contextSize?: number;
  /** CPU threads; default 1 for tiny models (thread hand-off costs more than the math), else llama.cpp's choice. */
  threads?: number;
  /**
   * Refuse a model whose vocabulary lacks the SteerLM control tokens (served as text, a user message could
   * forge a whole turn with its own value line). Default false; `steerlm serve` beyond loopback sets it.
   */
  requireControlTokens?: boolean;
  /**
   * Sequences one guided or fractional generation may use (its conditionings: mixture.ts). They live in
   * a second context, created on the first such generation with `parallel` groups of them. Default 5:
   * guidance with up to two fractional attributes.
   */
  conditionings?: number;
  /**
   * Reuse the keys and values a sequence holds from an earlier request for the prompt's common prefix
   * (prompt-cache.ts; greedy outputs stay the same bytes). Default true.
   */
  promptCache?: boolean;
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
  /** Token id -> a number in -100..100 added to its logit before sampling (OpenAI's logit_bias). */
  logitBias?: ReadonlyMap<number, number>;
  signal?: AbortSignal;
  /** Called once a sequence is free and generation starts (after any wait in the queue). */
  onStart?: () => void;
  /** Streaming: each new piece of text as soon as it is safe to show. */
  onToken?: (text: string) => void;
}

export interface GenerateOptions extends SamplingOptions, PromptSource {
  /** Or the prompt `renderPrompt` made already (messages, conversation, attributes, guidance are then unused). */
  prompt?: SteerPrompt;
}

export interface CompleteOptions extends SamplingOptions {
  /** Text, or token ids taken as they are (no BOS added; control ids allowed: the caller chose them). */
  prompt: string | readonly number[];
  /** Parse special-token strings (such as `<extra_id_1>`) in the prompt into their ids. Default false. */
  specialTokens?: boolean;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export interface GenerateResult {
  text: string;
  /** Ids of the generated tokens (the stop token excluded). */
  tokens: number[];
  finishReason: FinishReason;
  usage: Usage;
  prompt: PromptInfo;
}

export interface SteerResult
  extends GenerateResult,
    Pick<SteerPrompt, "attributes" | "values" | "conditionings"> {}

const DEFAULT_CONDITIONINGS = 5;

/**
 * A GGUF model ready for steerable generation: a schema, one context with `parallel` sequences, and a
 * bounded queue in front of them. Safe to call `generate` concurrently.
 */
export class SteerableModel extends PooledGenerator {
  private constructor(
    private readonly context: LlamaContext,
    private readonly sequences: readonly CachedSequence[],
    pool: SlotPool<number>,
    private readonly wide: WideSequences,
    vocab: SteerVocab,
  ) {
    super(vocab, pool);
  }

  static async load(opts: LoadOptions): Promise<SteerableModel> {
    if (opts.loraPath !== undefined && !existsSync(opts.loraPath))
      throw new InputError("no such file", { file: opts.loraPath, field: "lora" });
    // read first (see loadLlamaModel), and for the schema a steerlm adapter carries
    const adapter = opts.loraPath !== undefined ? await readGguf(opts.loraPath) : undefined;
    const opened = await openLlamaModel(opts.modelPath);
    const { model } = opened;
    try {
      const vocab = SteerVocab.of(opened, opts.modelPath, { ...opts, adapter });
      const parallel = opts.parallel ?? 1;
      const tiny = model.size < 64 * 1024 * 1024;
      // Flash attention on the CPU changes its float sums with the batch size, which the prompt cache
      // changes (prompt-cache.ts); off in both contexts, so plain and mixed generations stay comparable.
      const settings = {
        threads: opts.threads ?? (tiny ? 1 : undefined),
        lora: opts.loraPath,
        flashAttention: false,
      };
      let context: LlamaContext;
      try {
        context = await model.createContext({
          sequences: parallel,
          contextSize: opts.contextSize ?? vocab.defaultContextSize,
          ...settings,
        });
      } catch (err) {
        const what = opts.loraPath ? "the model with its LoRA adapter" : "a context";
        throw new InputError(`cannot create ${what}: ${(err as Error).message}`, {
          file: opts.loraPath ?? opts.modelPath,
        });
      }
      const sequences = Array.from(
        { length: parallel },
        () => new CachedSequence(context.getSequence(), opts.promptCache ?? true),
      );
      const pool = new SlotPool(
        sequences.map((_, i) => i),
        opts.maxQueue ?? Number.POSITIVE_INFINITY,
      );
      const wide = new WideSequences(parallel, opts.conditionings ?? DEFAULT_CONDITIONINGS, (n) =>
        model
          .createContext({ sequences: n, contextSize: context.contextSize, ...settings })
          .catch((err: Error) => {
            throw new InputError(
              `cannot create the context of guided or fractional generations: ${err.message}`,
              { file: opts.modelPath, setting: "conditionings" },
              "lower `conditionings` or `parallel`, or the context size",
            );
          }),
      );
      return new SteerableModel(context, sequences, pool, wide, vocab);
    } catch (err) {
      await model.dispose();
      throw err;
    }
  }

  /**
   * Prompt tokens plain generations evaluated, and those they took from a sequence's cache instead
   * (prompt-cache.ts). Counted since the model was loaded.
   */
  get promptTokens(): { evaluated: number; reused: number } {
    return { ...this.prompted };
  }

  private readonly prompted = { evaluated: 0, reused: 0 };

  get contextSize(): number {
    return this.context.contextSize;
  }

  /** Ids back to text (special tokens dropped), as generation decodes them. */
  decode(tokens: readonly number[]): string {
    return this.vocab.decode(tokens);
  }

  /**
   * The SteerLM inference prompt for a conversation at the given attribute values; with fractional values
   * or guidance, also every conditioning the generation combines (mixture.ts). Throws BusyError or
   * ContextLengthError before tokenizing when the prompt could not run anyway (see `admit`).
   */
  renderPrompt(opts: PromptSource): SteerPrompt {
    return this.vocab.renderPrompt(opts, { admit: this.admit, conditionings: this.wide.width });
  }

  /** One assistant turn at the requested attribute values, streamed through `onToken`. */
  async generate(opts: GenerateOptions): Promise<SteerResult> {
    const { attributes, values, conditionings, ...prompt } = opts.prompt ?? this.renderPrompt(opts);
    const result = await this.run(prompt, opts, conditionings);
    return { ...result, attributes, values, ...(conditionings ? { conditionings } : {}) };
  }

  protected async run(
    prompt: PromptInfo,
    opts: SamplingOptions,
    conditionings?: readonly PromptConditioning[],
  ): Promise<GenerateResult> {
    const longest = Math.max(prompt.tokens.length, ...(conditionings ?? []).map((c) => c.tokens.length));
    const maxTokens = completionBudget(longest, this.contextSize, opts);
    if (conditionings && opts.logitBias?.size)
      throw new InputError(
        "logit_bias applies to one conditioning's logits, not to a mix of them",
        { setting: "logitBias" },
        "leave out logit_bias, or use integer values without guidance",
      );
    const tokenBias = opts.logitBias?.size ? this.vocab.tokenBias(opts.logitBias) : undefined;
    // Mixed generations use other sequences (WideSequences): any free slot, the least recently used.
    const slot = await this.pool.acquire(
      opts.signal,
      conditionings ? () => 0 : (i) => (this.sequences[i] as CachedSequence).score(prompt.tokens),
    );
    try {
      opts.onStart?.();
      return await this.runOn(slot, prompt, { ...opts, tokenBias }, maxTokens, conditionings);
    } finally {
      this.pool.release(slot);
    }
  }

  private async runOn(
    slot: number,
    prompt: PromptInfo,
    opts: SamplingOptions & { tokenBias?: TokenBias },
    maxTokens: number,
    conditionings?: readonly PromptConditioning[],
  ): Promise<GenerateResult> {
    const text = this.vocab.completionText(opts.stop ?? [], maxTokens, opts.onToken);
    const temperature = samplingTemperature(opts);
    if (maxTokens > 0) {
      const sampling = {
        temperature,
        topK: temperature > 0 ? opts.topK : undefined,
        topP: temperature > 0 ? opts.topP : undefined,
        seed: opts.seed,
      };
      if (conditionings) {
        // Every conditioning in its own sequence of the slot's group, from a clean history.
        const group = await this.wide.group(slot);
        await Promise.all(group.map((s) => s.clearHistory()));
        const tokens = guidedTokens(
          group,
          conditionings.map((c) => c.tokens),
          conditionings.map((c) => c.weight),
          sampling,
        );
        await take(tokens, text, opts.signal);
      } else {
        const cached = this.sequences[slot] as CachedSequence;
        try {
          const { reused, rest } = await cached.prepare(prompt.tokens);
          this.prompted.evaluated += rest.length;
          this.prompted.reused += reused;
          const tokens = cached.sequence.evaluate(rest, {
            ...sampling,
            tokenBias: opts.tokenBias,
            // Handed on, an end-of-generation token ends the completion as a stop (not a run out of tokens).
            yieldEogToken: true,
          });
          await take(tokens, text, opts.signal);
          if (opts.signal?.aborted) await cached.clear();
          else cached.evaluated(prompt.tokens.length, reused);
        } catch (err) {
          // What the sequence holds is not known: the next request starts from an empty one.
          await cached.clear().catch(() => undefined);
          throw err;
        }
      }
    }
    if (opts.signal?.aborted) text.abort();
    return {
      text: text.finish(),
      tokens: text.tokens,
      finishReason: text.finishReason,
      usage: {
        promptTokens: prompt.tokens.length,
        completionTokens: text.tokens.length,
        totalTokens: prompt.tokens.length + text.tokens.length,
      },
      prompt: { ...prompt, tokens: prompt.tokens.map(Number) },
    };
  }

  async dispose(): Promise<void> {
    await this.wide.dispose();
    await this.context.dispose();
    await this.vocab.dispose();
  }
}

/** Generated tokens into the completion until it ends or the caller gives up. */
async function take(tokens: AsyncIterable<Token>, text: CompletionText, signal?: AbortSignal): Promise<void> {
  for await (const token of tokens) {
    if (signal?.aborted || !text.push(token)) break;
  }
}
