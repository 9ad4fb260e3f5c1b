// Steerable generation: load a GGUF, render the SteerLM inference prompt, generate, stream.
export { ContextLengthError, type FinishReason } from "./completion.js";
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
export { AbortedError, BusyError } from "./pool.js";
export type { ControlMode } from "./prompt.js";
export {
  checkSampling,
  SAMPLING_SETTINGS,
  type SamplingName,
  type SamplingSetting,
  type SamplingValues,
} from "./sampling.js";
export type { SchemaSource } from "./schema.js";
export {
  type ChatMessage,
  messagesToConversation,
  type PromptInfo,
  type PromptSource,
  type SteerPrompt,
  SteerVocab,
} from "./vocab.js";
