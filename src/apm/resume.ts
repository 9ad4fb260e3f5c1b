import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import { basename, dirname, resolve } from "node:path";
import type { AttributeSchema } from "../data/attributes.js";
import type { DataRecord } from "../data/record.js";
import { ContextLengthError } from "../inference/completion.js";
import type { Generator } from "../inference/generator.js";
import { type BackendSettings, openGenerator } from "../inference/open.js";
import { checkOutputs, removeLeftoverTemps, syncDir, writeAllSync, writeFileAtomic } from "../util/atomic.js";
import { InputError } from "../util/errors.js";
import { acquireLock, type FileLock } from "../util/lock.js";
import { log } from "../util/log.js";
import { checkNumber } from "../util/numbers.js";

/**
 * The resumable jobs (`annotate`, `bootstrap`, `steerlm2 sample`) start, resume and finish here. The
 * output grows as `<out>.partial`; `<out>.partial.json` (the sidecar, replaced atomically after each
 * fsynced group) says how many input rows are done, how long and with which SHA-256 the verified output
 * prefix is, which input rows (SHA-256) and APM (SHA-256) made it, and the settings. A rerun checks all
 * of them, truncates whatever follows the recorded prefix and goes on; at the end `.partial` is renamed to
 * the output (atomic) and the sidecar removed.
 */
export const SIDECAR_FORMAT = "steerlm-annotate-progress";

/** Settings a resumed run must share with the partial one (compared key by key). */
export type ResumeSettings = Readonly<Record<string, string | number | boolean | null>>;

/** `format` names the command that wrote it (each job has its own). */
export interface Sidecar<S extends ResumeSettings = ResumeSettings> {
  format: string;
  version: 1;
  input: string;
  apm: string;
  settings: S;
  rows: number;
  outputBytes: number;
  outputSha256: string;
  inputSha256: string;
}

export function partialPaths(output: string): { partial: string; sidecar: string } {
  return { partial: `${output}.partial`, sidecar: `${output}.partial.json` };
}

/** A started job's files, and its lock on the output (release it when the job ends, however it ends). */
export interface JobFiles {
  partial: string;
  sidecar: string;
  lock: FileLock;
}

export interface JobStart {
  /** The files the job reads, by the setting that names them; a missing one is refused before any work. */
  inputs: Readonly<Record<string, string | undefined>>;
  output: string;
  overwrite?: boolean;
  /** Completes the hint "pass --overwrite to … again" (the command's name). */
  again: string;
  /** The setting that sizes a resumable group, and its value: a whole number ≥ 1. */
  group: readonly [setting: string, size: number];
}

/**
 * Everything a resumable job checks before any work: the group size, its input files, and its output:
 * a file in an existing folder, not used by another process (`<out>.lock`), and a finished output is only
 * replaced with `overwrite` (an unfinished one, with its .partial, is resumed).
 */
export function startJob(job: JobStart): JobFiles {
  const [setting, size] = job.group;
  checkNumber(size, { integer: true, min: 1 }, { setting });
  for (const [name, path] of Object.entries(job.inputs)) {
    if (path !== undefined && !existsSync(path))
      throw new InputError("no such file", { file: path, setting: name });
  }
  const { output } = job;
  checkOutputs({ output }, job.inputs);
  const paths = partialPaths(output);
  const lock = acquireLock(`${output}.lock`, output);
  if (existsSync(output) && !existsSync(paths.partial) && !job.overwrite) {
    lock.release();
    throw new InputError(
      "the output already exists",
      { file: output },
      `pass --overwrite to ${job.again} again`,
    );
  }
  // A sidecar being replaced when an earlier run was killed: the lock says no one else writes it.
  removeLeftoverTemps(dirname(resolve(output)), basename(paths.sidecar));
  return { ...paths, lock };
}

/**
 * What the jobs that generate with an SFT model (bootstrap, steerlm2 sample) share. With `backend`, an
 * engine generates (`concurrency` requests in flight) and `model` gives the vocabulary.
 */
