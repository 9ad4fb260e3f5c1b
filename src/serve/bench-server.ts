/** What the serve benchmarks share: the package root, the tiny test model, and `steerlm serve` started. */
import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// The package root, from dist/serve/ (the compiled modules bin/bench.js runs).
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const TINY_MODEL = resolve(root, "..", "shared", "data", "gguf", "llama-2-tiny-random.gguf");

/** The real CLI in its own process (so a crash shows as an exit), on a free port. */
export async function startServe(
  model: string,
  parallel: number,
  more: readonly string[] = [],
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [
      join(root, "bin", "steerlm.js"),
      ...["serve", "-m", model, "--port", "0", "--parallel", String(parallel), ...more],
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  const url = await new Promise<string>((ok, fail) => {
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      const m = /at (http:\/\/\S+)/.exec(stderr);
      if (m?.[1]) ok(m[1]);
    });
    child.on("exit", (code) =>
      fail(new Error(`steerlm serve exited (${code}) before listening:\n${stderr}`)),
    );
  });
  return { child, url };
}
