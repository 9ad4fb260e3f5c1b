import { InputError } from "../util/errors.js";

/** The distributed training engines `steerlm export job` writes jobs for. */
export type Engine = "trl" | "nemo-rl" | "nemo-aligner";
export const ENGINES: readonly Engine[] = ["trl", "nemo-rl", "nemo-aligner"];

/**
 * The release each job targets and the source its keys were checked against: the key lists and data
 * schemas in test/fixtures/engines/ come from these commits (docs/engines-training.md).
 */
export interface EngineInfo {
  title: string;
  version: string;
  /** repo@commit (tag) the emitted keys were checked against. */
  source: string;
  /** Other releases the job pins. */
  pins: string[];
}

export const ENGINE_INFO: Record<Engine, EngineInfo> = {
  trl: {
    title: "TRL",
    version: "1.9.0",
    source: "huggingface/trl@35def3ee000a87f6839e66f4b7749b06274ed1b3 (v1.9.0)",
    pins: [
      "transformers 5.x, at least 5.5 (TrainingArguments from huggingface/transformers@00349ae87eddc872ffa21a8a54f264375a0056a8)",
      "accelerate 1.14.0 (huggingface/accelerate@beb0672aa8444ea7647aee056f624effe5996346)",
    ],
  },
  "nemo-rl": {
    title: "NeMo RL",
    version: "0.7.0",
    source: "NVIDIA-NeMo/RL@81aa43dda4765b0429cf31dab44441e4e4383911 (v0.7.0)",
    pins: ["torch 2.11.0 and transformers >=5.5.0,<5.9.0, as NeMo RL 0.7.0 pins them (uv resolves them)"],
  },
  "nemo-aligner": {
    title: "NeMo-Aligner",
    version: "0.7.0",
    source: "NVIDIA/NeMo-Aligner@0d72d2829d34c07cd8685348c0f37f6b6b7e5834 (v0.7.0)",
    pins: ["a NeMo container that ships NeMo-Aligner 0.7.0 (NeMo-Aligner is archived)"],
  },
};

export function parseEngine(name: string): Engine {
  if ((ENGINES as readonly string[]).includes(name)) return name as Engine;
  throw new InputError(
    `unknown engine ${JSON.stringify(name)}`,
    { setting: "engine" },
    `engines: ${ENGINES.join(", ")}`,
  );
}
