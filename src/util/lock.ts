import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import { userFileError } from "./errno.js";
import { InputError } from "./errors.js";

/**
 * Exclusive locks on outputs and run directories, so that two steerlm processes never write into each other's
 * files. A lock is a small JSON file (who holds it: pid, host, start time, command) that appears whole and
 * only if it did not exist (written beside it, then hard-linked to its name, which fails if the name is
 * taken). A lock whose process is gone (killed, crashed, the machine rebooted) is stale and is taken over; a
 * live one makes the second run fail at once, naming the holder.
 */

export interface LockHolder {
  pid: number;
  hostname: string;
  /** When the holding process started (ISO 8601). */
  started: string;
  /** Its command line, for the message a second run gets. */
  command: string;
  /** Tells this lock from a later one of the same process. */
  token: string;
}

/** Locks this process holds now (by lock path); released at exit if the holder forgot. */
const held = new Map<string, string>();
let exitHooked = false;

export class FileLock {
  constructor(
    readonly path: string,
    private readonly token: string,
  ) {}

  /** Removes the lock file if it is still this lock's. Idempotent. */
  release(): void {
    if (held.get(this.path) !== this.token) return;
    held.delete(this.path);
    if (tokenOf(readHolder(this.path)) === this.token) rmSync(this.path, { force: true });
  }
}

/**
 * Takes the lock file `path` for `target` (the output or run directory it protects, named in errors).
 * Throws an InputError naming the holder when another live process has it.
 */
export function acquireLock(path: string, target: string): FileLock {
  const me: LockHolder = {
    pid: process.pid,
    hostname: hostname(),
    started: new Date(Date.now() - process.uptime() * 1000).toISOString(),
    command: process.argv.slice(1).join(" ").slice(0, 300),
    token: randomBytes(8).toString("hex"),
  };
  // A stale lock is moved aside, then the name is tried again; two tries settle a race between takers.
  for (let attempt = 0; attempt < 3; attempt++) {
    if (tryCreate(path, me, target)) {
      held.set(path, me.token);
      hookExit();
      return new FileLock(path, me.token);
    }
    const holder = readHolder(path);
    if (holder === undefined) continue; // released just now
    if (holder === "unreadable" || !isStale(path, holder)) throw heldError(path, target, holder);
    takeOver(path, holder);
  }
  throw heldError(path, target, readHolder(path));
}

/** Creates the lock file whole, or returns false when the name is taken. */
function tryCreate(path: string, me: LockHolder, target: string): boolean {
  // Not the atomic-file module: a rename would replace a lock another process holds; a link fails instead.
  const tmp = `${path}.${me.token}.tmp`;
  try {
    try {
      const fd = openSync(tmp, "wx");
      try {
        writeSync(fd, `${JSON.stringify(me)}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      linkSync(tmp, path);
      return true;
    } finally {
      rmSync(tmp, { force: true });
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw userFileError(err, target);
  }
}

/** The holder recorded in a lock file: undefined when there is no file, "unreadable" when it is not steerlm's. */
function readHolder(path: string): LockHolder | "unreadable" | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    if (typeof h.pid === "number" && typeof h.hostname === "string" && typeof h.token === "string")
      return {
        pid: h.pid,
        hostname: h.hostname,
        started: String(h.started),
        command: String(h.command),
        token: h.token,
      };
  } catch {}
  return "unreadable";
}

const tokenOf = (h: ReturnType<typeof readHolder>) => (typeof h === "object" ? h.token : undefined);

/**
 * A lock is stale when it was taken on this machine by a process that is gone. A process of another machine
 * (a shared folder) cannot be checked: its lock is taken as live.
 */
function isStale(path: string, h: LockHolder): boolean {
  if (h.hostname !== hostname()) return false;
  // Our own pid: stale unless this process holds it (a container restarted gives the same pid again).
  if (h.pid === process.pid) return held.get(path) !== h.token;
  return !processAlive(h.pid);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // alive, someone else's
  }
  // A killed process stays a zombie until its parent reaps it: on Linux its state says so.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}

/**
 * Moves a stale lock aside and deletes it. If another taker replaced it in between, the lock moved aside is
 * live: it is linked back (unless a third process took the name meanwhile).
 */
function takeOver(path: string, stale: LockHolder): void {
  const aside = `${path}.stale-${randomBytes(6).toString("hex")}`;
  try {
    renameSync(path, aside);
  } catch {
    return; // someone else took it over first
  }
  try {
    if (tokenOf(readHolder(aside)) !== stale.token) linkSync(aside, path);
  } catch {
    // the name is taken again: whoever took it holds the lock
  } finally {
    rmSync(aside, { force: true });
  }
}

function heldError(path: string, target: string, h: ReturnType<typeof readHolder>): InputError {
  if (typeof h !== "object")
    return new InputError(
      `is locked by ${path}, which steerlm cannot read`,
      { file: target },
      `if no steerlm process uses it, delete ${path}`,
    );
  const sameHost = h.hostname === hostname();
  return new InputError(
    `is in use by another steerlm process: pid ${h.pid} on ${h.hostname}, started ${h.started} (${h.command})`,
    { file: target },
    sameHost
      ? "two runs on one output would overwrite each other's work: wait for it to end, or stop it"
      : `if that process has ended, delete ${path}`,
  );
}

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on("exit", () => {
    for (const [path, token] of held) if (tokenOf(readHolder(path)) === token) rmSync(path, { force: true });
  });
}
