import { stat } from "node:fs/promises";
import { AtomicFile, checkOutputs } from "../util/atomic.js";
import { InputError, SteerlmError } from "../util/errors.js";
import { Progress } from "../util/progress.js";
import type { WriteOptions } from "./formats/context.js";
import { sniffFile } from "./input.js";
import { type Inspection, inspectRecords } from "./inspect.js";
import { dumpsPython, JsonNumber } from "./json.js";
import {
  NO_LABELS,
  type ReadOptions,
  type ReadStats,
  type Rejected,
  readRecords,
  UNLABELED_HINT,
} from "./read.js";
import type { DataRecord, OutputFormat } from "./record.js";
import { type SplitResult, splitRecords } from "./split.js";
import { recordLines, writeRecords } from "./write.js";

/**
 * The data commands as library calls: convert, validate, inspect and split a file, with the
 * `--skip-invalid` bookkeeping (a rejects file, counts) and a progress bar on a terminal.
 */
export interface JobOptions extends Omit<ReadOptions, "onReject" | "onProgress"> {
  /** Keep going past invalid rows (they are counted and listed) instead of stopping at the first. */
  skipInvalid?: boolean;
  /** Where invalid rows go as JSONL `{"file", "line", "error", "raw"}` (skip mode). */
  rejectsPath?: string;
  /** Force the progress bar on or off (default: on when stderr is a terminal). */
  progress?: boolean;
}

export interface JobSummary {
  stats: ReadStats;
  /** The first invalid rows (up to 1000; `stats.rejected` counts all), in file order, without raw lines. */
  rejected: Rejected[];
}

const KEPT_REJECTS = 1000;

class RejectLog {
  readonly items: Rejected[] = [];
  private count = 0;
  private constructor(
    readonly path: string | undefined,
    private readonly file: AtomicFile | undefined,
  ) {}
  static async open(path: string | undefined): Promise<RejectLog> {
    return new RejectLog(path, path ? await AtomicFile.create(path) : undefined);
  }
  add = async (r: Rejected): Promise<void> => {
    // Memory stays bounded on huge files: the first rejects without their raw lines; the file has all.
    this.count++;
    if (this.items.length < KEPT_REJECTS) this.items.push({ file: r.file, line: r.line, error: r.error });
    if (this.file) {
      const obj = new Map([
        ["file", r.file],
        ["line", JsonNumber.int(r.line)],
        ["error", r.error],
      ] as Array<[string, string | JsonNumber]>);
      if (r.raw !== undefined) obj.set("raw", r.raw);
      await this.file.write(`${dumpsPython(obj, { ensureAscii: false, compact: true })}\n`);
    }
  };
  /**
   * Kept when the job succeeds, and when it fails with rejects to show (they explain e.g. "no records in X:
   * all 30 rows were invalid"); a job that failed before any reject (a missing input) leaves an earlier
   * rejects file as it was.
   */
  async close(succeeded: boolean): Promise<void> {
    if (succeeded || this.count > 0) await this.file?.commit();
    else await this.file?.abort();
  }
}

/**
 * Reads `input` for a job whose outputs (by setting) are `outputs`; they are checked, with the rejects file,
 * before anything is read.
 */
async function withReader<T>(
  input: string,
  opts: JobOptions,
  label: string,
  outputs: Readonly<Record<string, string>>,
  use: (records: ReturnType<typeof readRecords>, rejects: RejectLog) => Promise<T>,
): Promise<{ value: T; summary: JobSummary }> {
  const rejectsPath = opts.skipInvalid ? opts.rejectsPath : undefined;
  checkOutputs({ ...outputs, rejectsPath }, { input });
  // JSONL progress counts bytes of the file (compressed ones for gzip); Parquet counts rows, total unknown.
  const size = (await stat(input).catch(() => undefined))?.size;
  const kind = size === undefined ? undefined : await sniffFile(input);
  const progress = new Progress({
    label,
    total: kind === "parquet" ? undefined : size,
    enabled: opts.progress,
  });
  const rejects = await RejectLog.open(rejectsPath);
  const reader = readRecords(input, {
    ...opts,
    onProgress: (n) => progress.tick(n, { records: reader.stats.records }),
    onReject: opts.skipInvalid ? rejects.add : undefined,
  });
  let succeeded = false;
  try {
    const value = await use(reader, rejects);
    succeeded = true;
    return { value, summary: { stats: reader.stats, rejected: rejects.items } };
  } finally {
    progress.finish();
    await rejects.close(succeeded);
  }
}

