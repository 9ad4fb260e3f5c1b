import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { acquireLock } from "./lock.js";

const tmp = tempDir("steerlm-lock-");
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill("SIGKILL");
  tmp.cleanup();
});

/** A real process that stays alive until killed; resolves once it runs. */
async function liveProcess(): Promise<number> {
  const child = spawn(process.execPath, ["-e", "console.log('up'); setInterval(() => {}, 1000)"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  children.push(child);
  await new Promise((resolve) => child.stdout.once("data", resolve));
  return child.pid as number;
}

/** The pid of a real process that has ended (and been reaped). */
async function deadProcess(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.on("exit", resolve));
  return child.pid as number;
}

const lockOf = (pid: number, host = hostname()) =>
  `${JSON.stringify({ pid, hostname: host, started: "2025-01-01T00:00:00.000Z", command: "steerlm sft", token: "t" })}\n`;

describe("file locks", () => {
  it("records the holder; a second taker fails naming it; release frees it", () => {
    const path = join(tmp.path, "a.lock");
    const lock = acquireLock(path, "out.jsonl");
    const holder = JSON.parse(readFileSync(path, "utf8"));
    expect(holder).toMatchObject({ pid: process.pid, hostname: hostname() });
    expect(Date.parse(holder.started)).toBeLessThanOrEqual(Date.now());
    expect(() => acquireLock(path, "out.jsonl")).toThrow(
      `out.jsonl: is in use by another steerlm process: pid ${process.pid} on ${hostname()}`,
    );
    lock.release();
    expect(existsSync(path)).toBe(false);
    acquireLock(path, "out.jsonl").release();
    expect(readdirSync(tmp.path)).toEqual([]);
  });

  it("a live process's lock is refused with a hint; a dead process's lock is taken over", async () => {
    const path = join(tmp.path, "b.lock");
    const live = await liveProcess();
    writeFileSync(path, lockOf(live));
    let message = "";
    try {
      acquireLock(path, "run");
    } catch (err) {
      message = `${(err as Error).message}\nhint: ${(err as { hint?: string }).hint}`;
    }
    expect(message).toContain(`run: is in use by another steerlm process: pid ${live} on ${hostname()}`);
    expect(message).toContain("(steerlm sft)");
    expect(message).toContain("hint: two runs on one output would overwrite each other's work");
    writeFileSync(path, lockOf(await deadProcess()));
    const lock = acquireLock(path, "run");
    expect(JSON.parse(readFileSync(path, "utf8")).pid).toBe(process.pid);
    lock.release();
  });

  it("a lock of another machine or one steerlm cannot read is refused, with the file to delete", () => {
    const path = join(tmp.path, "c.lock");
    writeFileSync(path, lockOf(1, "elsewhere"));
    expect(() => acquireLock(path, "run")).toThrow("pid 1 on elsewhere");
    writeFileSync(path, "{");
    expect(() => acquireLock(path, "run")).toThrow(`run: is locked by ${path}, which steerlm cannot read`);
    expect(readdirSync(tmp.path)).toEqual(["c.lock"]);
  });

  it("a lock left by an earlier process with this pid (a restarted container) is stale", () => {
    const path = join(tmp.path, "d.lock");
    writeFileSync(path, lockOf(process.pid));
    acquireLock(path, "run").release();
  });
});
