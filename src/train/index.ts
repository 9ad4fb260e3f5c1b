export { type Batch, IGNORE } from "./batch.js";
export {
  BENCH_CONFIGS,
  type BenchName,
  benchTrain,
  type TrainBenchOptions,
  type TrainBenchResult,
} from "./bench.js";
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