export interface GenerationJobOptions extends BackendSettings {
  /** The SFT model (GGUF) that generates. */
  model: string;
  /** A LoRA adapter GGUF applied on top of `model`. */
  lora?: string;
  /** The SFT model's schema (name, file or schema); default: the GGUF's `steerlm.schema`, else steerlm. */
  schema?: string | AttributeSchema;
  contextSize?: number;
  threads?: number;
  output: string;
  /** Replace an existing finished output. */
  overwrite?: boolean;
}

/** `startJob`, then the model that generates, loaded (or connected to) as the job's options say. */
export async function startGenerationJob(
  opts: GenerationJobOptions,
  job: Omit<JobStart, "output" | "overwrite">,
): Promise<{ paths: JobFiles; model: Generator }> {
  const paths = startJob({ ...job, output: opts.output, overwrite: opts.overwrite });
  try {
    const model = await openGenerator({
      modelPath: opts.model,
      loraPath: opts.lora,
      schema: opts.schema,
      contextSize: opts.contextSize,
      threads: opts.threads,
      backend: opts.backend,
      concurrency: opts.concurrency,
      retries: opts.retries,
      engineTimeout: opts.engineTimeout,
      backendApiKey: opts.backendApiKey,
    });
    return { paths, model };
  } catch (err) {
    paths.lock.release();
    throw err;
  }
}

/**
 * `<out>.partial`, opened where the last recorded group ended. `done` is what an earlier run recorded
 * (nothing for a fresh start); `append` adds a group's lines, `record` the progress after it.
 */
export class PartialOutput {
  private readonly fd: number;
  private readonly hash: Hash;
  private bytes: number;

  private constructor(
    private readonly paths: { partial: string; sidecar: string },
    private readonly expect: Pick<Sidecar, "format" | "input" | "apm" | "settings">,
    readonly done: ResumeState,
  ) {
    this.hash = createHash("sha256");
    if (done.rows > 0) this.hash.update(done.prefix);
    // Append mode: every write lands after the truncation point, whatever the file held before.
    this.fd = openSync(paths.partial, "a");
    ftruncateSync(this.fd, done.outputBytes); // drops an unrecorded group and a torn last line
    this.bytes = done.outputBytes;
    if (done.rows > 0) log.info(`resuming: ${done.rows} rows already done in ${paths.partial}`);
  }

  static open(
    paths: { partial: string; sidecar: string },
    expect: Pick<Sidecar, "format" | "input" | "apm" | "settings">,
  ): PartialOutput {
    return new PartialOutput(paths, expect, readResumeState(paths.partial, paths.sidecar, expect));
  }

  /** `delete <partial> to start over`: the hint of every mismatch with the partial run. */
  get restart(): string {
    return `delete ${this.paths.partial} to start over`;
  }

  /** The input must have at least the `done.rows` rows (`noun`: prompts, rows) the partial run read. */
  checkCount(file: string, count: number, noun: string): void {
    const { rows } = this.done;
    if (count < rows)
      throw new InputError(
        `has ${count} ${noun}, fewer than the ${rows} already done`,
        { file },
        this.restart,
      );
  }

  /** The SHA-256 of the input's first `done.rows` rows must be the one recorded. */
  checkPrefix(file: string, prefixSha256: string, noun: string): void {
    const { rows } = this.done;
    if (rows > 0 && prefixSha256 !== this.done.inputSha256)
      throw new InputError(
        `the first ${rows} ${noun} differ from the ones the partial output was made from`,
        { file },
        this.restart,
      );
  }

  /** Appends lines (each ends in a newline) and fsyncs them. */
  append(lines: readonly string[]): void {
    const b = Buffer.from(lines.map((l) => `${l}\n`).join(""), "utf8");
    writeAllSync(this.fd, b);
    fsyncSync(this.fd);
    this.hash.update(b);
    this.bytes += b.length;
  }

  /** Records that `rows` input rows (SHA-256 `inputSha256`) are done and written so far. */
  record(rows: number, inputSha256: string): void {
    writeSidecar(this.paths.sidecar, {
      ...this.expect,
      version: 1,
      rows,
      outputBytes: this.bytes,
      outputSha256: this.hash.copy().digest("hex"),
      inputSha256,
    });
  }

