import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { InputError } from "../util/errors.js";

/**
 * annotate's resume record: `<out>.partial` holds the rows written so far and `<out>.partial.json` (the
 * sidecar, replaced atomically after each fsynced group) says how many, how long and with which SHA-256
 * the verified output prefix is, which input rows (SHA-256) and APM (SHA-256) made it, and the settings.
 */
export const SIDECAR_FORMAT = "steerlm-annotate-progress";

/** Settings a resumed run must share with the partial one (compared key by key). */
export type ResumeSettings = Readonly<Record<string, string | number | boolean | null>>;

export type AnnotateSettings = {
  format: string | null;
  onlyUnlabeled: boolean;
  batchSize: number;
  schema: string;
};

/** `format` names the command that wrote it (`steerlm bootstrap` shares this record with its own name). */
export interface Sidecar<S extends ResumeSettings = AnnotateSettings> {
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

/**
 * Checks a resumable job's output path before any work: its folder exists, and a finished output is only
 * replaced with `overwrite` (an unfinished one, with its .partial, is resumed). `again` completes the hint
 * "pass --overwrite to … again".
 */
export function checkOutput(
  output: string,
  overwrite: boolean | undefined,
  again: string,
): {
  partial: string;
  sidecar: string;
} {
  if (!existsSync(dirname(resolve(output))))
    throw new InputError("the output's folder does not exist", { file: output });
  const paths = partialPaths(output);
  if (existsSync(output) && !existsSync(paths.partial) && !overwrite)
    throw new InputError("the output already exists", { file: output }, `pass --overwrite to ${again} again`);
  return paths;
}

export interface ResumeState {
  rows: number;
  outputBytes: number;
  inputSha256: string;
  prefix: Buffer;
}

/** The verified prefix of an earlier run, or a fresh start when there is none. */
export function readResumeState(
  partial: string,
  sidecarPath: string,
  expect: Pick<Sidecar<ResumeSettings>, "input" | "apm" | "settings">,
  format: string = SIDECAR_FORMAT,
): ResumeState {
  const fresh: ResumeState = { rows: 0, outputBytes: 0, inputSha256: "", prefix: Buffer.alloc(0) };
  if (!existsSync(partial) || !existsSync(sidecarPath)) return fresh; // nothing was recorded: start over
  let s: Sidecar<ResumeSettings>;
  try {
    s = JSON.parse(readFileSync(sidecarPath, "utf8")) as Sidecar<ResumeSettings>;
  } catch {
    throw new InputError(
      "the progress file is damaged",
      { file: sidecarPath },
      `delete it and ${partial} to start over`,
    );
  }
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
  for (const key of Object.keys(expect.settings)) {
    if (s.settings[key] !== expect.settings[key]) {
      throw new InputError(
        `${JSON.stringify(expect.settings[key])} differs from the partial run's ${JSON.stringify(s.settings[key])}`,
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

export function writeSidecar<S extends ResumeSettings>(path: string, s: Sidecar<S>): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, "w");
  writeAll(fd, Buffer.from(`${JSON.stringify(s)}\n`));
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, path);
}

export function writeAll(fd: number, b: Uint8Array): void {
  let done = 0;
  while (done < b.byteLength) done += writeSync(fd, b, done, b.byteLength - done);
}
