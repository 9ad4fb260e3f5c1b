// Model interop: Hugging Face checkpoints in (safetensors + config.json + tokenizer.json -> GGUF).

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
export { type HfFamily, type HfModelSpec, mapHfConfig, type RopeScaling, readHfConfig } from "./hf-config.js";
export { permuteQkRows, planTensors, type TensorPlanEntry } from "./hf-tensors.js";
export { type LoraAdapterInput, writeLoraAdapterGguf } from "./lora-gguf.js";
export {
  readSafetensorsF32,
  readSafetensorsHeader,
  type SafetensorsFile,
  type SafetensorsTensor,
} from "./safetensors.js";
