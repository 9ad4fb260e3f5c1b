import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../util/atomic.js";
import { userFileError } from "../util/errno.js";
import { InputError } from "../util/errors.js";
import { fileSha256 } from "../util/files.js";
import { log } from "../util/log.js";

/**
 * The data files a run trains on, as they were when it started (size and SHA-256 of each, by setting): a
 * resume on changed data would not end where the uninterrupted run would, so it is refused, naming the file.
 */
export const DATA_FILES_FILE = "data-files.json";

interface FileStamp {
  path: string;
  bytes: number;
  sha256: string;
}

/** The run's data files by setting (`data`, `val`); absent ones are skipped. */
export type DataFiles = Readonly<Record<string, string | null | undefined>>;

async function stamp(path: string): Promise<FileStamp> {
  try {
    return { path, bytes: statSync(path).size, sha256: await fileSha256(path) };
  } catch (err) {
    throw userFileError(err, path);
  }
}

async function stamps(files: DataFiles): Promise<Record<string, FileStamp>> {
  const out: Record<string, FileStamp> = {};
  for (const [setting, path] of Object.entries(files)) if (path) out[setting] = await stamp(path);
  return out;
}

/** Records a new run's data files. */
export async function recordDataFiles(runDir: string, files: DataFiles): Promise<void> {
  writeFileAtomic(join(runDir, DATA_FILES_FILE), `${JSON.stringify(await stamps(files), null, 2)}\n`);
}

/**
 * Refuses to resume on data files that differ from the ones the run started with. A run started by a
 * steerlm that did not record them gets them recorded now, with a warning that they were not checked.
 */
export async function checkDataFiles(runDir: string, files: DataFiles): Promise<void> {
  const path = join(runDir, DATA_FILES_FILE);
  if (!existsSync(path)) {
    log.warn(`${runDir}: the run did not record its data files (an older steerlm): resuming unchecked`);
    await recordDataFiles(runDir, files);
    return;
  }
  let then: Record<string, FileStamp>;
  try {
    then = JSON.parse(readFileSync(path, "utf8")) as Record<string, FileStamp>;
  } catch {
    throw new InputError(
      "is damaged",
      { file: path },
      `restore it, or delete it to resume without the check`,
    );
  }
  const now = await stamps(files);
  for (const [setting, s] of Object.entries(now)) {
    const was = then[setting];
    if (was === undefined || was.sha256 === s.sha256) continue;
    const what =
      s.bytes !== was.bytes
        ? `${s.bytes} bytes, ${was.bytes} then`
        : `the same size, other bytes (SHA-256 ${s.sha256.slice(0, 12)}…, ${was.sha256.slice(0, 12)}… then)`;
    throw new InputError(
      `changed since the run started: ${what}`,
      { file: s.path, setting },
      "restore the file the run started with, or start a new run in another directory",
    );
  }
}
