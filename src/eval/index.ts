// Evaluation: FastChat's benchmark, answer and judgment formats; judging through any OpenAI-compatible
// endpoint; FastChat's aggregates and the "% of ChatGPT" ratio; attribute adherence with the oracle; the APM
// as a reward model; two-attribute Pareto fronts.
export {
  type AdherenceOptions,
  type AdherenceReport,
  type AdherenceSample,
  type AttributeAdherence,
  formatAdherence,
  measureAdherence,
  summarizeAdherence,
  sweepPlan,
} from "./adherence.js";
export {
  type PairReport,
  type PairSummary,
  relativeTo,
  reviewNamesFor,
  type ScoreTotals,
  type SingleSummary,
  scoreTotals,
  summarizePairs,
  summarizeSingle,
} from "./aggregate.js";
export {
  type AnswerModel,
  type AnswerOptions,
  type AnswerResult,
  FASTCHAT_TEMPERATURES,
  generateAnswers,
  sortAnswerFile,
  temperatureFor,
} from "./answer.js";
export { apmMeasurer, type BatchMeasurer, type MeasureItem } from "./apm-measure.js";
export { BENCHES, type Bench, FASTCHAT_ENV, fastchatDir, loadBench } from "./bench.js";
export { type JudgeEndpoint, type JudgeFn, openAiJudge } from "./client.js";
export { bradleyTerry, bradleyTerryDefined, type Outcome, pairOutcomes } from "./elo.js";
export * from "./formats.js";
export {
  type AnswerSet,
  answerSet,
  type EvalJudgeMode,
  type JudgeRunOptions,
  type JudgeRunResult,
  runJudgments,
} from "./judge.js";
export {
  formatPareto,
  hypervolume2d,
  type ParetoOptions,
  type ParetoPoint,
  type ParetoReport,
  paretoFront,
  paretoSweep,
} from "./pareto.js";
export { paretoChart } from "./pareto-chart.js";
export {
  type ChatMessage as JudgeMessage,
  formatTemplate,
  judgedTurns,
  judgePromptName,
  legacyReviewMessages,
  NEED_REF_CATS,
  pairJudgeMessages,
  singleJudgeMessages,
} from "./prompts.js";
export { buildReport, type EvalReport, formatReport } from "./report.js";
export {
  type Accuracy,
  evaluateReward,
  formatReward,
  NVIDIA_REWARD_WEIGHTS,
  parseWeights,
  REWARD_DEFAULTS,
  type RewardOptions,
  type RewardReport,
} from "./reward.js";
export { type PairFile, type PreferencePair, readPairs } from "./reward-pairs.js";
export { spearman } from "./spearman.js";
export {
  bootstrap,
  bootstrapMean,
  disjoint,
  type Estimate,
  mean,
  type RelativeScore,
  type ResampleOptions,
  relativeScore,
  type ScorePair,
  stdev,
} from "./stats.js";
export {
  type Measurer,
  runSweep,
  type SweepJob,
  type SweepOptions,
  type SweepPrompt,
  type SweepResult,
  sweepPrompts,
} from "./sweep.js";
export {
  type GameWinner,
  type Parsed,
  parseGame,
  parseLegacyScores,
  parsePairVerdict,
  parseRating,
  parseTwoRatings,
  TIE_DELTA,
} from "./verdict.js";
