export { checkModelAgainstLlamaCpp, DEFAULT_CHECK_TEXT, type ModelCheckResult } from "./check.js";
export { type LlamaConfig, type LlamaConfigInput, resolveLlamaConfig } from "./config.js";
export { forwardLogits, logSoftmaxRows } from "./infer.js";
export {
  type LlamaArch,
  type LlamaGgufInput,
  type LlamaGlobalTensor,
  type LlamaLayerTensor,
  type LlamaMetadataOptions,
  type LlamaTensorKind,
  llamaArchFor,
  llamaMetadata,
  llamaRopeStyle,
  llamaTensorName,
  llamaTensorShapes,
  readLlamaConfig,
  writeLlamaGguf,
} from "./llama-gguf.js";
export { LOGIT_CHUNK_VALUES, logitChunk } from "./lm-head.js";
export { ggufWeightSource, type LoadedModel, loadLlamaGguf } from "./load.js";
export { LORA_TARGETS, type LoraOptions, type LoraTarget, loraNames } from "./lora.js";
export {
  type FrozenType,
  frozenStorage,
  LlamaModel,
  LORA_FROZEN_DEFAULT,
  type ModelOptions,
  type ParamInfo,
} from "./model.js";
export { transposeQ8_0 } from "./q8.js";
export {
  countParameters,
  initLlamaWeights,
  llamaTensorSpecs,
  mapSource,
  type TensorSpec,
  type WeightSource,
} from "./weights.js";
