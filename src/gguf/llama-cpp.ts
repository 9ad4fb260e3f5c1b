import type { LlamaModel, LlamaModelOptions } from "node-llama-cpp";
import { getLlamaRuntime } from "../runtime/llama.js";
import { InputError } from "../util/errors.js";
import { readGguf } from "./reader.js";
import type { GgufFile } from "./types.js";

/**
 * The one way a GGUF reaches node-llama-cpp. Its loader parses the header with a reader that trusts counts
 * and lengths, so a corrupt file (a tensor count of 2^40) makes it allocate without bound; steerlm's reader
 * bounds every allocation by the file size and names the byte and field of a problem. So every model and
 * vocabulary is read by `readGguf` first; a LoRA adapter, which node-llama-cpp takes by path when it makes a
 * context, goes through `readGguf` at that call.
 */
export async function loadLlamaModel(
  path: string,
  options: Omit<LlamaModelOptions, "modelPath"> = {},
): Promise<{ model: LlamaModel; file: GgufFile }> {
  const file = await readGguf(path);
  const llama = await getLlamaRuntime();
  try {
    const model = await llama.loadModel({ gpuLayers: llama.gpu ? "auto" : 0, ...options, modelPath: path });
    return { model, file };
  } catch (err) {
    throw new InputError(`llama.cpp cannot load it: ${(err as Error).message}`, { file: path });
  }
}
