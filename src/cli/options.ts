import { type Command, Option } from "commander";
import { parseFormat } from "../data/read.js";
import { DEFAULT_MAX_TOKENS } from "../inference/completion.js";
import { REMOTE_SETTINGS } from "../inference/engine.js";
import type { Generator } from "../inference/generator.js";
import { type ContrastMode, checkContrast, DEFAULT_CONTRAST, GUIDANCE } from "../inference/mixture.js";
import type { LoadOptions } from "../inference/model.js";
import { type BackendSettings, openGenerator } from "../inference/open.js";
import { SAMPLING_SETTINGS, type SamplingName, type SamplingValues } from "../inference/sampling.js";
import { parseBackendUrl } from "../inference/upstream.js";
import { CONTEXT_SIZE_CAP } from "../inference/vocab.js";
import { type Flags, integerFrom, numberOption, numFlag, optionForSetting, strFlag } from "./flags.js";

/** Options several commands share, each declared once; a command passes only its own help where it differs. */

export interface ModelOptionHelp {
  /** Help of `-m, --model` (required). */
  model?: string;
  /** Help of `--lora`; false: the command takes no adapter. */
  lora?: string | false;
  /** Help of `--schema`; false: the command takes no schema. */
  schema?: string | false;
}

/** `-m, --model <gguf>` (required), `--lora <gguf>`, `--schema <name|file>`. */
export function addModelOptions(cmd: Command, help: ModelOptionHelp = {}): Command {
  cmd.requiredOption("-m, --model <gguf>", help.model ?? "model file");
  if (help.lora !== false)
    cmd.option("--lora <gguf>", help.lora ?? "LoRA adapter applied on top of the model");
  if (help.schema !== false)
    cmd.option(
      "--schema <name|file>",
      help.schema ?? "attribute schema (default: the model's steerlm.schema, else steerlm)",
    );
  return cmd;
}

/** The command-line spelling of each sampling option. */
const SAMPLING_FLAGS: Record<SamplingName, string> = {
  maxTokens: "--max-tokens <n>",
  temperature: "-t, --temperature <t>",
  topK: "--top-k <k>",
  topP: "--top-p <p>",
  seed: "--seed <n>",
};

/**
 * Sampling flags with the library's ranges (SAMPLING_SETTINGS). `defaults` are the command's own (shown
 * in its help); `help` replaces the table's text where the command means more by a flag.
 */
export function addSamplingOptions(
  cmd: Command,
  names: readonly SamplingName[],
  defaults: SamplingValues = {},
  help: Partial<Record<SamplingName, string>> = {},
): Command {
  for (const name of names) {
    const s = SAMPLING_SETTINGS[name];
    cmd.addOption(numberOption(SAMPLING_FLAGS[name], help[name] ?? s.help, s.range, defaults[name]));
  }
  return cmd;
}

/** The sampling options a command declared, as the library takes them. */
export function samplingValues(flags: Flags, names: readonly SamplingName[]): SamplingValues {
  const out: SamplingValues = {};
  for (const name of names) out[name] = numFlag(flags, name);
  return out;
}

/** `--guidance <g>` and `--contrast <mode>`: attribute guidance (src/inference/mixture.ts). */
export function addGuidanceOptions(cmd: Command): Command {
  cmd.addOption(numberOption("--guidance <g>", GUIDANCE.help, GUIDANCE.range, GUIDANCE.default));
  const contrast = new Option(
    "--contrast <mode>",
    "what guidance pushes away from: the attributes given at their schema defaults (defaults) or at the other end of their scales (opposite)",
  ).default(DEFAULT_CONTRAST);
  contrast.argParser((text: string) => checkContrast(text, { field: "--contrast" }));
  return cmd.addOption(contrast);
}

/** What `addGuidanceOptions` declared, as the library takes it. */
export function guidanceValues(flags: Flags): { guidance?: number; contrast?: ContrastMode } {
  return { guidance: numFlag(flags, "guidance"), contrast: flags.contrast as ContrastMode | undefined };
}

/** `--context-size` and `--threads` of a command that opens a model with `openModel`. */
export function addContextOptions(cmd: Command): Command {
  addContextSizeOption(cmd);
  return addThreadsOption(cmd);
}

