import type { LlamaModel } from "node-llama-cpp";
import { type AttributeSchema, DEFAULT_SCHEMA, loadSchema, validateSchema } from "../data/attributes.js";
import { STEERLM_SCHEMA_KEY } from "../gguf/types.js";
import { InputError } from "../util/errors.js";

/** Where the attribute schema of a served model comes from, most specific first. */
export type SchemaSource = "option" | "gguf" | "builtin";

/**
 * An explicit schema (built-in name, file path or object) wins; else the schema the exporter stored in the
 * GGUF under `steerlm.schema` (a JSON string); else the built-in `steerlm` schema.
 */
export function resolveSchema(
  model: LlamaModel,
  modelPath: string,
  explicit?: string | AttributeSchema,
): { schema: AttributeSchema; source: SchemaSource } {
  if (typeof explicit === "string") return { schema: loadSchema(explicit), source: "option" };
  if (explicit) return { schema: validateSchema(explicit, "schema option"), source: "option" };
  const stored = metadataValue(model.fileInfo.metadata, STEERLM_SCHEMA_KEY);
  if (stored !== undefined) {
    const where = { file: modelPath, field: STEERLM_SCHEMA_KEY };
    if (typeof stored !== "string") throw new InputError("expected a JSON string", where);
    let raw: unknown;
    try {
      raw = JSON.parse(stored);
    } catch (err) {
      throw new InputError(`not valid JSON: ${(err as Error).message}`, where);
    }
    return { schema: validateSchema(raw, `${modelPath}: ${STEERLM_SCHEMA_KEY}`), source: "gguf" };
  }
  return { schema: loadSchema(DEFAULT_SCHEMA), source: "builtin" };
}

/** node-llama-cpp nests dotted GGUF keys (`steerlm.schema` -> metadata.steerlm.schema). */
function metadataValue(metadata: object, key: string): unknown {
  let node: unknown = metadata;
  for (const part of key.split(".")) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}
