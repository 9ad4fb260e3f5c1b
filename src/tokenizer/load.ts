import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { isGgufFile } from "../gguf/reader.js";
import { InputError } from "../util/errors.js";
import { loadGgufTokenizer } from "./gguf.js";
import { loadHfTokenizer } from "./hf.js";
import type { Tokenizer } from "./types.js";

/**
 * Opens whichever tokenizer a path names: a GGUF file (by its magic bytes, so the extension does not
 * matter), a tokenizer.json, or a directory holding a tokenizer.json.
 */
export async function loadTokenizer(path: string): Promise<Tokenizer> {
  if (!existsSync(path)) throw new InputError("no such file or directory", { file: path });
  if (statSync(path).isDirectory()) {
    const json = join(path, "tokenizer.json");
    if (!existsSync(json))
      throw new InputError(
        "directory has no tokenizer.json",
        { file: path },
        "pass a tokenizer.json or a .gguf",
      );
    return loadHfTokenizer(json);
  }
  return isGgufFile(path) ? loadGgufTokenizer(path) : loadHfTokenizer(path);
}
