// Model interop: Hugging Face checkpoints in (safetensors + config.json + tokenizer.json -> GGUF) and out
// (a Llama-family model or a LoRA adapter -> a Hugging Face or PEFT directory).

export { checkHfModelAgainstLlamaCpp, type HfCheckOptions, hfWeightSource } from "./check.js";
export { type HfCheckpoint, openHfCheckpoint } from "./checkpoint.js";
export {
  type ConvertOptions,
  type ConvertResult,
  type ConvertType,
  convertHfToGguf,
  type HfModel,
  openHfModel,
} from "./convert.js";
export { ggufToHf } from "./gguf-to-hf.js";
export {
  type HfConfigOptions,
  type HfDtype,
  type HfFamily,
  type HfModelSpec,
  mapHfConfig,
  type RopeScaling,
  readHfConfig,
  toHfConfig,
} from "./hf-config.js";
export { permuteQkRows, planTensors, type TensorPlanEntry, unpermuteQkRows } from "./hf-tensors.js";
export {
  DEFAULT_MAX_SHARD_SIZE,
  type HfModelInput,
  type HfTokenizerFiles,
  type HfWriteOptions,
  type HfWriteResult,
  parseShardSize,
  writeHfModel,
} from "./hf-write.js";
export { type LoraAdapterInput, writeLoraAdapterGguf } from "./lora-gguf.js";
export { type PeftAdapterInput, writePeftAdapter } from "./peft.js";
export {
  readSafetensorsF32,
  readSafetensorsHeader,
  type SafetensorsFile,
  type SafetensorsTensor,
  type SafetensorsTensorInput,
  writeSafetensors,
} from "./safetensors.js";
export { steeringChatTemplate } from "./steering.js";
