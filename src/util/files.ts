import { createHash } from "node:crypto";
import { createReadStream, readFileSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { readFailure } from "./errno.js";

/** Opens a user-named file for reading; a missing or unreadable file is the user's InputError, naming it. */
export async function openInputFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, "r");
  } catch (e) {
    throw readFailure(e, path, "cannot open");
  }
}

/** A user-named text file, whole; a failure is the user's InputError, `action` saying what was tried. */
export function readInputText(path: string, action = "cannot read"): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw readFailure(e, path, action);
  }
}

/** SHA-256 of a file, streamed (resumable jobs record their inputs' hashes). */
export async function fileSha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Newline bytes in `b`: the rows of a JSONL prefix. */
export function countLines(b: Uint8Array): number {
  let n = 0;
  for (const c of b) if (c === 0x0a) n++;
  return n;
}
