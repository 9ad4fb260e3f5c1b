import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  openSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { userFileError } from "./errno.js";
import { InputError } from "./errors.js";

/**
 * Files that appear complete or not at all. Every output of steerlm is written here: to a temporary file
 * beside the target with a name no other writer can have (random, created exclusively), fsynced, renamed over
 * the target, and then the folder fsynced so that the rename itself survives a power cut. A kill at any moment
 * leaves the old file or the new one under the real name, never half of one.
 */

/** `.<name>.tmp-<pid>-<random>` beside `path`: hidden, and recognisable as a leftover (removeLeftoverTemps). */
function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
}

/** Whether `name` is a temporary file of this module, of the target named `target` when given. */
function isTempName(name: string, target?: string): boolean {
  const m = /^\.(.+)\.tmp-\d+-[0-9a-f]{12}$/.exec(name);
  return m !== null && (target === undefined || m[1] === target);
}

/** Temporary files being written now, removed if the process is interrupted. */
const openTemps = new Set<string>();
let signalsHooked = false;

/**
 * For the CLI: on SIGINT, SIGTERM or SIGHUP remove unfinished temporary files, then die of the signal
 * as usual. (Not installed by the library itself: a host program owns its signal handling.)
 */
export function removeTempFilesOnSignal(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      for (const t of openTemps) rmSync(t, { force: true });
      process.kill(process.pid, sig);
    });
  }
}

/**
 * Removes the temporary files a killed writer left in `dir`: all of them, or only those of the target file
 * `target` (a name in `dir`). The caller holds the lock that makes it their only writer.
 */
export function removeLeftoverTemps(dir: string, target?: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) if (isTempName(n, target)) rmSync(join(dir, n), { force: true });
}

/** fsyncs a folder, so that a rename in it is on disk. */
export function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // some file systems refuse fsync on folders; the rename is still atomic
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes all of `b` at the file position: one writeSync may write less than asked. */
export function writeAllSync(fd: number, b: Uint8Array): void {
  let done = 0;
  while (done < b.byteLength) done += writeSync(fd, b, done, b.byteLength - done);
}

/** Writes `data` (text, bytes, or chunks of bytes) to `path` atomically, synchronously. */
export function writeFileAtomic(path: string, data: string | Uint8Array | Iterable<Uint8Array>): void {
  const tmp = tempPathFor(path);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "wx");
    openTemps.add(tmp);
    if (typeof data === "string") writeAllSync(fd, Buffer.from(data, "utf8"));
    else if (data instanceof Uint8Array) writeAllSync(fd, data);
    else for (const chunk of data) writeAllSync(fd, chunk);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw userFileError(err, path);
  } finally {
    openTemps.delete(tmp);
  }
  syncDir(dirname(path));
}

const FLUSH_BYTES = 1 << 20;

/**
 * A streamed atomic file: `write` as often as needed, then `commit()` (or `abort()`, which leaves the target
 * as it was). Small writes are gathered into 1 MB chunks.
 */
export class AtomicFile {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private fh: FileHandle | undefined,
  ) {}

  static async create(path: string): Promise<AtomicFile> {
    const tmp = tempPathFor(path);
    try {
      const fh = await open(tmp, "wx");
      openTemps.add(tmp);
      return new AtomicFile(path, tmp, fh);
    } catch (err) {
      throw userFileError(err, path);
    }
  }

  async write(data: string | Uint8Array): Promise<void> {
    const b = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    if (b.byteLength >= FLUSH_BYTES) {
      await this.flush();
      await this.writeOut(b);
      return;
    }
    // copied: the caller may reuse its buffer before the gathered chunk is written
    this.pending.push(typeof data === "string" ? (b as Buffer) : Buffer.copyBytesFrom(b));
    this.pendingBytes += b.byteLength;
    if (this.pendingBytes >= FLUSH_BYTES) await this.flush();
  }

  async commit(): Promise<void> {
    await this.flush();
    const fh = this.handle();
    try {
      await fh.sync();
      await fh.close();
      this.fh = undefined;
      await rename(this.tmp, this.path);
    } catch (err) {
      await this.abort();
      throw userFileError(err, this.path);
    }
    openTemps.delete(this.tmp);
    syncDir(dirname(this.path));
  }

  /** Drops the temporary file; the target is left as it was. */
  async abort(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => undefined);
    await unlink(this.tmp).catch(() => undefined);
    openTemps.delete(this.tmp);
  }

  private handle(): FileHandle {
    if (this.fh === undefined) throw new Error(`${this.path}: the atomic file is already closed`);
    return this.fh;
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const b = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.writeOut(b);
  }

  private async writeOut(b: Uint8Array): Promise<void> {
    const fh = this.handle();
    try {
      let done = 0;
      while (done < b.byteLength) done += (await fh.write(b, done, b.byteLength - done)).bytesWritten;
    } catch (err) {
      throw userFileError(err, this.path);
    }
  }
}

/**
 * Checks a command's outputs before any work: each is a file name in an existing folder (not a folder), no
 * two are one file (the same path once resolved, through symbolic links, or the same inode: a hard link), and
 * none is one of the `inputs` (written, it would replace the input as it is read). Both map each file's
 * setting to its path; absent ones are skipped.
 */
export function checkOutputs(
  outputs: Readonly<Record<string, string | undefined>>,
  inputs: Readonly<Record<string, string | undefined>> = {},
): void {
  const read = Object.entries(inputs).flatMap(([setting, path]) => {
    const st = path === undefined ? undefined : statSync(path, { throwIfNoEntry: false });
    return st?.isFile() ? [{ setting, key: `inode ${st.dev}:${st.ino}` }] : [];
  });
  const seen: Array<{ setting: string; key: string }> = [];
  for (const [setting, path] of Object.entries(outputs)) {
    if (path === undefined) continue;
    const key = fileIdentity(path, setting);
    const input = read.find((s) => s.key === key);
    if (input)
      throw new InputError(
        `names the input file (${input.setting})`,
        { file: path, setting },
        "write to another file: this one would be replaced while it is read",
      );
    const same = seen.find((s) => s.key === key);
    if (same)
      throw new InputError(
        `names the same file as ${same.setting}`,
        { file: path, setting },
        "give each output its own file",
      );
    seen.push({ setting, key });
  }
}

/** What makes two names one file: the inode of an existing file, else the real path of a new one. */
function fileIdentity(path: string, setting: string): string {
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(path);
  } catch (err) {
    // ENOTDIR: a part of the folder is a file, said below
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") throw userFileError(err, path);
  }
  if (st?.isDirectory())
    throw new InputError("is a folder, not a file", { file: path, setting }, "name a file to write");
  if (st) return `inode ${st.dev}:${st.ino}`;
  let dir: string;
  try {
    dir = realpathSync(dirname(resolve(path)));
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
    if (missing) throw new InputError("the output's folder does not exist", { file: path, setting });
    throw userFileError(err, path);
  }
  if (!statSync(dir).isDirectory())
    throw new InputError("the output's folder is a file", { file: path, setting });
  return `path ${join(dir, basename(path))}`;
}
