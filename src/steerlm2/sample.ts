import type { AttributeSchema } from "../data/attributes.js";
import type { DataFormat } from "../data/record.js";
import { SteerlmError } from "../util/errors.js";

/** Options of `steerlm steerlm2 sample`; see src/cli/commands/steerlm2.ts for the method. */
export interface SampleOptions {
  /** The SFT model Q' (GGUF) that samples and scores log Q'(y|a,x). */
  model: string;
  /** The regression APM (run directory or checkpoint) giving P(a|x,y). */
  apm: string;
  /** Prompts (any readable format); each record's last assistant turn's values are its a by default. */
  data: string;
  dataFormat?: DataFormat;
  output: string;
  /** The prior P(y|x) (GGUF); default: the SFT model prompted with the schema's default values. */
  prior?: string;
  /** `label`: each record's own values; `top`: drawn from the top-quality set, as bootstrap does. */
  values?: "label" | "top";
  qualityKey?: string;
  schema?: string | AttributeSchema;
  samples?: number;
  seed?: number;
  temperature?: number;
  topK?: number;
  maxTokens?: number;
  contextSize?: number;
  limit?: number;
  threads?: number;
  overwrite?: boolean;
  progress?: boolean;
  throttleMs?: number;
}

export interface SampleResult {
  output: string;
  groups: number;
  rows: number;
  samples: number;
  skipped: number;
  truncated: number;
  resumedGroups: number;
  seconds: number;
}

export async function runSample(_opts: SampleOptions): Promise<SampleResult> {
  throw new SteerlmError("steerlm2 sample: not implemented yet");
}
