import type { AttributeSchema } from "../data/attributes.js";
import { readRecords } from "../data/read.js";
import type { DataFormat, DataRecord } from "../data/record.js";
import { InputError } from "../util/errors.js";

/**
 * A prompt to bootstrap from: a conversation that ends with a user turn. Taken from any record by
 * dropping the assistant turns after its last user turn (the response the training data had), so the
 * training file itself is a prompt file; earlier assistant turns stay, with their labels, as context.
 * The record up to and including its last user turn; a record without a user turn is an InputError. */
export function promptOf(record: DataRecord): DataRecord {
  let last = record.turns.length - 1;
  while (last >= 0 && record.turns[last]?.role !== "user") last--;
  if (last < 0) {
    const o = record.origin;
    throw new InputError("the conversation has no user turn to answer", {
      file: o?.file,
      line: o?.line,
      field: "conversations",
    });
  }
  return {
    system: record.system,
    turns: record.turns.slice(0, last + 1).map((t) => ({ ...t })),
    extra: new Map(record.extra),
    origin: record.origin,
  };
}

/** What identifies a prompt for the resume check: its text and labels, not where it came from. */
export function promptKey(p: DataRecord): string {
  return JSON.stringify([p.system, p.turns.map((t) => [t.role, t.text, t.labels])]);
}

export interface ReadPromptsOptions {
  /** Labels of earlier assistant turns are read (and checked) with this schema: the SFT model's. */
  schema: AttributeSchema;
  format?: DataFormat;
  /** Only the first `limit` prompts. */
  limit?: number;
  /** Drop a prompt identical (system and turns) to an earlier one. */
  unique?: boolean;
}

/** All prompts of a file, read and checked before any generation starts (a bad row fails fast). */
export async function readPrompts(path: string, opts: ReadPromptsOptions): Promise<DataRecord[]> {
  const out: DataRecord[] = [];
  const keys = new Set<string>();
  for await (const record of readRecords(path, {
    format: opts.format,
    schema: opts.schema,
    allowUnlabeled: true,
  })) {
    if (opts.limit !== undefined && out.length >= opts.limit) break;
    const p = promptOf(record);
    if (opts.unique) {
      const key = promptKey(p);
      if (keys.has(key)) continue;
      keys.add(key);
    }
    out.push(p);
  }
  if (out.length === 0) throw new InputError("no prompts", { file: path });
  return out;
}
