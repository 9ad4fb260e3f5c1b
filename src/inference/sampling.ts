import type { Place } from "../util/errors.js";
import { checkNumber, type NumberRange } from "../util/numbers.js";

/**
 * The sampling options, once: range, default, the request field of the OpenAI-style API and help text.
 * The library checks them (`checkSampling`), the server reads its request fields with them and the CLI
 * declares its flags from them, so a value means the same and is refused the same way everywhere.
 */
export interface SamplingSetting {
  range: NumberRange;
  /** The library's value when none is given (absent: llama.cpp's own, or none). */
  default?: number;
  /** The request field of the HTTP API; `apiDefault` is its value when a request leaves it out. */
  api: string;
  apiDefault?: number;
  help: string;
}

// biome-ignore format: one option per line reads as a table
export const SAMPLING_SETTINGS = {
  maxTokens: { range: { integer: true, min: 1 }, api: "max_tokens", help: "most tokens to generate" },
  // OpenAI's range; its API default is 1, steerlm's library and CLI default is greedy decoding.
  temperature: { range: { min: 0, max: 2 }, default: 0, api: "temperature", apiDefault: 1, help: "sampling temperature; 0 is greedy" },
  topK: { range: { integer: true, min: 0, max: 1_000_000 }, api: "top_k", help: "sample from the k most likely tokens (0: all)" },
  // 0 keeps only the most likely token (llama.cpp's top-p keeps at least one): greedy, as in OpenAI's API.
  topP: { range: { min: 0, max: 1 }, api: "top_p", help: "nucleus sampling threshold (0: only the most likely token)" },
  seed: { range: { integer: true, min: 0, max: 2 ** 32 - 1 }, api: "seed", help: "sampling seed" },
} as const satisfies Record<string, SamplingSetting>;

export type SamplingName = keyof typeof SAMPLING_SETTINGS;

export const SAMPLING_NAMES = Object.keys(SAMPLING_SETTINGS) as SamplingName[];

/** Sampling options as numbers: the ones the table describes. */
export type SamplingValues = Partial<Record<SamplingName, number>>;

/** One option's value checked against the table; undefined stays undefined. */
export function checkSamplingValue(name: SamplingName, value: unknown, place: Place): number | undefined {
  if (value === undefined) return undefined;
  return checkNumber(value, SAMPLING_SETTINGS[name].range, place);
}

/** Every option of `opts` the table describes, each refused at its setting name when out of range. */
export function checkSampling(opts: SamplingValues): void {
  for (const name of SAMPLING_NAMES) checkSamplingValue(name, opts[name], { setting: name });
}

/** OpenAI's logit_bias range: added to a token's logit before sampling. */
export const LOGIT_BIAS_RANGE: NumberRange = { min: -100, max: 100 };

/** Library settings the API takes inside its `steerlm` object. */
const STEERLM_SETTINGS = new Set(["attributes", "guidance", "contrast"]);

/** Request fields of the other library settings the table does not hold. */
const OTHER_API_FIELDS: Readonly<Record<string, string>> = { logitBias: "logit_bias" };

/** The request field of a library setting (`topP` -> `top_p`, `guidance` -> `steerlm.guidance`). */
export function apiField(setting: string): string {
  if (STEERLM_SETTINGS.has(setting)) return `steerlm.${setting}`;
  return setting in SAMPLING_SETTINGS
    ? SAMPLING_SETTINGS[setting as SamplingName].api
    : (OTHER_API_FIELDS[setting] ?? setting);
}
