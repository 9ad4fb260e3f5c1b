// The GGUF module's public surface (re-exported by src/index.ts): the file format, no model architecture
// (Llama's tensor names and metadata are src/model/llama-gguf.ts). `GgufVocab` is reachable as the
// tokenizer module's structurally identical type of the same name; ours lives in ./vocab.ts.
export * from "./quant.js";
export * from "./reader.js";
export * from "./types.js";
export { GGUF_TOKEN_TYPE, LLAMA_CPP_BPE_PRE, readGgufVocab, validateVocab, vocabMetadata } from "./vocab.js";
export {
  ENCODABLE_TYPES,
  encodeTensor,
  type GgufTensorInput,
  type GgufWriteInput,
  writeGguf,
} from "./writer.js";
