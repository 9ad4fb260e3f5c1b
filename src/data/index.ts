// The data layer's public API: attribute schemas, the template, the record model, importers and exporters.
export * from "./attributes.js";
export { chatJson, chatLine, importChat } from "./formats/chat.js";
export type { ImportContext, ImportResult, WriteOptions } from "./formats/context.js";
export { importHelpsteer, importPreference } from "./formats/helpsteer.js";
export { importOasst } from "./formats/oasst.js";
export {
  importRegression,
  parseRegressionText,
  regressionJson,
  regressionLines,
} from "./formats/regression.js";
export { importSteerlm, steerlmJson, steerlmLine } from "./formats/steerlm.js";
export { type FileKind, readLines, readParquetRows, sniffFile } from "./input.js";
export { formatInspection, type Inspection, inspectRecords } from "./inspect.js";
export {
  convertFile,
  inspectFile,
  type JobOptions,
  type JobSummary,
  splitFile,
  validateFile,
} from "./jobs.js";
export {
  type DumpOptions,
  dumpsPython,
  fromJs,
  type Json,
  JsonNumber,
  type JsonObject,
  JsonSyntaxError,
  parseJson,
  pythonFloatRepr,
} from "./json.js";
export {
  detectFormat,
  parseFormat,
  type ReadOptions,
  type ReadStats,
  RecordReader,
  type Rejected,
  readRecords,
} from "./read.js";
export * from "./record.js";
export {
  type SplitOptions,
  type SplitResult,
  sampleIndices,
  seededRandom,
  splitRecords,
  validationCount,
} from "./split.js";
export * from "./template.js";
export { parseOutputFormat, recordLines, writeRecords, writeSteerlmJsonl } from "./write.js";
