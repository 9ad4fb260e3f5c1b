// Attribute-conditioned SFT: the run, its settings, checkpoints and GGUF export (re-exported by src/index.ts).
export {
  type CheckpointData as SftCheckpointData,
  type CheckpointHeader as SftCheckpointHeader,
  latestCheckpoint as latestSftCheckpoint,
  readCheckpoint as readSftCheckpoint,
} from "./checkpoint.js";
export {
  type ModelInitInput,
  type ResolvedSftConfig,
  resolveSftConfig,
  SFT_DEFAULTS,
  type SftConfig,
} from "./config.js";
export {
  type ExportOptions,
  type ExportResult,
  exportGguf,
  exportLoraAdapter,
  type LoraExportResult,
} from "./export.js";
export { lossCurvePng } from "./png.js";
export {
  resolveResumeConfig,
  runSft,
  type SftObjective,
  type SftResult,
  type SftRunOptions,
  type TrainBatches,
} from "./run.js";
