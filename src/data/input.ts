import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { readFailure } from "../util/errno.js";
import { InputError } from "../util/errors.js";

/**
 * Streaming access to input files: JSONL (plain or gzip, recognised by its magic bytes, whatever the
 * name) one line at a time, and Parquet one row group at a time. Nothing reads a whole file.
 */
export type FileKind = "text" | "gzip" | "parquet";

export async function sniffFile(path: string): Promise<FileKind> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch (err) {
    throw readFailure(err, path, "cannot open");
  }
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0).catch((err: unknown) => {
      throw readFailure(err, path, "cannot read");
    });
    if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
    if (bytesRead === 4 && head.toString("latin1") === "PAR1") return "parquet";
    return "text";
  } finally {
    await handle.close();
  }
}

export interface Line {
  /** 1-based line number. */
  line: number;
  text: string;
  /**
   * Why the line cannot be read as data: its bytes are not UTF-8 (`text` then holds replacement
   * characters), or it is longer than MAX_LINE_BYTES (`text` is then empty). Readers reject such a line.
   */
  problem?: { message: string; hint: string };
}

/** A line's most bytes: longer ones are rejected by number, rather than ending the run out of memory. */
export const MAX_LINE_BYTES = 256 * 2 ** 20;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A line's bytes without the line end (`\n`, or `\r\n` as Windows writes it), decoded. */
function decodeLine(line: number, bytes: Buffer): Line {
  const b = bytes.at(-1) === 0x0d ? bytes.subarray(0, -1) : bytes;
  try {
    return { line, text: utf8.decode(b) };
  } catch {
    return {
      line,
      text: b.toString("utf8"),
      problem: { message: "not UTF-8 text", hint: "save the file as UTF-8" },
    };
  }
}

function tooLong(bytes: number): { message: string; hint: string } {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  return {
    message: `the line is ${mib(bytes)}, more than the ${mib(MAX_LINE_BYTES)} a line may have`,
    hint: "is this a JSONL file? each line holds one record",
  };
}

/** Lines of a text or gzip file; `onBytes` is told how many bytes of the file itself were consumed. */
export async function* readLines(path: string, onBytes?: (n: number) => void): AsyncGenerator<Line> {
  const kind = await sniffFile(path);
  if (kind === "parquet") throw new InputError("this is a Parquet file, not JSONL", { file: path });
  const raw = createReadStream(path);
  if (onBytes) raw.on("data", (chunk) => onBytes(chunk.length));
  let input: Readable = raw;
  if (kind === "gzip") {
    const gunzip = createGunzip();
    raw.on("error", (err) => gunzip.destroy(err));
    input = raw.pipe(gunzip);
  }
  let line = 0;
  try {
    // split on bytes, then decode each line strictly: a line that is not UTF-8 is said to be so, where a
    // decoding stream would hand on U+FFFD replacement characters as if they were the data
    let pieces: Buffer[] = [];
    let bytes = 0;
    const add = (piece: Buffer) => {
      bytes += piece.length;
      // past the cap only the length is kept
      if (bytes <= MAX_LINE_BYTES) pieces.push(piece);
      else pieces = [];
    };
    const take = (): Line => {
      line++;
      const out: Line =
        bytes > MAX_LINE_BYTES
          ? { line, text: "", problem: tooLong(bytes) }
          : decodeLine(line, pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces));
      pieces = [];
      bytes = 0;
      return out;
    };
    for await (const chunk of input as AsyncIterable<Buffer>) {
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
        add(chunk.subarray(start, nl));
        yield take();
        start = nl + 1;
      }
      if (start < chunk.length) add(chunk.subarray(start));
    }
    if (bytes > 0) yield take();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const what =
      e.code === "Z_BUF_ERROR" || e.code === "Z_DATA_ERROR" ? "corrupt or truncated gzip data" : e.message;
    throw new InputError(`${what} (after line ${line})`, { file: path });
  } finally {
    raw.destroy();
  }
}

export interface Row {
  /** 1-based row number. */
  line: number;
  row: Record<string, unknown>;
}

/** Rows of a Parquet file, decoded one row group at a time (via hyparquet). */
export async function* readParquetRows(path: string, onRows?: (n: number) => void): AsyncGenerator<Row> {
  const file = await asyncBufferFromFile(path);
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (err) {
    throw new InputError(`not a readable Parquet file: ${(err as Error).message}`, { file: path });
  }
  let start = 0;
  for (const group of metadata.row_groups) {
    const end = start + Number(group.num_rows);
    let rows: Array<Record<string, unknown>>;
    try {
      rows = await parquetReadObjects({ file, metadata, rowStart: start, rowEnd: end });
    } catch (err) {
      throw new InputError(
        `cannot decode rows ${start + 1}..${end}: ${(err as Error).message}`,
        { file: path },
        "hyparquet reads uncompressed and Snappy Parquet; re-save other codecs with Snappy, or use the JSONL(.gz) files",
      );
    }
    for (const [i, row] of rows.entries()) yield { line: start + i + 1, row };
    onRows?.(rows.length);
    start = end;
  }
}

/** The column names of a Parquet file (to tell HelpSteer rows from preference rows). */
export async function parquetColumns(path: string): Promise<string[]> {
  const file = await asyncBufferFromFile(path);
  try {
    const metadata = await parquetMetadataAsync(file);
    return metadata.schema.slice(1).map((s) => s.name);
  } catch (err) {
    throw new InputError(`not a readable Parquet file: ${(err as Error).message}`, { file: path });
  }
}

/** The first non-blank line of a JSONL file, for format detection. */
export async function firstLine(path: string): Promise<Line | undefined> {
  for await (const l of readLines(path)) if (l.text.trim() !== "") return l;
  return undefined;
}
