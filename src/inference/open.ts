import { InputError } from "../util/errors.js";
import type { Generator } from "./generator.js";
import { type LoadOptions, SteerableModel } from "./model.js";
import { RemoteGenerator } from "./remote.js";

/** Where generation runs: on an engine at `backend`, or (without it) here. */
export interface BackendSettings {
  /** An OpenAI-compatible engine's URL: it generates, the model's GGUF is read vocabulary-only here. */
  backend?: string;
  /** Requests in flight to the engine (default 4; commands with `parallel` use that instead). */
  concurrency?: number;
  /** Times a failed request is sent again (default 5). */
  retries?: number;
  /** Seconds the engine may stay silent before a request fails (default 600). */
  engineTimeout?: number;
  /** Bearer token of the engine. */
  backendApiKey?: string;
}

export interface GeneratorOptions extends LoadOptions, BackendSettings {}

const REMOTE_ONLY = ["concurrency", "retries", "engineTimeout"] as const;

/** Without `backend`, the settings of a remote engine mean nothing: refused, naming the one given. */
export function checkLocal(opts: BackendSettings): void {
  for (const setting of REMOTE_ONLY) {
    if (opts[setting] !== undefined)
      throw new InputError(
        "applies to a remote engine only",
        { setting },
        "drop it to run here, or give the remote engine's URL",
      );
  }
}

/**
 * The model that generates: loaded here (SteerableModel), or, with `backend`, an engine driven through
 * RemoteGenerator. `parallel` is the number of requests in flight there, unless `concurrency` says it.
 */
export async function openGenerator(opts: GeneratorOptions): Promise<Generator> {
  if (opts.backend === undefined) {
    checkLocal(opts);
    return SteerableModel.load(opts);
  }
  if (opts.loraPath !== undefined)
    throw new InputError(
      "a remote engine applies its own adapters",
      { setting: "lora" },
      "load the adapter in the engine (vLLM --lora-modules, llama-server --lora, steerlm serve --lora)",
    );
  return RemoteGenerator.connect({
    backend: opts.backend,
    modelPath: opts.modelPath,
    schema: opts.schema,
    contextSize: opts.contextSize,
    concurrency: opts.concurrency ?? opts.parallel,
    maxQueue: opts.maxQueue,
    requireControlTokens: opts.requireControlTokens,
    retries: opts.retries,
    engineTimeout: opts.engineTimeout,
    apiKey: opts.backendApiKey,
  });
}
