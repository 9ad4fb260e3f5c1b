// SteerBench: a seeded synthetic steerability benchmark and the oracle that scores it.
export { composeResponse, DERIVED_ATTRIBUTES, sampleValues, withDerived } from "./compose.js";
export { type Companions, companionsFrom, requestFor, turnLabels } from "./derived.js";
export { benchFile, toNemoLine, writeBench } from "./jsonl.js";
export { MAX_CHARS, scoreResponse } from "./oracle.js";
export {
  type AgreementStat,
  type RowScore,
  type ScoreFileOptions,
  type ScoreSummary,
  scoreFile,
  writeRowScores,
} from "./score.js";
export { gradeAnswer, parsePrompt } from "./solve.js";
export { helpfulnessOf, qualityOf } from "./style.js";
export {
  BENCH_SYSTEM_PROMPT,
  type BenchMeta,
  SPLITS,
  type SplitName,
  SYNTH_DEFAULTS,
  type SynthOptions,
  type SynthResult,
  splitOfPrompt,
  splitSizes,
  synthesize,
} from "./synth.js";
export { FAMILIES, type Family, type Solution, type Task } from "./tasks.js";
