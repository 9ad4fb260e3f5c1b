import { InputError } from "./errors.js";

/**
 * Node's file-system errors (`EISDIR`, `ENOSPC`…) as the user's InputErrors: the one place they get a plain
 * message and a hint. Every code here is caused by the user's files, disk or permissions, never by a bug in
 * steerlm; any other error is left as it is.
 */
const USER_ERRNO: Readonly<Record<string, readonly [what: string, hint?: string]>> = {
  ENOENT: ["no such file or folder"],
  EISDIR: ["is a folder, not a file", "name a file"],
  ENOTDIR: ["a part of the path is a file, not a folder"],
  EEXIST: ["already exists"],
  EACCES: ["permission denied", "check the permissions of the file and its folder"],
  EPERM: ["operation not permitted", "check the permissions of the file and its folder"],
  EROFS: ["the file system is read-only"],
  ENOSPC: ["no space left on the device", "free some space, then run the command again"],
  EDQUOT: ["the disk quota is exceeded", "free some space, then run the command again"],
  EFBIG: ["the file is too large for its file system"],
  ENAMETOOLONG: ["the file name is too long"],
  ELOOP: ["too many levels of symbolic links"],
  EMFILE: ["too many open files", "raise the limit (ulimit -n)"],
  ENFILE: ["too many open files in the system"],
  EBUSY: ["the file is busy"],
  ETXTBSY: ["the file is busy"],
  EIO: ["input/output error of the device"],
  EXDEV: ["cannot move a file across file systems"],
};

function errnoCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** `EISDIR: is a folder, not a file` and its hint, for a user's errno error; undefined for any other error. */
function describeErrno(err: unknown): { text: string; hint?: string } | undefined {
  const code = errnoCode(err);
  const known = code === undefined ? undefined : USER_ERRNO[code];
  if (known === undefined) return undefined;
  return { text: `${code}: ${known[0]}`, hint: known[1] };
}

/**
 * `err` as an InputError at `file` (default: the path Node names) when its errno code is the user's, its
 * message prefixed by `action` ("cannot open"); any other error unchanged. InputErrors pass through.
 */
export function userFileError(err: unknown, file?: string, action?: string): unknown {
  if (err instanceof InputError) return err;
  const d = describeErrno(err);
  if (d === undefined) return err;
  const path = file ?? (err as NodeJS.ErrnoException).path;
  return new InputError(
    action ? `${action}: ${d.text}` : d.text,
    path === undefined ? {} : { file: path },
    d.hint,
  );
}

/**
 * A file the user named that cannot be read, whatever the reason: always an InputError at `file`
 * (`cannot open: ENOENT: no such file or folder`).
 */
export function readFailure(err: unknown, file: string, action: string): InputError {
  const mapped = userFileError(err, file, action);
  if (mapped instanceof InputError) return mapped;
  const e = err as NodeJS.ErrnoException;
  return new InputError(`${action}: ${e.code ?? e.message ?? String(err)}`, { file });
}

/** Runs `fn`; a user's errno error from it becomes an InputError at `file`. */
export function atFile<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw userFileError(err, file);
  }
}