export async function convertFile(
  input: string,
  output: string,
  to: OutputFormat,
  opts: JobOptions & { write?: WriteOptions } = {},
): Promise<JobSummary & { lines: number }> {
  const { value, summary } = await withReader(input, opts, "convert", { output }, async (reader, rejects) => {
    return writeRecords(
      output,
      (async function* () {
        yield* expressible(reader, to, opts, rejects);
        // Refuse to leave an empty output behind for an input that had nothing usable in it.
        if (reader.stats.records === 0) throw noRecords(input, reader.stats, rejects);
      })(),
      to,
      opts.write,
    );
  });
  return { ...summary, lines: value };
}

/**
 * The records `format` can express: with --skip-invalid, one it cannot (a label outside the regression
 * format's attributes) is a reject like an invalid row (counted and logged in `rejects`, when given: a
 * second pass over the same rows skips quietly); without, its error stands.
 */
async function* expressible(
  records: ReturnType<typeof readRecords>,
  format: OutputFormat,
  opts: JobOptions & { write?: WriteOptions },
  rejects?: RejectLog,
): AsyncGenerator<DataRecord> {
  for await (const r of records) {
    if (opts.skipInvalid && r.origin) {
      try {
        recordLines(r, format, opts.write);
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        if (rejects) {
          records.stats.records--;
          records.stats.rejected++;
          await rejects.add({ file: r.origin.file, line: r.origin.line, error: err.message });
        }
        continue;
      }
    }
    yield r;
  }
}

export async function validateFile(input: string, opts: JobOptions = {}): Promise<JobSummary> {
  const { summary } = await withReader(input, opts, "validate", {}, async (reader) => {
    for await (const _ of reader);
  });
  return summary;
}

export async function inspectFile(
  input: string,
  opts: JobOptions = {},
): Promise<JobSummary & { inspection: Inspection }> {
  const { value, summary } = await withReader(input, opts, "inspect", {}, (reader) => inspectRecords(reader));
  return { ...summary, inspection: value };
}

export async function splitFile(
  input: string,
  paths: { train: string; validation: string },
  split: { fraction: number; seed: number; to: OutputFormat; write?: WriteOptions },
  opts: JobOptions = {},
): Promise<JobSummary & { split: SplitResult }> {
  const { value, summary } = await withReader(input, opts, "split", paths, async (first, rejects) => {
    let pass = 0;
    return splitRecords(
      // Pass 1 (counting) reports rejects; pass 2 sees the same rows and skips them quietly.
      () => {
        pass++;
        if (pass > 1) {
          const again = readRecords(input, {
            ...opts,
            onReject: opts.skipInvalid ? () => undefined : undefined,
          });
          return expressible(again, split.to, { ...opts, write: split.write });
        }
        return (async function* () {
          yield* expressible(first, split.to, { ...opts, write: split.write }, rejects);
          if (first.stats.records === 0) throw noRecords(input, first.stats, rejects);
        })();
      },
      paths,
      { fraction: split.fraction, seed: split.seed, format: split.to, write: split.write },
    );
  });
  return { ...summary, split: value };
}

function noRecords(input: string, stats: ReadStats, rejects: RejectLog): SteerlmError {
  if (stats.rejected === 0) return new SteerlmError(`no records in ${input}`);
  const first = rejects.items[0]?.error ?? "";
  const hint = first.includes(NO_LABELS)
    ? UNLABELED_HINT
    : rejects.path
      ? `every invalid row is listed in ${rejects.path}`
      : undefined;
  return new SteerlmError(
    `no records in ${input}: all ${stats.rejected} rows were invalid; the first: ${first}`,
    hint,
  );
}
