// The attribute prediction model (SteerLM steps 1 and 2): regression APM training and resumable annotation.
export {
  type AgreementReport,
  type AttributeAgreement,
  formatAgreement,
  labelAgreement,
} from "./agreement.js";
export { type AnnotateOptions, type AnnotateResult, annotateFile } from "./annotate.js";
export {
  ApmBatcher,
  type ApmExample,
  apmTargets,
  apmTokens,
  type EncodedApmData,
  encodeApmRecords,
  packApmBatch,
} from "./data.js";
export { attributeTokenIds, decodeGenerative } from "./generative.js";
export {
  APM_TASK,
  type ApmInfo,
  ApmPredictor,
  type ApmVariant,
  apmInfoOf,
  type LoadedApm,
  loadApm,
} from "./model.js";
export { partialPaths } from "./resume.js";
export { ApmScorer, chatRecord, type TurnScore } from "./score.js";
export { type ApmResult, type ApmRunOptions, apmObjective, runApmTrain } from "./train.js";
