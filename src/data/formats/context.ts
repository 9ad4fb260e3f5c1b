import type { AttributeSchema } from "../attributes.js";
import type { DataRecord, Origin } from "../record.js";

/** What a line or row importer is told about where its input comes from. */
export interface ImportContext {
  schema: AttributeSchema;
  origin: Origin;
  /** The source line had no non-ASCII character (Python's default `ensure_ascii=True`). */
  ensureAscii: boolean;
  /** System prompt for formats whose rows carry none (HelpSteer, OASST). */
  system: string;
  /** OASST: keep only trees whose root message has this language. */
  lang?: string;
}

/**
 * What one source row produced: records, or nothing with a reason that is counted and reported
 * (a language filter, an OASST tree with no thread of two turns), never dropped silently.
 */
export type ImportResult = DataRecord[] | { filtered: string };

export interface WriteOptions {
  /** Orders value strings of records whose labels changed (default: NeMo's canonical order). */
  schema?: AttributeSchema;
}
