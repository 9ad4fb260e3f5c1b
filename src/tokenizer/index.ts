// The tokenizer module's public surface (re-exported by src/index.ts).
export {
  type BpeTrainOptions,
  DEFAULT_SPECIAL_TOKENS,
  saveTokenizerJson,
  trainByteLevelBpe,
} from "./bpe-train.js";
export { type ConformanceResult, readVocabTests, runConformance, type VocabTestCase } from "./conformance.js";
export {
  addControlTokens,
  addControlTokensToGgufVocab,
  extendEmbeddingRows,
  llamaControlTokenIds,
} from "./control.js";
export { GgufTokenizer, loadGgufTokenizer } from "./gguf.js";
export { HfTokenizer, loadHfTokenizer } from "./hf.js";
export type { HfAddedToken, HfTokenizerConfig, HfTokenizerJson } from "./hf-json.js";
export { loadTokenizer } from "./load.js";
export { type GgufVocab, TOKEN_TYPE, type ToGgufVocabOptions, toGgufVocab } from "./to-gguf.js";
export { ggufVocabTokenizer, ggufVocabToTokenizerJson, tokenizerConfigJson } from "./to-hf.js";
// The control-token table itself (CONTROL_TOKENS, CONTROL_TOKEN_NAMES) is the template's: src/data.
export { encodeParts, encodePartsWithLoss, type Tokenizer, type TokenizerPart } from "./types.js";
