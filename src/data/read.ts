import { InputError } from "../util/errors.js";
import { type AttributeSchema, loadSchema } from "./attributes.js";
import { importChat } from "./formats/chat.js";
import type { ImportContext, ImportResult } from "./formats/context.js";
import { importHelpsteer, importPreference } from "./formats/helpsteer.js";
import { importOasst } from "./formats/oasst.js";
import { importRegression } from "./formats/regression.js";
import { importSteerlm } from "./formats/steerlm.js";
import { firstLine, parquetColumns, readLines, readParquetRows, sniffFile } from "./input.js";
import { fromJs, type Json, JsonSyntaxError, parseJson, writtenWithoutEnsureAscii } from "./json.js";
import { DATA_FORMATS, type DataFormat, type DataRecord, hasLabels } from "./record.js";
import { DEFAULT_SYSTEM_PROMPT } from "./template.js";

/**
 * `readRecords(path, options)`: every importer behind one streaming, validating reader.
 * Strict by default: the first invalid row throws an InputError `file:line: field: what`. With
 * `onReject`, invalid rows are handed to it and reading goes on; `stats` counts everything.
 */
export interface ReadOptions {
  /** Input format; detected from the file when absent. */
  format?: DataFormat;
  /** Schema name/path or schema; default per format (`steerlm`, or `helpsteer` / `oasst`). */
  schema?: AttributeSchema | string;
  /** Called for each invalid row instead of throwing (the `--skip-invalid` mode). */
  onReject?: (reject: Rejected) => void | Promise<void>;
  /** Accept conversations without any attribute label (plain SFT data). */
  allowUnlabeled?: boolean;
  /** System prompt for formats whose rows have none (default: NeMo's default system prompt). */
  system?: string;
  /** OASST: keep only trees in this language. */
  lang?: string;
  /** Told about bytes (JSONL) or rows (Parquet) consumed, for progress display. */
  onProgress?: (n: number) => void;
}

export interface Rejected {
  file: string;
  line: number;
  /** The full `file:line: field: what` message. */
  error: string;
  /** The source line (JSONL), absent for Parquet rows. */
  raw?: string;
}

export interface ReadStats {
  /** Known once iteration has started. */
  format?: DataFormat;
  schema: string;
  /** Source lines or rows read (blank lines excluded). */
  rows: number;
  records: number;
  rejected: number;
  /** Rows that gave no record for a counted reason (language filter, ...), by reason. */
  filtered: Record<string, number>;
}

const DEFAULT_SCHEMA: Record<DataFormat, string> = {
  steerlm: "steerlm",
  regression: "steerlm",
  chat: "steerlm",
  helpsteer: "helpsteer",
  "helpsteer2-preference": "steerlm",
  oasst: "oasst",
};

const IMPORTERS: Record<DataFormat, (json: Json, ctx: ImportContext) => ImportResult> = {
  steerlm: importSteerlm,
  regression: importRegression,
  chat: importChat,
  helpsteer: importHelpsteer,
  "helpsteer2-preference": importPreference,
  oasst: importOasst,
};

/** Formats whose records are useless to SteerLM without labels: plain SFT data is refused, clearly. */
const NEEDS_LABELS: ReadonlySet<DataFormat> = new Set(["steerlm", "regression", "chat", "helpsteer"]);

export function parseFormat(name: string): DataFormat {
  if ((DATA_FORMATS as readonly string[]).includes(name)) return name as DataFormat;
  throw new InputError(`unknown format "${name}"`, {}, `formats: ${DATA_FORMATS.join(", ")}`);
}

/** Tells the format from the file: Parquet columns, or the keys of the first JSONL line. */
export async function detectFormat(path: string): Promise<DataFormat> {
  const kind = await sniffFile(path);
  let keys: string[];
  let where = { file: path } as { file: string; line?: number };
  if (kind === "parquet") {
    keys = await parquetColumns(path);
  } else {
    const first = await firstLine(path);
    if (!first) throw new InputError("the file is empty", { file: path });
    where = { file: path, line: first.line };
    let json: Json;
    try {
      json = parseJson(first.text);
    } catch (err) {
      throw new InputError(
        `cannot detect the format: not JSON (${(err as Error).message})`,
        where,
        "pass --from",
      );
    }
    if (!(json instanceof Map))
      throw new InputError("cannot detect the format: not a JSON object", where, "pass --from");
    keys = [...json.keys()];
    // OASST trees have an object under "prompt"; HelpSteer rows a string.
    if (json.get("prompt") instanceof Map) return "oasst";
  }
  const has = (...k: string[]) => k.every((x) => keys.includes(x));
  if (has("conversations")) return "steerlm";
  if (has("text", "label")) return "regression";
  if (has("messages")) return "chat";
  if (has("prompt", "response_1", "response_2")) return "helpsteer2-preference";
  if (has("prompt", "response")) return "helpsteer";
  if (has("message_tree_id")) return "oasst";
  throw new InputError(`cannot detect the format from the keys ${keys.join(", ")}`, where, "pass --from");
}

