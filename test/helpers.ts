import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { OptimizerOptions } from "../src/train/trainer.js";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** `../shared/data` beside the checkout; CI always has it, someone else's clone may not. */
export const sharedDataDir = resolve(repoRoot, "..", "shared", "data");
export const haveSharedData = existsSync(sharedDataDir);
if (!haveSharedData) {
  process.stderr.write(
    `\n*** ../shared/data is missing (${sharedDataDir}): tests on the real reference files are SKIPPED ***\n\n`,
  );
}

export function sharedData(...parts: string[]): string {
  return join(sharedDataDir, ...parts);
}

/** Every text field of the 512 NeMo-Aligner SteerLM conversations (about 3 MB): a real training corpus. */
export function nemoSampleTexts(): string[] {
  const texts: string[] = [];
  const file = sharedData("nemo-aligner", "sft_512_sample_extra_id_format.jsonl");
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line) continue;
    const row = JSON.parse(line) as { system: string; conversations: Array<{ value: string }> };
    texts.push(row.system, ...row.conversations.map((c) => c.value));
  }
  return texts;
}

/** max |a − b| relative to max |b| (a floor of 1e-12 keeps an all-zero `b` finite). */
export function relDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`relDiff: ${a.length} values against ${b.length}`);
  let scale = 1e-12;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
  }
  return d / scale;
}

/**
 * Optimiser values for tests that drive a Trainer directly: plain Adam (no warmup, schedule floor, weight
 * decay or clipping) except where `over` says otherwise.
 */
export function plainAdam(over: Partial<OptimizerOptions> & Pick<OptimizerOptions, "lr">): OptimizerOptions {
  return {
    warmupSteps: 0,
    totalSteps: 0,
    minLrRatio: 0,
    weightDecay: 0,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    maxGradNorm: 0,
    ...over,
  };
}

export function tempDir(prefix = "steerlm-test-"): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI (the built dist/, as a user would) in a child process. */
export function runCli(
  args: string[],
  opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, "bin", "steerlm.js"), ...args], {
      cwd: opts.cwd ?? repoRoot,
      env: { ...process.env, ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
    child.stdin.end(opts.input ?? "");
  });
}

/**
 * Starts the real CLI with `args` (slowed down through `env`, e.g. a throttle between groups) and SIGKILLs
 * it once `<out>.partial.json` (a resumable job's sidecar) records at least `rows` rows; resolves to them.
 */
export function runCliAndKill(
  args: string[],
  out: string,
  rows: number,
  env: Record<string, string>,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, "bin", "steerlm.js"), ...args], {
      env: { ...process.env, ...env },
      stdio: "ignore",
    });
    const sidecar = `${out}.partial.json`;
    const poll = setInterval(() => {
      if (!existsSync(sidecar)) return;
      let done = 0;
      try {
        done = JSON.parse(readFileSync(sidecar, "utf8")).rows;
      } catch {
        return; // being replaced right now
      }
      if (done >= rows) {
        clearInterval(poll);
        child.kill("SIGKILL");
        resolve(done);
      }
    }, 20);
    child.on("exit", (code, signal) => {
      clearInterval(poll);
      if (signal !== "SIGKILL") reject(new Error(`steerlm ${args[0]} ended before it was killed (${code})`));
    });
  });
}

export interface ServeProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Ends it: SIGTERM (a clean shutdown) or SIGKILL (a crash); resolves once it has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** `steerlm serve <args>` as a real process (the built CLI); resolves once it listens, with its URL. */
export function startServe(args: string[]): Promise<ServeProcess> {
  const child = spawn(process.execPath, [join(repoRoot, "bin", "steerlm.js"), "serve", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  let exited = false;
  child.on("exit", () => {
    exited = true;
  });
  return new Promise((resolvePromise, reject) => {
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      const m = /\) at (http:\/\/\S+)/.exec(stderr);
      if (!m) return;
      const url = m[1] as string;
      resolvePromise({
        url,
        port: Number(new URL(url).port),
        child,
        stop: (signal = "SIGTERM") =>
          exited
            ? Promise.resolve()
            : new Promise((done) => {
                child.once("exit", () => done());
                child.kill(signal);
              }),
      });
    });
    child.on("exit", (code) =>
      reject(new Error(`steerlm serve exited (${code}) before listening:\n${stderr}`)),
    );
  });
}

/** The real CLI started in the background: its process, and how it ended once it has. */
export function startCli(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(process.execPath, [join(repoRoot, "bin", "steerlm.js"), ...args], {
    env: { ...process.env, ...env },
    stdio: "ignore",
  });
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, ended };
}

/** Resolves once `ready()` holds (checked every 20 ms), or rejects when `ended` settles first. */
export async function waitUntil(ready: () => boolean, ended: Promise<unknown>): Promise<void> {
  let over = false;
  void ended.then(() => (over = true));
  while (!ready()) {
    if (over) throw new Error("the process ended before it got there");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once a running job's sidecar (`<out>.partial.json`) records at least `rows` rows. */
export async function sidecarRows(out: string, rows: number): Promise<void> {
  for (;;) {
    try {
      if (JSON.parse(readFileSync(`${out}.partial.json`, "utf8")).rows >= rows) return;
    } catch {
      // not written yet, or being replaced right now
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
