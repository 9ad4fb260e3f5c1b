import type { AttributeSchema } from "../data/attributes.js";
import type { CompleteOptions, GenerateResult, SamplingOptions } from "./model.js";
import type { SlotPool } from "./pool.js";
import type { ControlMode } from "./prompt.js";
import type { SchemaSource } from "./schema.js";
import type { PromptInfo, SteerVocab } from "./vocab.js";

/**
 * What SteerableModel and RemoteGenerator answer alike: the model's identity and steering, from the
 * vocabulary both render prompts with, and how many generations run and wait, from the pool of slots both
 * share out (context sequences here, requests in flight to an engine there).
 */
export abstract class PooledGenerator {
  protected constructor(
    /** Prompts and text: the template, control ids, detokenizing. */
    protected readonly vocab: SteerVocab,
    protected readonly pool: SlotPool<number>,
  ) {}

  /** A short id for the model (its file name without .gguf). */
  get id(): string {
    return this.vocab.id;
  }

  get modelPath(): string {
    return this.vocab.modelPath;
  }

  get schema(): AttributeSchema {
    return this.vocab.schema;
  }

  get schemaSource(): SchemaSource {
    return this.vocab.schemaSource;
  }

  get controlMode(): ControlMode {
    return this.vocab.controlMode;
  }

  get parallel(): number {
    return this.pool.size;
  }

  /** Generations allowed to wait for a slot (beyond that: BusyError). */
  get maxQueue(): number {
    return this.pool.maxQueue;
  }

  get load(): { active: number; queued: number } {
    return { active: this.pool.active, queued: this.pool.queued };
  }

  /** Tokens per generation: the local context's sequences, or what the engine serves. */
  abstract readonly contextSize: number;

  /** A raw prompt, no template (still stops at `<extra_id_1>`); or ids, taken as they are. */
  async complete(opts: CompleteOptions): Promise<GenerateResult> {
    const prompt =
      typeof opts.prompt === "string"
        ? this.vocab.rawPrompt(opts.prompt, opts.specialTokens ?? false, this.admit)
        : this.vocab.tokenPrompt(opts.prompt);
    return this.run(prompt, opts);
  }

  /** Refuses first what could not run anyway: a full queue, or a text too long for the context. */
  protected readonly admit = (text: string): void => {
    this.pool.checkCapacity();
    this.vocab.checkLength(text, this.contextSize);
  };

  /** One generation from a tokenized prompt, in a slot of the pool. */
  protected abstract run(prompt: PromptInfo, opts: SamplingOptions): Promise<GenerateResult>;
}
