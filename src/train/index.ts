export { type Batch, IGNORE } from "./batch.js";
export {
  BENCH_CONFIGS,
  type BenchName,
  benchTrain,
  type TrainBenchOptions,
  type TrainBenchResult,
} from "./bench.js";
export {
  CHECKPOINT_MAGIC,
  CHECKPOINT_VERSION,
  type CheckpointBlob,
  type CheckpointBlobKind,
  type CheckpointState,
  captureCheckpoint,
  readCheckpoint,
  readCheckpointFile,
  restoreCheckpoint,
  writeCheckpoint,
  writeCheckpointFile,
} from "./checkpoint.js";
export {
  IsolatedJobError,
  type IsolateOptions,
  type JobContext,
  type JobFunction,
  runIsolated,
} from "./isolate.js";
export { learningRate, type ScheduleOptions } from "./schedule.js";
export {
  type OptimizerOptions,
  type StepResult,
  Trainer,
  type TrainerOptions,
  type TrainTask,
} from "./trainer.js";
