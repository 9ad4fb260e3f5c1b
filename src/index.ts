// The public library API: everything the CLI does is reachable from here.

export * from "./apm/index.js";
export * from "./bootstrap/index.js";
export { type ChatTemplateOptions, jinjaChatTemplate } from "./data/chat-template.js";
export * from "./data/index.js";
export * from "./demo/index.js";
export * from "./eval/index.js";
export * from "./ggml/index.js";
export * from "./gguf/index.js";
export * from "./inference/index.js";
export * from "./interop/index.js";
export {
  ENGINE_INFO as TRAINING_ENGINE_INFO,
  ENGINES as TRAINING_ENGINES,
  type Engine as TrainingEngine,
  type EngineInfo as TrainingEngineInfo,
  type ExportJobOptions,
  type ExportJobResult,
  exportJob,
} from "./jobs/index.js";
export * from "./model/index.js";
export * from "./reproduce/index.js";
export * from "./run/index.js";
export * from "./serve/index.js";
export {
  type BenchMeta,
  FAMILIES as STEERBENCH_FAMILIES,
  type ScoreSummary as BenchScoreSummary,
  type SynthOptions,
  type SynthResult,
  scoreFile as scoreBenchFile,
  scoreResponse,
  synthesize,
  writeBench,
} from "./steerbench/index.js";
export {
  BETA_CONCENTRATION,
  BETA_EPSILON,
  betaParams as steerlm2BetaParams,
  incompleteBeta,
  lnBeta,
  lnGamma,
  logLevelProbability as steerlm2LogLevelProbability,
  logPAttributes as steerlm2LogPAttributes,
  regularizedIncompleteBeta,
} from "./steerlm2/beta.js";
export {
  parseInfo as parseSteerlm2Info,
  readSamples as readSteerlm2Samples,
  type SampleInfo as Steerlm2SampleInfo,
  STEERLM2_KEY,
  type Steerlm2Group,
  type Steerlm2Sample,
  sampleLine as steerlm2SampleLine,
  targetWeights as steerlm2TargetWeights,
} from "./steerlm2/format.js";
export {
  runSample as runSteerlm2Sample,
  type SampleOptions as Steerlm2SampleOptions,
  type SampleResult as Steerlm2SampleResult,
  STEERLM2_PROGRESS_FORMAT,
  sampleSeed as steerlm2SampleSeed,
} from "./steerlm2/sample.js";
export { GgufScorer } from "./steerlm2/score.js";
export {
  readSampleInfos,
  runSteerlm2Train,
  STEERLM2_OBJECTIVE,
  steerlm2Objective,
} from "./steerlm2/train.js";
export {
  type GroupCoefficients,
  groupCoefficients,
  lossWeights as steerlm2LossWeights,
} from "./steerlm2/train-weights.js";
export * from "./tokenizer/index.js";
export * from "./train/index.js";
export { AtomicFile, checkOutputs, writeFileAtomic } from "./util/atomic.js";
export { InputError, SteerlmError } from "./util/errors.js";
export { acquireLock, FileLock } from "./util/lock.js";
export { Rng, type RngState } from "./util/rng.js";
export { version } from "./version.js";
