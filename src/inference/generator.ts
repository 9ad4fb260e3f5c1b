import type { AttributeSchema } from "../data/attributes.js";
import type { CompleteOptions, GenerateOptions, GenerateResult, SteerResult } from "./model.js";
import type { ControlMode } from "./prompt.js";
import type { SchemaSource } from "./schema.js";
import type { PromptSource, SteerPrompt } from "./vocab.js";

/**
 * What the commands, the jobs and the server ask of a model that generates: SteerableModel (tokens
 * sampled here by llama.cpp) and RemoteGenerator (tokens sampled by an engine behind an OpenAI-compatible
 * URL) both are one. Prompts are rendered and tokenized here in both cases, and completions are turned
 * into text by the same code, so callers cannot tell them apart (src/inference/completion.ts).
 */
export interface Generator {
  /** A short id for the model (its file name without .gguf). */
  readonly id: string;
  readonly schema: AttributeSchema;
  readonly schemaSource: SchemaSource;
  readonly controlMode: ControlMode;
  /** Tokens per generation, prompt and completion. */
  readonly contextSize: number;
  /** Generations it runs at once: context sequences here, requests in flight to an engine. */
  readonly parallel: number;
  /** Generations allowed to wait for their turn (beyond that: BusyError). */
  readonly maxQueue: number;
  /** Generations running now and waiting for their turn. */
  readonly load: { active: number; queued: number };
  /** Requests to an engine that failed and were sent again (0 for a local model). */
  readonly retries?: number;
  renderPrompt(opts: PromptSource): SteerPrompt;
  generate(opts: GenerateOptions): Promise<SteerResult>;
  complete(opts: CompleteOptions): Promise<GenerateResult>;
  /** Where the tokens are generated when it is not this process: the engine's URL and whether it answers. */
  upstream?(): Promise<UpstreamState>;
  dispose(): Promise<void>;
}

export interface UpstreamState {
  url: string;
  /** `ok`: it answered `/v1/models`; `unavailable`: it did not (the message says why). */
  status: "ok" | "unavailable";
  /** The engine's own name for the model it serves. */
  model?: string;
  message?: string;
}
