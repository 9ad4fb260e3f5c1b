import { type FileHandle, open } from "node:fs/promises";
import { InputError } from "./errors.js";

/** Opens a user-named file for reading; a missing or unreadable file is the user's InputError, naming it. */
export async function openInputFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, "r");
  } catch (e) {
    throw new InputError(`cannot open: ${(e as Error).message}`, { file: path });
  }
}
