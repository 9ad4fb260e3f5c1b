/**
 * A Llama-family GGUF as a Hugging Face directory (`steerlm export hf model.gguf`): its config, its weights
 * (dequantised to the chosen float type), its byte-level BPE vocabulary as a tokenizer.json, and, when
 * steerlm wrote it, the SteerLM schema and steering chat template.
 */
import { metaString, readGguf, readTensorF32 } from "../gguf/reader.js";
import { ggufSchema } from "../gguf/schema.js";
import { readGgufVocab } from "../gguf/vocab.js";
import { llamaArchFor, llamaTensorShapes, readLlamaConfig } from "../model/llama-gguf.js";
import { ggufVocabTokenizer } from "../tokenizer/to-hf.js";
import { InputError } from "../util/errors.js";
import { type HfWriteOptions, type HfWriteResult, writeHfModel } from "./hf-write.js";

export async function ggufToHf(path: string, dir: string, opts: HfWriteOptions = {}): Promise<HfWriteResult> {
  const file = await readGguf(path);
  if (metaString(file, "general.type", "model") === "adapter") {
    throw new InputError(
      "this is a LoRA adapter GGUF, not a model",
      { file: path, field: "general.type" },
      "export the LoRA run itself: `steerlm export hf <run> --lora -o <dir>`",
    );
  }
  const config = readLlamaConfig(file);
  const expected = new Set(llamaTensorShapes(config).map((t) => t.name));
  const unknown = file.tensors.find((t) => !expected.has(t.name));
  if (unknown !== undefined) {
    throw new InputError(
      "a tensor the Hugging Face model would not have (it would be lost)",
      { file: path, field: unknown.name },
      unknown.name === "rope_freqs.weight" ? "Llama 3 RoPE scaling is not supported" : undefined,
    );
  }
  const vocab = readGgufVocab(file);
  const tokenizer = ggufVocabTokenizer(vocab, path);
  const schema = ggufSchema(file);
  return writeHfModel(
    dir,
    {
      config,
      arch: llamaArchFor(config),
      weight: (name) => readTensorF32(file, name),
      tokenizer,
      schema,
      ...(vocab.chatTemplate !== undefined ? { chatTemplate: vocab.chatTemplate } : {}),
    },
    opts,
  );
}
