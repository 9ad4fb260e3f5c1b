import type { LlamaModel } from "node-llama-cpp";
import {
  type AttributeSchema,
  DEFAULT_SCHEMA,
  loadSchema,
  schemaFromJson,
  validateSchema,
} from "../data/attributes.js";
import { ggufSchema } from "../gguf/schema.js";
import { type GgufFile, STEERLM_SCHEMA_KEY } from "../gguf/types.js";

/** Where the attribute schema of a served model comes from, most specific first. */
export type SchemaSource = "option" | "adapter" | "gguf" | "builtin";

/**
 * An explicit schema (built-in name, file path or object) wins; else the one a LoRA adapter's GGUF carries
 * under `steerlm.schema` (a steerlm export of a LoRA run: the base usually has none); else the model GGUF's;
 * else the built-in `steerlm` schema.
 */
export function resolveSchema(
  model: LlamaModel,
  modelPath: string,
  explicit?: string | AttributeSchema,
  adapter?: GgufFile,
): { schema: AttributeSchema; source: SchemaSource } {
  if (typeof explicit === "string") return { schema: loadSchema(explicit), source: "option" };
  if (explicit) return { schema: validateSchema(explicit, "schema option"), source: "option" };
  const fromAdapter = adapter ? ggufSchema(adapter) : null;
  if (fromAdapter !== null) return { schema: fromAdapter, source: "adapter" };
  const stored = metadataValue(model.fileInfo.metadata, STEERLM_SCHEMA_KEY);
  if (stored !== undefined) return { schema: storedSchema(stored, modelPath), source: "gguf" };
  return { schema: loadSchema(DEFAULT_SCHEMA), source: "builtin" };
}

/** A `steerlm.schema` value (a JSON string) of the GGUF at `path`, validated. */
function storedSchema(stored: unknown, path: string): AttributeSchema {
  return schemaFromJson(stored, { file: path, field: STEERLM_SCHEMA_KEY });
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
