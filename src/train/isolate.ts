import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { SteerlmError } from "../util/errors.js";
import { log } from "../util/log.js";

/** What a job function receives besides its arguments: a channel for progress messages to the parent. */
export interface JobContext {
  send(message: unknown): void;
}

/** A job: an exported async function `(args, ctx) => result` in an ES module. Args/result must be JSON-able. */
export type JobFunction<A, R> = (args: A, ctx: JobContext) => Promise<R> | R;

export interface IsolateOptions {
  /** Progress messages sent by the job with ctx.send. */
  onMessage?: (message: unknown) => void;
  /** Kill the child after this long (default: no limit). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Aborting kills the child (SIGTERM); the promise rejects with an AbortError. */
  signal?: AbortSignal;
}

/** The child process died (native abort, segfault, OOM kill) or the job threw. */
export class IsolatedJobError extends SteerlmError {
  override name = "IsolatedJobError";
  constructor(
    message: string,
    readonly signal: NodeJS.Signals | null,
    readonly exitCode: number | null,
    readonly stderrTail: string,
  ) {
    super(message, signal ? "the native engine aborted; its message is above" : undefined);
  }
}

type ChildMessage =
  | { kind: "message"; message: unknown }
  | { kind: "result"; result: unknown }
  | { kind: "error"; message: string; stack?: string };

/**
 * Runs `exportName` of `module` in a child Node process. A ggml assertion calls abort() and would take
 * the whole process down with no JavaScript error; here the parent sees the child's death and reports it
 * with the tail of its stderr (where ggml prints GGML_ASSERT ...).
 */
export function runIsolated<A, R>(
  module: URL,
  exportName: string,
  args: A,
  opts: IsolateOptions = {},
): Promise<R> {
  const entry = new URL(import.meta.url.endsWith(".ts") ? "./child.ts" : "./child.js", import.meta.url);
  const execArgv = entry.pathname.endsWith(".ts") ? ["--import", "tsx"] : [];
  return new Promise<R>((resolve, reject) => {
    const child = fork(fileURLToPath(entry), [], {
      execArgv,
      stdio: ["ignore", "inherit", "pipe", "ipc"],
      env: { ...process.env, ...opts.env },
      serialization: "advanced",
      signal: opts.signal,
    });
    let stderr = "";
    let settled = false;
    let result: { value: R } | undefined;
    let jobError: { message: string; stack?: string } | undefined;
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-16_384);
      process.stderr.write(d);
    });
    const timer = opts.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs) : undefined;
    child.on("message", (m: ChildMessage) => {
      if (m.kind === "message") opts.onMessage?.(m.message);
      else if (m.kind === "result") result = { value: m.result as R };
      else jobError = m;
    });
    child.on("error", (e) => {
      if (!settled) {
        settled = true;
        reject(e);
      }
    });
    child.on("exit", (code, signal) => {
      if (timer) clearTimeout(timer);
      if (settled) return;
      settled = true;
      if (result && code === 0) return resolve(result.value);
      if (jobError) {
        const e = new IsolatedJobError(jobError.message, null, code, stderr);
        if (jobError.stack) e.stack = jobError.stack;
        return reject(e);
      }
      const tail = stderr.trim().split("\n").slice(-6).join("\n");
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      log.debug(`isolated job ${exportName} ${how}`);
      reject(
        new IsolatedJobError(`training process ${how}${tail ? `:\n${tail}` : ""}`, signal, code, stderr),
      );
    });
    child.send({ module: module.href, exportName, args });
  });
}
