// Steerable generation: load a GGUF, render the SteerLM inference prompt, generate, stream; attribute
// guidance and fractional values mix conditionings.

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
  type ChatMessage,
  type CompleteOptions,
  ContextLengthError,
  type FinishReason,
  type GenerateOptions,
  type GenerateResult,
  type LoadOptions,
  messagesToConversation,
  type PromptConditioning,
  type PromptInfo,
  type SamplingOptions,
  SteerableModel,
  type SteerPrompt,
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
