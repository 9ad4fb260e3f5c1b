import type { AttributeSchema } from "../data/attributes.js";
import type { SlotPool } from "./pool.js";
import type { ControlMode } from "./prompt.js";
import type { SchemaSource } from "./schema.js";
import type { SteerVocab } from "./vocab.js";

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
}
