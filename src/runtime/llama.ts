import { getLlama, type Llama, LlamaLogLevel } from "node-llama-cpp";
import { log } from "../util/log.js";

/**
 * The one node-llama-cpp instance of the process. Prebuilt binaries only: nothing may be downloaded or
 * compiled at run time here. CPU unless STEERLM_GPU=cuda asks for CUDA (the GPU machine checks).
 */
let instance: Promise<Llama> | undefined;

/**
 * llama.cpp warnings that every steerlm export triggers on purpose, kept at debug level. steerlm marks
 * `<extra_id_1>` as the end-of-turn token; llama.cpp recognises end-of-generation tokens by a fixed list of
 * texts, warns that this one is not among them, and then adds it anyway (llama-vocab.cpp, load).
 */
const EXPECTED_WARNINGS = ["special_eot_id is not in special_eog_ids"];

export function getLlamaRuntime(): Promise<Llama> {
  instance ??= getLlama({
    gpu: process.env.STEERLM_GPU === "cuda" ? "cuda" : false,
    build: "never",
    logLevel: LlamaLogLevel.warn,
    logger: (level, message) => {
      const text = message.trimEnd();
      if (!text) return;
      if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) log.error(`llama.cpp: ${text}`);
      else if (level === LlamaLogLevel.warn && !EXPECTED_WARNINGS.some((w) => text.includes(w)))
        log.warn(`llama.cpp: ${text}`);
      else log.debug(`llama.cpp: ${text}`);
    },
  });
  return instance;
}
