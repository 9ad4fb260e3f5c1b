// Steerable generation: load a GGUF (or drive a remote engine), render the SteerLM inference prompt, generate,
// stream; attribute guidance and fractional values mix conditionings (local models only).
export { ContextLengthError, type FinishReason } from "./completion.js";
export { type Dialect, Engine, type EngineOptions, REMOTE_SETTINGS } from "./engine.js";
export type { Generator, UpstreamState } from "./generator.js";
export { combineLogProbs, tokenPicker } from "./guided.js";
export {
  CONTRAST_MODES,
  type Conditioning,
  type ContrastMode,
  checkContrast,
  checkGuidance,
  DEFAULT_CONTRAST,
  GUIDANCE,
  planConditionings,
  TooManyConditioningsError,
} from "./mixture.js";
export {
  type CompleteOptions,
  type GenerateOptions,
  type GenerateResult,
  type LoadOptions,
  type SamplingOptions,
  SteerableModel,
  type SteerResult,
  type Usage,
} from "./model.js";
export { type BackendSettings, type GeneratorOptions, openGenerator } from "./open.js";
export { AbortedError, BusyError } from "./pool.js";
export type { ControlMode } from "./prompt.js";
export { RemoteGenerator, type RemoteOptions } from "./remote.js";
export {
  checkSampling,
  SAMPLING_SETTINGS,
  type SamplingName,
  type SamplingSetting,
  type SamplingValues,
} from "./sampling.js";
export type { SchemaSource } from "./schema.js";
export { UpstreamError } from "./upstream.js";
export {
  type ChatMessage,
  messagesToConversation,
  type PromptConditioning,
  type PromptInfo,
  type PromptSource,
  type SteerPrompt,
  SteerVocab,
} from "./vocab.js";