/** `--threads <n>`: CPU threads. */
export const addThreadsOption = (cmd: Command, help = "CPU threads"): Command =>
  cmd.addOption(numberOption("--threads <n>", help, integerFrom(1)));

/** `--context-size <n>`: tokens per sequence. */
export const addContextSizeOption = (
  cmd: Command,
  help = `tokens per sequence (default: the model's, at most ${CONTEXT_SIZE_CAP})`,
  min = 1,
): Command => cmd.addOption(numberOption("--context-size <n>", help, integerFrom(min)));

/** `--parallel <n>`: work items at once. */
export const addParallelOption = (cmd: Command, help: string, fallback: number): Command =>
  cmd.addOption(numberOption("--parallel <n>", help, integerFrom(1), fallback));

/** `--overwrite`, for resumable jobs: replace a finished output. */
export const addOverwriteOption = (cmd: Command): Command =>
  cmd.option("--overwrite", "replace an existing finished output");

/** `--apm <run|file>` (required unless said): an APM run directory (its newest checkpoint) or a checkpoint file. */
export const addApmOption = (
  cmd: Command,
  help = "APM run directory (newest checkpoint) or checkpoint file",
  required = true,
): Command =>
  required ? cmd.requiredOption("--apm <run|file>", help) : cmd.option("--apm <run|file>", help);

/** The environment variable with the bearer token of a remote engine (kept out of argument lists). */
export const BACKEND_API_KEY_ENV = "STEERLM_BACKEND_API_KEY";

export interface BackendOptionHelp {
  /** `--backend <url>` (default) or `--upstream <url>` (`steerlm serve`). */
  flag?: "--backend" | "--upstream";
  /** Declare `--concurrency` (commands that have no `--parallel` of their own). */
  concurrency?: boolean;
  /** Help of the URL option, where the command uses the engine differently. */
  url?: string;
}

const GENERATE_ON_ENGINE =
  "generate on an OpenAI-compatible engine at this URL (vLLM, SGLang, llama-server, steerlm serve): " +
  "prompts are tokenized here from -m, read vocabulary-only (no weights), and sent as token ids, so -m " +
  "must be the GGUF the engine serves or share its vocabulary";

/**
 * The flags of the remote settings, per URL flag: `steerlm serve` has its own `--request-timeout` (for
 * its clients), so in front of an engine its settings say `upstream`.
 */
// biome-ignore format: one flag per line reads as a table
const REMOTE_FLAGS = {
  "--backend": { concurrency: "--concurrency <n>", retries: "--retries <n>", engineTimeout: "--request-timeout <s>" },
  "--upstream": { concurrency: "--upstream-concurrency <n>", retries: "--upstream-retries <n>", engineTimeout: "--upstream-timeout <s>" },
} as const satisfies Record<string, Record<keyof typeof REMOTE_SETTINGS, string>>;

/**
 * `--backend <url>` (a remote engine generates; `-m` gives only the vocabulary), `--retries`,
 * `--request-timeout` and, where asked, `--concurrency` (for `--upstream`: `--upstream-retries`,
 * `--upstream-timeout`). The engine's bearer token comes from STEERLM_BACKEND_API_KEY.
 */
export function addBackendOptions(cmd: Command, help: BackendOptionHelp = {}): Command {
  const flag = help.flag ?? "--backend";
  const url = help.url ?? GENERATE_ON_ENGINE;
  cmd.addOption(
    optionForSetting(
      new Option(`${flag} <url>`, `${url}; bearer token: $${BACKEND_API_KEY_ENV}`).argParser((text: string) =>
        parseBackendUrl(text, { field: flag }),
      ),
      "backend",
    ),
  );
  const remote = (name: keyof typeof REMOTE_SETTINGS) => {
    const { help: text, default: fallback, range } = REMOTE_SETTINGS[name];
    // No commander default: a setting given without the engine is refused, so "given" must be visible.
    const option = numberOption(
      REMOTE_FLAGS[flag][name],
      `with ${flag}: ${text} (default: ${fallback})`,
      range,
    );
    return cmd.addOption(optionForSetting(option, name));
  };
  if (help.concurrency) remote("concurrency");
  remote("retries");
  return remote("engineTimeout");
}

