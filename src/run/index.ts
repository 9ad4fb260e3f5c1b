// The training run every job shares: its settings, checkpoints, SFT, GGUF and Hugging Face export (re-exported by src/index.ts).
export {
  type CheckpointData as SftCheckpointData,
  type CheckpointHeader as SftCheckpointHeader,
  latestCheckpoint as latestSftCheckpoint,
  readCheckpoint as readSftCheckpoint,
} from "./checkpoint.js";
export { type ResolvedSftConfig, resolveResumeConfig, resolveSftConfig } from "./config.js";
export {
  type ExportOptions,
  type ExportResult,
  exportGguf,
  exportLoraAdapter,
  type LoraExportResult,
} from "./export.js";
export {
  exportHf,
  exportPeftAdapter,
  type HfExportOptions,
  type HfExportResult,
  type PeftExportResult,
} from "./export-hf.js";
export {
  type Objective,
  type PreparedData,
  type RunOptions,
  type RunResult,
  runTraining,
  type TrainBatches,
} from "./loop.js";
export { lossCurve } from "./metrics.js";
export { type ModelInitInput, SETTINGS, SFT_DEFAULTS, type SftConfig } from "./settings.js";
export { runSft, type SftObjective, type SftResult, type SftRunOptions, sftObjective } from "./sft.js";