function resolveSchema(schema: AttributeSchema | string | undefined, format: DataFormat): AttributeSchema {
  if (schema === undefined) return loadSchema(DEFAULT_SCHEMA[format]);
  return typeof schema === "string" ? loadSchema(schema) : schema;
}

export const NO_LABELS = "no attribute labels";
export const UNLABELED_HINT =
  "this looks like plain SFT data (conversations without attribute labels). Label it with an attribute " +
  "model first, or pass --allow-unlabeled to read it without labels";

/** An async iterable of records with live counts; iterate it once. */
export class RecordReader implements AsyncIterable<DataRecord> {
  readonly stats: ReadStats = { schema: "", rows: 0, records: 0, rejected: 0, filtered: {} };
  private schemaObj: AttributeSchema | undefined;

  constructor(
    readonly path: string,
    private readonly opts: ReadOptions = {},
  ) {}

  /** The schema labels were checked against (known once iteration has started). */
  get schema(): AttributeSchema | undefined {
    return this.schemaObj;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<DataRecord> {
    const format = this.opts.format ?? (await detectFormat(this.path));
    this.schemaObj = resolveSchema(this.opts.schema, format);
    Object.assign(this.stats, { format, schema: this.schemaObj.name });
    const importer = IMPORTERS[format];
    const ctxBase = {
      schema: this.schemaObj,
      system: this.opts.system ?? DEFAULT_SYSTEM_PROMPT,
      lang: this.opts.lang,
    };
    const kind = await sniffFile(this.path);
    const rows: AsyncIterable<{ line: number; json: () => Json; raw?: string; ascii: boolean }> =
      kind === "parquet" ? this.parquetRows() : this.jsonlRows();
    for await (const row of rows) {
      this.stats.rows++;
      const place = { file: this.path, line: row.line };
      let result: ImportResult;
      try {
        const ctx: ImportContext = {
          ...ctxBase,
          origin: { ...place, format },
          ensureAscii: row.ascii,
        };
        result = importer(row.json(), ctx);
        if (Array.isArray(result) && NEEDS_LABELS.has(format) && !this.opts.allowUnlabeled) {
          if (result.some((r) => !hasLabels(r))) {
            throw new InputError(
              `${NO_LABELS}: no Assistant turn has a label (this looks like plain SFT data)`,
              { field: "conversations" },
              UNLABELED_HINT,
            );
          }
        }
      } catch (err) {
        const e = toInputError(err, place);
        if (!this.opts.onReject) throw e;
        this.stats.rejected++;
        await this.opts.onReject({ file: this.path, line: row.line, error: e.message, raw: row.raw });
        continue;
      }
      if (!Array.isArray(result)) {
        this.stats.filtered[result.filtered] = (this.stats.filtered[result.filtered] ?? 0) + 1;
        continue;
      }
      for (const r of result) {
        this.stats.records++;
        yield r;
      }
    }
  }

  private async *jsonlRows() {
    for await (const { line, text, problem } of readLines(this.path, this.opts.onProgress)) {
      if (text.trim() === "" && problem === undefined) continue;
      yield {
        line,
        raw: text,
        ascii: !writtenWithoutEnsureAscii(text),
        json: (): Json => {
          if (problem) throw new InputError(problem.message, {}, problem.hint);
          try {
            return parseJson(text);
          } catch (err) {
            if (err instanceof JsonSyntaxError) throw new InputError(`invalid JSON: ${err.message}`, {});
            throw err;
          }
        },
      };
    }
  }

  private async *parquetRows() {
    for await (const { line, row } of readParquetRows(this.path, this.opts.onProgress)) {
      yield { line, ascii: false, json: () => fromJs(row) };
    }
  }
}

function toInputError(err: unknown, place: { file: string; line: number }): InputError {
  if (err instanceof InputError) return err.at(place);
  throw err; // anything else is a bug, not bad data
}

/**
 * Reads the records of a file in any supported format, streaming:
 * `for await (const r of readRecords(path, { format: "steerlm" })) ...`; `reader.stats` is complete
 * once iteration ends.
 */
export function readRecords(path: string, opts: ReadOptions = {}): RecordReader {
  return new RecordReader(path, opts);
}
