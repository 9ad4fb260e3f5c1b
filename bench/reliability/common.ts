import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { benchFile, writeBench } from "../../src/steerbench/jsonl.js";
import { synthesize } from "../../src/steerbench/synth.js";

// What the parts of the reliability suite share: the real CLI (the built dist/, as a user runs it) in child
// processes, the tiny models they train, and the shape of a part's result.

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const sharedDataDir = resolve(repoRoot, "..", "shared", "data");

/** One row of the table: `passed` of `runs` trials held; `ok` is the part's verdict. */
export interface PartResult {
  part: string;
  runs: number;
  passed: number;
  ok: boolean;
  seconds: number;
  /** What was measured, one short line each (shown under the table). */
  notes: string[];
  /** Each trial that did not hold, located (file, line, kill number…). */
  failures: string[];
}

/** A part's result being gathered: `check` counts a trial, `fail` records why one did not hold. */
export class Tally {
  runs = 0;
  passed = 0;
  readonly notes: string[] = [];
  readonly failures: string[] = [];
  private readonly t0 = performance.now();

  constructor(readonly part: string) {}

  check(held: boolean, why: () => string): boolean {
    this.runs++;
    if (held) this.passed++;
    else if (this.failures.length < 50) this.failures.push(why());
    return held;
  }

  fail(why: string): void {
    if (this.failures.length < 50) this.failures.push(why);
  }

  result(extra = true): PartResult {
    return {
      part: this.part,
      runs: this.runs,
      passed: this.passed,
      ok: extra && this.runs > 0 && this.passed === this.runs && this.failures.length === 0,
      seconds: Math.round((performance.now() - this.t0) / 100) / 10,
      notes: this.notes,
      failures: this.failures,
    };
  }
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The real CLI in a child process, started; `ended` resolves with how it ended and what it printed. */
export function startCli(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; ended: Promise<CliRun>; stderr: () => string } {
  const child = spawn(process.execPath, [join(repoRoot, "bin", "steerlm.js"), ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const ended = new Promise<CliRun>((ok) =>
    child.on("close", (code, signal) => ok({ code, signal, stdout, stderr })),
  );
  return { child, ended, stderr: () => stderr };
}

export function cli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return startCli(args, env).ended;
}

/** Runs the CLI and throws (with its stderr) unless it succeeds: for the fixtures every part needs. */
export async function cliOk(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const r = await cli(args, env);
  if (r.code !== 0) throw new Error(`steerlm ${args.join(" ")} failed (${r.code}):\n${r.stderr}`);
  return r;
}

/** A user's error, not a crash: exit 1, a `steerlm: ` line, no "internal error" and no stack trace. */
export function isUserError(r: CliRun): boolean {
  return (
    r.code === 1 &&
    r.stderr.includes("steerlm: ") &&
    !r.stderr.includes("internal error") &&
    !/\n\s+at /.test(r.stderr)
  );
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SteerBench conversations (train, validation, test…) and a tiny model's --init file, written into `dir`. */
export function tinyData(dir: string, n: number, seed: number): { train: string; val: string; init: string } {
  writeBench(dir, synthesize({ n, seed, multiTurnFraction: 0.1 }));
  const init = join(dir, "model.yaml");
  writeFileSync(init, "hiddenSize: 32\nnumLayers: 1\nnumHeads: 2\nffnSize: 64\ncontextLength: 512\n");
  return { train: benchFile(dir, "train"), val: benchFile(dir, "validation"), init };
}

const tinyCommon = (data: string, init: string) => ["--data", data, "--init", init, "--batch-size", "4"];

/** A tiny SFT model trained through the CLI and exported as a GGUF (`gguf`). */
export async function tinySftGguf(o: {
  data: string;
  init: string;
  run: string;
  gguf: string;
}): Promise<void> {
  await cliOk([
    "sft",
    ...tinyCommon(o.data, o.init),
    "--threads",
    "1",
    "--tokenizer-vocab-size",
    "320",
    "--seq-len",
    "128",
    "--steps",
    "8",
    "--lr",
    "0.003",
    "-o",
    o.run,
  ]);
  await cliOk(["export", "gguf", o.run, "-o", o.gguf]);
}

/** A tiny regression APM trained through the CLI into the run directory `out`. */
export async function tinyApm(o: { data: string; init: string; out: string }): Promise<void> {
  await cliOk([
    "apm",
    "train",
    ...tinyCommon(o.data, o.init),
    "--threads",
    "1",
    "--tokenizer-vocab-size",
    "300",
    "--seq-len",
    "96",
    "--steps",
    "40",
    "--lr",
    "0.003",
    "-o",
    o.out,
  ]);
}
