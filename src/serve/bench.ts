/**
 * Benchmarks of `steerlm serve`, the real CLI in its own process: load (bench-load.ts) and a single stream
 * (bench-stream.ts).
 *
 *   npm run bench -- serve [--part load|stream|all] [--model m.gguf] [--clients 32] [--seconds 30]
 *                          [--parallel 4] [--max-tokens 32] [--json]
 */
import { parseArgs } from "node:util";
import { benchServe, formatServeBench } from "./bench-load.js";
import { benchStream, formatStreamBench } from "./bench-stream.js";

/** CLI entry, called by bin/bench.js: `npm run bench -- serve [options]`. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      part: { type: "string", default: "all" },
      model: { type: "string" },
      clients: { type: "string" },
      seconds: { type: "string" },
      parallel: { type: "string" },
      "max-tokens": { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const part = values.part;
  if (part !== "load" && part !== "stream" && part !== "all")
    throw new Error(`--part: expected load, stream or all, got ${part}`);
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const load =
    part === "stream"
      ? undefined
      : await benchServe({
          model: values.model,
          clients: num(values.clients),
          seconds: num(values.seconds),
          parallel: num(values.parallel),
          maxTokens: num(values["max-tokens"]),
        });
  const stream = part === "load" ? undefined : await benchStream();
  if (values.json) process.stdout.write(`${JSON.stringify({ load, stream })}\n`);
  else process.stdout.write((load ? formatServeBench(load) : "") + (stream ? formatStreamBench(stream) : ""));
  return !load || (load.errors5xx === 0 && load.transportErrors === 0 && !load.serverCrashed) ? 0 : 1;
}
