import { createWriteStream, unlinkSync, type WriteStream } from "node:fs";
import { rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { InputError } from "../util/errors.js";
import { chatLine } from "./formats/chat.js";
import type { WriteOptions } from "./formats/context.js";
import { regressionLines } from "./formats/regression.js";
import { steerlmLine } from "./formats/steerlm.js";
import { type DataRecord, OUTPUT_FORMATS, type OutputFormat } from "./record.js";

export type { WriteOptions } from "./formats/context.js";

/** Temporary files being written now, removed if the process is interrupted. */
const openTemps = new Set<string>();
let signalsHooked = false;

/**
 * For the CLI: on SIGINT, SIGTERM or SIGHUP remove unfinished temporary files, then die of the signal
 * as usual. (Not installed by the library itself: a host program owns its signal handling.)
 */
export function removeTempFilesOnSignal(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      for (const t of openTemps) {
        try {
          unlinkSync(t);
        } catch {
          // already gone
        }
      }
      process.kill(process.pid, sig);
    });
  }
}

/**
 * A file that appears complete or not at all: written to a temporary name beside the target and
 * renamed over it on `commit()`, so a crash or kill never leaves half a file under the real name.
 */
export class AtomicFile {
  private readonly tmp: string;
  private readonly stream: WriteStream;
  private failed: Error | undefined;

  constructor(readonly path: string) {
    this.tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now().toString(36)}`);
    openTemps.add(this.tmp);
    this.stream = createWriteStream(this.tmp);
    this.stream.on("error", (err) => {
      this.failed = err;
    });
  }

  async write(text: string): Promise<void> {
    if (this.failed) throw this.writeError(this.failed);
    if (!this.stream.write(text)) {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(this.writeError(err));
        this.stream.once("drain", () => {
          this.stream.off("error", onError);
          resolve();
        });
        this.stream.once("error", onError);
      });
    }
  }

  async commit(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.stream.end((err?: Error | null) => (err ? reject(this.writeError(err)) : resolve()));
    });
    if (this.failed) throw this.writeError(this.failed);
    await rename(this.tmp, this.path);
    openTemps.delete(this.tmp);
  }

  /** Drops the temporary file; the target is left as it was. */
  async abort(): Promise<void> {
    // Wait for the stream to close: a still-pending open would otherwise create the file after the unlink.
    if (!this.stream.closed) {
      await new Promise<void>((resolve) => {
        this.stream.once("close", () => resolve());
        this.stream.destroy();
      });
    }
    await unlink(this.tmp).catch(() => undefined);
    openTemps.delete(this.tmp);
  }

  private writeError(err: Error): InputError {
    return new InputError(`cannot write: ${err.message}`, { file: this.path });
  }
}

export function parseOutputFormat(name: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(name)) return name as OutputFormat;
  throw new InputError(`cannot write format "${name}"`, {}, `output formats: ${OUTPUT_FORMATS.join(", ")}`);
}

/** The JSONL lines (without line ends) of one record; regression may give several, one per labelled turn. */
export function recordLines(record: DataRecord, format: OutputFormat, opts: WriteOptions = {}): string[] {
  try {
    if (format === "steerlm") return [steerlmLine(record, opts)];
    if (format === "regression") return regressionLines(record, opts);
    return [chatLine(record, opts)];
  } catch (err) {
    if (err instanceof InputError && record.origin) {
      throw err.at({ file: record.origin.file, line: record.origin.line });
    }
    throw err;
  }
}

/** Writes records as JSONL, atomically. Returns the number of lines written. */
export async function writeRecords(
  path: string,
  records: AsyncIterable<DataRecord> | Iterable<DataRecord>,
  format: OutputFormat,
  opts: WriteOptions = {},
): Promise<number> {
  const out = new AtomicFile(path);
  let lines = 0;
  try {
    for await (const r of records) {
      const ls = recordLines(r, format, opts);
      if (ls.length > 0) await out.write(`${ls.join("\n")}\n`);
      lines += ls.length;
    }
    await out.commit();
  } catch (err) {
    await out.abort();
    throw err;
  }
  return lines;
}

/** NeMo SteerLM JSONL, byte-identical to the source for records read from NeMo files. */
export function writeSteerlmJsonl(
  path: string,
  records: AsyncIterable<DataRecord> | Iterable<DataRecord>,
  opts: WriteOptions = {},
): Promise<number> {
  return writeRecords(path, records, "steerlm", opts);
}
