import { type AttributeSchema, schemaFromJson } from "../data/attributes.js";
import { metaString } from "./reader.js";
import { type GgufFile, STEERLM_SCHEMA_KEY } from "./types.js";

/** The attribute schema a steerlm GGUF carries under `steerlm.schema`; null for a file without one. */
export function ggufSchema(file: GgufFile): AttributeSchema | null {
  const stored = metaString(file, STEERLM_SCHEMA_KEY, null);
  return stored === null ? null : schemaFromJson(stored, { file: file.path, field: STEERLM_SCHEMA_KEY });
}
