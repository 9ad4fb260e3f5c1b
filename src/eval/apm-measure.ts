import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AttributeValues } from "../data/attributes.js";
import { SteerlmError } from "../util/errors.js";

/**
 * An attribute prediction model (src/apm) as the adherence measurer: the responses go through
 * `annotateFile` (the same path `steerlm annotate` takes, so the numbers are what annotation would write:
 * clamped and rounded) and the predicted value strings come back per response.
 */
export interface MeasureItem {
  system: string;
  prompt: string;
  response: string;
}

export type BatchMeasurer = (items: readonly MeasureItem[]) => Promise<AttributeValues[]>;

export function apmMeasurer(apm: string, opts: { threads?: number; batchSize?: number } = {}): BatchMeasurer {
  return async (items) => {
    if (items.length === 0) return [];
    // Loaded on use: the eval commands do not pay for (or depend on) the APM stack unless asked.
    const { annotateFile } = await import("../apm/annotate.js");
    const dir = mkdtempSync(join(tmpdir(), "steerlm-eval-apm-"));
    try {
      const input = join(dir, "responses.jsonl");
      const output = join(dir, "annotated.jsonl");
      writeFileSync(
        input,
        items
          .map((it) =>
            JSON.stringify({
              system: it.system,
              conversations: [
                { from: "User", value: it.prompt, label: null },
                { from: "Assistant", value: it.response, label: null },
              ],
              mask: "User",
            }),
          )
          .map((l) => `${l}\n`)
          .join(""),
      );
      await annotateFile({
        apm,
        input,
        output,
        threads: opts.threads,
        batchSize: opts.batchSize,
        progress: false,
      });
      const lines = readFileSync(output, "utf8").split("\n").filter(Boolean);
      if (lines.length !== items.length)
        throw new SteerlmError(`annotate wrote ${lines.length} rows for ${items.length} responses`);
      return lines.map((line, i) => {
        const label = (JSON.parse(line) as { conversations?: Array<{ label?: unknown }> }).conversations?.[1]
          ?.label;
        if (typeof label !== "string") throw new SteerlmError(`annotate gave response ${i + 1} no label`);
        return parseLabel(label);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** `k:v,...` with numeric values, whatever the APM's schema. */
function parseLabel(label: string): AttributeValues {
  const out: AttributeValues = {};
  for (const pair of label.split(",")) {
    const colon = pair.indexOf(":");
    const v = Number(pair.slice(colon + 1));
    if (colon <= 0 || !Number.isFinite(v))
      throw new SteerlmError(`unexpected APM label ${JSON.stringify(label)}`);
    out[pair.slice(0, colon)] = v;
  }
  return out;
}
