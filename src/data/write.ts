import { AtomicFile } from "../util/atomic.js";
import { InputError } from "../util/errors.js";
import { chatLine } from "./formats/chat.js";
import type { WriteOptions } from "./formats/context.js";
import { regressionLines } from "./formats/regression.js";
import { steerlmLine } from "./formats/steerlm.js";
import { type DataRecord, OUTPUT_FORMATS, type OutputFormat } from "./record.js";

export type { WriteOptions } from "./formats/context.js";

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
  const out = await AtomicFile.create(path);
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