/** What `addBackendOptions` declared (with the same `flag`), as the library takes it. */
export function backendValues(flags: Flags, flag: BackendOptionHelp["flag"] = "--backend"): BackendSettings {
  const given = (name: keyof typeof REMOTE_SETTINGS) =>
    numFlag(flags, new Option(REMOTE_FLAGS[flag][name]).attributeName());
  const backend = strFlag(flags, new Option(`${flag} <url>`).attributeName());
  return {
    backend,
    concurrency: given("concurrency"),
    retries: given("retries"),
    engineTimeout: given("engineTimeout"),
    backendApiKey: backend === undefined ? undefined : process.env[BACKEND_API_KEY_ENV] || undefined,
  };
}

/**
 * The model `addModelOptions` declared, loaded with the command's other load settings; or, with the
 * options of `addBackendOptions`, the remote engine that generates for it.
 */
export function openModel(
  flags: Flags,
  more: Omit<LoadOptions, "modelPath" | "loraPath" | "schema"> = {},
  flag: BackendOptionHelp["flag"] = "--backend",
): Promise<Generator> {
  return openGenerator({
    modelPath: String(flags.model),
    loraPath: strFlag(flags, "lora"),
    schema: strFlag(flags, "schema"),
    // declared with the model options by every command that opens a model (addContextOptions)
    contextSize: numFlag(flags, "contextSize"),
    threads: numFlag(flags, "threads"),
    ...more,
    ...backendValues(flags, flag),
  });
}

export interface GenerationJobHelp extends ModelOptionHelp {
  apm: string;
  data: string;
  output: string;
  qualityKey: string;
  seed: string;
}

/**
 * The options of the jobs that generate with an SFT model and score with an APM (`bootstrap`, `steerlm2
 * sample`): the model, the APM, the data, the output, the sampling flags and the job's resources.
 * `more` adds the command's own options where they belong in the help (after --quality-key).
 */
export function addGenerationJobOptions(
  cmd: Command,
  help: GenerationJobHelp,
  sampling: readonly SamplingName[],
  defaults: SamplingValues,
  more: (cmd: Command) => void,
): Command {
  addModelOptions(cmd, help);
  addApmOption(cmd, help.apm)
    .requiredOption("--data <file>", help.data)
    .requiredOption("-o, --output <file>", help.output)
    .option("--from <format>", "format of --data (default: detected)")
    .option("--quality-key <name>", help.qualityKey);
  more(cmd);
  addSamplingOptions(cmd, sampling, defaults, {
    seed: help.seed,
    maxTokens: `most tokens per response (default: ${DEFAULT_MAX_TOKENS}, or what fits)`,
  });
  addContextSizeOption(cmd).addOption(
    numberOption("--limit <n>", "only the first n prompts", integerFrom(1)),
  );
  addThreadsOption(cmd);
  addBackendOptions(cmd, { concurrency: true });
  return addOverwriteOption(cmd);
}

/** What `addGenerationJobOptions` declared, as the library's job options take it. */
export function generationJobValues(flags: Flags, sampling: readonly SamplingName[]) {
  const from = strFlag(flags, "from");
  return {
    model: flags.model as string,
    apm: flags.apm as string,
    data: flags.data as string,
    dataFormat: from === undefined ? undefined : parseFormat(from),
    output: flags.output as string,
    schema: strFlag(flags, "schema"),
    qualityKey: strFlag(flags, "qualityKey"),
    ...samplingValues(flags, sampling),
    contextSize: numFlag(flags, "contextSize"),
    limit: numFlag(flags, "limit"),
    threads: numFlag(flags, "threads"),
    overwrite: Boolean(flags.overwrite),
    ...backendValues(flags),
  };
}

/** A test hook: milliseconds to wait after each group, from the environment variable `name`. */
export function throttleFrom(name: string): number | undefined {
  const ms = Number(process.env[name] ?? 0);
  return ms > 0 ? ms : undefined;
}