  /** Closes the file; with `output`, the job is complete: the partial file becomes the output. */
  close(output?: string): void {
    closeSync(this.fd);
    if (output === undefined) return;
    renameSync(this.paths.partial, output);
    syncDir(dirname(resolve(output)));
    rmSync(this.paths.sidecar, { force: true });
  }
}

export interface ResumeState {
  rows: number;
  outputBytes: number;
  inputSha256: string;
  prefix: Buffer;
}

/** The verified prefix of an earlier run, or a fresh start when there is none. */
function readResumeState(
  partial: string,
  sidecarPath: string,
  expect: Pick<Sidecar, "format" | "input" | "apm" | "settings">,
): ResumeState {
  const fresh: ResumeState = { rows: 0, outputBytes: 0, inputSha256: "", prefix: Buffer.alloc(0) };
  if (!existsSync(partial) || !existsSync(sidecarPath)) return fresh; // nothing was recorded: start over
  let s: Sidecar;
  try {
    s = JSON.parse(readFileSync(sidecarPath, "utf8")) as Sidecar;
  } catch {
    throw new InputError(
      "the progress file is damaged",
      { file: sidecarPath },
      `delete it and ${partial} to start over`,
    );
  }
  const { format } = expect;
  if (s.format !== format || s.version !== 1)
    throw new InputError(`not a ${format} file`, { file: sidecarPath, field: "format" });
  const restart = `delete ${partial} to start over`;
  if (s.input !== expect.input)
    throw new InputError(
      `the partial output was made from ${s.input}`,
      { file: sidecarPath, field: "input" },
      restart,
    );
  if (s.apm !== expect.apm)
    throw new InputError(
      "the partial output was made by another APM checkpoint",
      { file: sidecarPath, field: "apm" },
      restart,
    );
  // both runs' keys: a setting recorded only when given (steerlm2's priorValues) and now left out differs too
  for (const key of new Set([...Object.keys(expect.settings), ...Object.keys(s.settings)])) {
    if (s.settings[key] !== expect.settings[key]) {
      const shown = (v: unknown) => (v === undefined ? "unset" : JSON.stringify(v));
      throw new InputError(
        `${shown(expect.settings[key])} differs from the partial run's ${shown(s.settings[key])}`,
        { file: sidecarPath, field: key },
        restart,
      );
    }
  }
  const bytes = readFileSync(partial);
  if (bytes.length < s.outputBytes)
    throw new InputError(
      `shorter (${bytes.length} bytes) than recorded (${s.outputBytes})`,
      { file: partial },
      restart,
    );
  const prefix = bytes.subarray(0, s.outputBytes);
  if (createHash("sha256").update(prefix).digest("hex") !== s.outputSha256)
    throw new InputError("the rows in it were changed since they were written", { file: partial }, restart);
  return { rows: s.rows, outputBytes: s.outputBytes, inputSha256: s.inputSha256, prefix };
}

function writeSidecar(path: string, s: Sidecar): void {
  writeFileAtomic(path, `${JSON.stringify(s)}\n`);
}

/**
 * A row's generation(s), or null (with a warning naming the row) when the prompt and the tokens to
 * generate do not fit the context: the job skips that row and goes on.
 */
export async function generateOrSkip<T>(
  model: Pick<Generator, "contextSize">,
  prompt: DataRecord,
  generate: () => Promise<T>,
): Promise<T | null> {
  try {
    return await generate();
  } catch (err) {
    if (!(err instanceof ContextLengthError)) throw err;
    const o = prompt.origin;
    log.warn(
      `${o ? `${o.file}:${o.line}: ` : ""}skipped: the prompt and the tokens to generate do not fit the context of ${model.contextSize} tokens`,
    );
    return null;
  }
}

/** A progress bar's `retries` field: requests to a remote engine sent again so far (none shown before the first). */
export function retried(model: Pick<Generator, "retries">): { retries?: number } {
  return model.retries ? { retries: model.retries } : {};
}
