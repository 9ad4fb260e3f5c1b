import {
  type AttributeSchema,
  type AttributeValues,
  formatValues,
  STEERLM_ATTRIBUTE_ORDER,
} from "./attributes.js";
import type { JsonObject } from "./json.js";
import type { Conversation } from "./template.js";

/**
 * The one in-memory record every importer produces and every exporter consumes: a conversation whose
 * assistant turns may carry attribute labels, plus whatever the source row had that this model does
 * not interpret (kept, so nothing is lost between formats), plus how a NeMo line was laid out (so an
 * unchanged record is written back byte for byte).
 */
export type DataFormat = "steerlm" | "regression" | "helpsteer" | "helpsteer2-preference" | "oasst" | "chat";

export const DATA_FORMATS: readonly DataFormat[] = [
  "steerlm",
  "regression",
  "helpsteer",
  "helpsteer2-preference",
  "oasst",
  "chat",
];

/** Formats an exporter exists for. */
export type OutputFormat = "steerlm" | "regression" | "chat";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["steerlm", "regression", "chat"];

export interface RecordTurn {
  role: "user" | "assistant";
  text: string;
  /** Attribute labels of an assistant turn; null: not labelled. Keys absent from the map are missing. */
  labels: AttributeValues | null;
  /** Keys of the source turn object this model does not interpret, in source order. */
  extra?: JsonObject;
}

/** The two responses of a HelpSteer2 preference row become two records that share `pairId`. */
export interface PreferenceInfo {
  pairId: string;
  /** Which response of the pair this record holds. */
  response: 1 | 2;
  /** -3..3; negative: response 1 is preferred. */
  strength: number;
}

/** Where a record came from: errors and rejects point here. */
export interface Origin {
  file: string;
  /** 1-based line (JSONL) or row (Parquet) number. */
  line: number;
  format: DataFormat;
}

/**
 * How a NeMo line was written: key order, Python's `ensure_ascii`, and the label text as it appeared
 * (keys in any order, numbers as `4.0`). Writers use it only where the record still means the same.
 */
export type NemoLayout =
  | {
      format: "steerlm";
      ensureAscii: boolean;
      keys: string[];
      turnKeys: string[][];
      /** Per turn: the label string as written; null: `"label": null`; undefined: no `label` key. */
      labelText: Array<string | null | undefined>;
    }
  | {
      format: "regression";
      ensureAscii: boolean;
      keys: string[];
      /** The 9 label numbers as written (e.g. `-100.0`). */
      labelNumbers: string[];
    };

export interface DataRecord {
  system: string;
  turns: RecordTurn[];
  /** Keys of the source row this model does not interpret (e.g. `mask`, `type`, `dataset`), in source order. */
  extra: JsonObject;
  preference?: PreferenceInfo;
  origin?: Origin;
  layout?: NemoLayout;
}

/** The missing-label marker of the regression format. */
export const MISSING_LABEL = -100;

/**
 * A value string in the schema's order; without a schema, in NeMo's canonical order of the nine
 * attributes followed by any other keys as given.
 */
export function labelString(labels: AttributeValues, schema?: AttributeSchema): string {
  if (schema) return formatValues(schema, labels);
  const canonical: readonly string[] = STEERLM_ATTRIBUTE_ORDER;
  const keys = [
    ...canonical.filter((k) => labels[k] !== undefined),
    ...Object.keys(labels).filter((k) => !canonical.includes(k)),
  ];
  return keys.map((k) => `${k}:${labels[k]}`).join(",");
}

/** The record as the template renderer's conversation (value strings formatted from the labels). */
export function toConversation(record: DataRecord, schema?: AttributeSchema): Conversation {
  return {
    system: record.system,
    turns: record.turns.map((t) => ({
      role: t.role,
      text: t.text,
      values: t.role === "assistant" && t.labels ? labelString(t.labels, schema) : null,
    })),
  };
}

export function sameLabels(a: AttributeValues | null, b: AttributeValues | null): boolean {
  if (a === null || b === null) return a === b;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

/** Lenient `key:int,...` reading, only to compare a kept label text with a record's labels. */
export function looseLabels(text: string): AttributeValues | null {
  const out: AttributeValues = {};
  for (const pair of text.split(",")) {
    const m = /^([^:]+):(-?\d+)$/.exec(pair);
    const [, name, value] = m ?? [];
    if (name === undefined || name in out) return null;
    out[name] = Number(value);
  }
  return out;
}

export function hasLabels(record: DataRecord): boolean {
  return record.turns.some(
    (t) => t.role === "assistant" && t.labels !== null && Object.keys(t.labels).length > 0,
  );
}
